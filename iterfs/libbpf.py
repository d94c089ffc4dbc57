"""The C side of the binding: cffi declarations over the system libbpf.so.1.

ABI mode (dlopen) so nothing is compiled at install time. Every struct declared
here is part of libbpf's or the kernel's stable ABI; libbpf 1.0 and later return
NULL or a negative errno and set errno on failure, which is all we rely on.
"""

import cffi

ffi = cffi.FFI()
ffi.cdef("""
    struct bpf_object;
    struct bpf_map;
    struct bpf_program;
    struct bpf_link;
    struct btf;

    /* include/uapi/linux/bpf.h */
    union bpf_iter_link_info {
        struct {
            uint32_t map_fd;
        } map;
        struct {
            uint32_t order;
            uint32_t cgroup_fd;
            uint64_t cgroup_id;
        } cgroup;
        struct {
            uint32_t tid;
            uint32_t pid;
            uint32_t pid_fd;
        } task;
    };

    /* include/uapi/linux/bpf.h: the leading fields only; the kernel fills what
       the caller's info_len has room for. */
    struct bpf_map_info {
        uint32_t type;
        uint32_t id;
        uint32_t key_size;
        uint32_t value_size;
        uint32_t max_entries;
        uint32_t map_flags;
        char name[16];
    };

    /* include/uapi/linux/bpf.h */
    struct bpf_insn {
        uint8_t code;
        uint8_t regs;       /* dst_reg:4, src_reg:4 */
        int16_t off;
        int32_t imm;
    };

    /* bpf.h, as in libbpf 1.1: the fields up to the verifier log */
    struct bpf_prog_load_opts {
        size_t sz;
        int attempts;
        uint32_t expected_attach_type;
        uint32_t prog_btf_fd;
        uint32_t prog_flags;
        uint32_t prog_ifindex;
        uint32_t kern_version;
        uint32_t attach_btf_id;
        uint32_t attach_prog_fd;
        uint32_t attach_btf_obj_fd;
        const int *fd_array;
        const void *func_info;
        uint32_t func_info_cnt;
        uint32_t func_info_rec_size;
        const void *line_info;
        uint32_t line_info_cnt;
        uint32_t line_info_rec_size;
        uint32_t log_level;
        uint32_t log_size;
        char *log_buf;
    };

    /* libbpf.h, as in libbpf 1.1: the fields up to kconfig */
    struct bpf_object_open_opts {
        size_t sz;
        const char *object_name;
        bool relaxed_maps;
        const char *pin_root_path;
        uint32_t removed_attach_prog_fd;
        const char *kconfig;
    };

    /* include/uapi/linux/bpf.h: the leading fields only */
    struct bpf_btf_info {
        uint64_t btf;
        uint32_t btf_size;
        uint32_t id;
        uint64_t name;
        uint32_t name_len;
        uint32_t kernel_btf;
    };

    /* libbpf.h */
    struct bpf_iter_attach_opts {
        size_t sz;
        union bpf_iter_link_info *link_info;
        uint32_t link_info_len;
    };

    struct bpf_object *bpf_object__open_file(const char *path,
                                             const struct bpf_object_open_opts *opts);
    struct bpf_object *bpf_object__open_mem(const void *obj_buf, size_t obj_buf_sz,
                                            const struct bpf_object_open_opts *opts);
    int bpf_object__load(struct bpf_object *obj);
    void bpf_object__close(struct bpf_object *obj);
    const char *bpf_object__name(const struct bpf_object *obj);
    struct bpf_program *bpf_object__next_program(const struct bpf_object *obj,
                                                 struct bpf_program *prog);

    const char *bpf_program__name(const struct bpf_program *prog);
    const char *bpf_program__section_name(const struct bpf_program *prog);
    int bpf_program__fd(const struct bpf_program *prog);
    int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
    int bpf_program__set_log_buf(struct bpf_program *prog, char *log_buf,
                                 size_t log_size);
    struct bpf_link *bpf_program__attach_iter(const struct bpf_program *prog,
                                              const struct bpf_iter_attach_opts *opts);

    struct bpf_map *bpf_object__next_map(const struct bpf_object *obj,
                                         const struct bpf_map *map);
    const char *bpf_map__name(const struct bpf_map *map);
    uint32_t bpf_map__type(const struct bpf_map *map);
    int bpf_map__set_autocreate(struct bpf_map *map, bool autocreate);
    int bpf_map__fd(const struct bpf_map *map);
    int libbpf_probe_bpf_map_type(uint32_t map_type, const void *opts);

    int bpf_link__fd(const struct bpf_link *link);
    int bpf_link__destroy(struct bpf_link *link);

    /* bpf.h */
    int bpf_iter_create(int link_fd);
    int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags);
    int bpf_map_lookup_elem(int fd, const void *key, void *value);
    int bpf_map_delete_elem(int fd, const void *key);
    int bpf_map_get_next_id(uint32_t start_id, uint32_t *next_id);
    int bpf_map_get_fd_by_id(uint32_t id);
    int bpf_obj_get_info_by_fd(int bpf_fd, void *info, uint32_t *info_len);
    int bpf_prog_load(uint32_t prog_type, const char *prog_name, const char *license,
                      const struct bpf_insn *insns, size_t insn_cnt,
                      struct bpf_prog_load_opts *opts);
    int bpf_btf_get_next_id(uint32_t start_id, uint32_t *next_id);
    int bpf_btf_get_fd_by_id(uint32_t id);

    /* btf.h */
    struct btf *btf__load_vmlinux_btf(void);
    struct btf *btf__load_module_btf(const char *module_name, struct btf *vmlinux_btf);
    int32_t btf__find_by_name_kind(const struct btf *btf, const char *type_name,
                                   uint32_t kind);
    void btf__free(struct btf *btf);

    /* va_list reaches the callback as a pointer on x86-64 and arm64 alike. */
    typedef int (*libbpf_print_fn_t)(int level, const char *format, void *args);
    libbpf_print_fn_t libbpf_set_print(libbpf_print_fn_t fn);
    uint32_t libbpf_major_version(void);
    uint32_t libbpf_minor_version(void);
""")

lib = ffi.dlopen("libbpf.so.1")

LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2
BTF_KIND_FUNC = 12
BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_ITER = 28
