"""The C side of the binding: cffi declarations over the system libbpf.so.1.

ABI mode (dlopen) so nothing is compiled at install time. Every struct declared
here is part of libbpf's or the kernel's stable ABI; libbpf 1.0 and later return
NULL or a negative errno and set errno on failure, which is all we rely on.
"""

import cffi

ffi = cffi.FFI()
ffi.cdef("""
    struct bpf_object;
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

    /* libbpf.h */
    struct bpf_iter_attach_opts {
        size_t sz;
        union bpf_iter_link_info *link_info;
        uint32_t link_info_len;
    };

    struct bpf_object *bpf_object__open_file(const char *path, const void *opts);
    int bpf_object__load(struct bpf_object *obj);
    void bpf_object__close(struct bpf_object *obj);
    const char *bpf_object__name(const struct bpf_object *obj);
    struct bpf_program *bpf_object__next_program(const struct bpf_object *obj,
                                                 struct bpf_program *prog);

    const char *bpf_program__name(const struct bpf_program *prog);
    const char *bpf_program__section_name(const struct bpf_program *prog);
    int bpf_program__fd(const struct bpf_program *prog);
    int bpf_program__set_log_buf(struct bpf_program *prog, char *log_buf,
                                 size_t log_size);
    struct bpf_link *bpf_program__attach_iter(const struct bpf_program *prog,
                                              const struct bpf_iter_attach_opts *opts);

    int bpf_link__fd(const struct bpf_link *link);
    int bpf_link__destroy(struct bpf_link *link);

    /* bpf.h */
    int bpf_iter_create(int link_fd);
    int bpf_map_get_next_id(uint32_t start_id, uint32_t *next_id);
    int bpf_map_get_fd_by_id(uint32_t id);
    int bpf_obj_get_info_by_fd(int bpf_fd, void *info, uint32_t *info_len);

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

    /* libc, to expand libbpf's printf-style messages */
    int vsnprintf(char *str, size_t size, const char *format, void *args);
""")

lib = ffi.dlopen("libbpf.so.1")
libc = ffi.dlopen(None)

LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2
BTF_KIND_FUNC = 12
