// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_map: one line per BPF map, with the fields `bpftool map show` shows:
 *
 *   id type name flags key value max_entries memlock
 *
 * type is libbpf's name for it (libbpf_bpf_map_type_str), or the number when
 * the name is not known; name is "-" when the map has none; flags is map_flags
 * in hex, as bpftool prints it.
 *
 * memlock is what the kernel's map->ops->map_mem_usage() returns (fdinfo's
 * "memlock:"), computed here the way Linux 6.18 computes it, for the map types
 * whose computation this program repeats exactly; "-" for the other types. The
 * computation changes from one kernel version to another, so on a kernel other
 * than 6.18 every memlock is "-": widen MEMORY_KERNELS once tests/
 * test_bpf_objects.py, which checks every type computed against bpftool, passes
 * on that kernel.
 */
#include "iterfs.h"

char LICENSE[] SEC("license") = "GPL";

#define TYPE_NAME_SIZE 24
#define HASHTAB_MAP_LOCK_COUNT 8	/* kernel/bpf/hashtab.c; 6.18 still counts its locks */
#define RINGBUF_POS_PAGES 2		/* kernel/bpf/ringbuf.c */
#define BPF_F_NO_PREALLOC (1U << 0)
#define BPF_F_MMAPABLE (1U << 10)
#define UNKNOWN ((__u64)-1)

/* include/uapi/linux/bpf.h: enum bpf_map_type; values never change. */
enum {
	MAP_HASH = 1,
	MAP_ARRAY = 2,
	MAP_PROG_ARRAY = 3,
	MAP_PERF_EVENT_ARRAY = 4,
	MAP_PERCPU_HASH = 5,
	MAP_PERCPU_ARRAY = 6,
	MAP_CGROUP_ARRAY = 8,
	MAP_LRU_HASH = 9,
	MAP_LRU_PERCPU_HASH = 10,
	MAP_ARRAY_OF_MAPS = 12,
	MAP_HASH_OF_MAPS = 13,
	MAP_QUEUE = 22,
	MAP_STACK = 23,
	MAP_SK_STORAGE = 24,
	MAP_RINGBUF = 27,
	MAP_INODE_STORAGE = 28,
	MAP_TASK_STORAGE = 29,
	MAP_BLOOM_FILTER = 30,
	MAP_USER_RINGBUF = 31,
	MAP_CGRP_STORAGE = 32,
};

/*
 * libbpf's map_type_name[], indexed by enum bpf_map_type. Written by value
 * rather than with vmlinux.h's names, which the vmlinux.h of an older kernel
 * lacks; tests/test_bpf_objects.py checks every entry against the running
 * kernel's BTF.
 */
static const char map_type_names[][TYPE_NAME_SIZE] = {
	[0] = "unspec",
	[1] = "hash",
	[2] = "array",
	[3] = "prog_array",
	[4] = "perf_event_array",
	[5] = "percpu_hash",
	[6] = "percpu_array",
	[7] = "stack_trace",
	[8] = "cgroup_array",
	[9] = "lru_hash",
	[10] = "lru_percpu_hash",
	[11] = "lpm_trie",
	[12] = "array_of_maps",
	[13] = "hash_of_maps",
	[14] = "devmap",
	[15] = "sockmap",
	[16] = "cpumap",
	[17] = "xskmap",
	[18] = "sockhash",
	[19] = "cgroup_storage",
	[20] = "reuseport_sockarray",
	[21] = "percpu_cgroup_storage",
	[22] = "queue",
	[23] = "stack",
	[24] = "sk_storage",
	[25] = "devmap_hash",
	[26] = "struct_ops",
	[27] = "ringbuf",
	[28] = "inode_storage",
	[29] = "task_storage",
	[30] = "bloom_filter",
	[31] = "user_ringbuf",
	[32] = "cgrp_storage",
	[33] = "arena",
};

#define MAP_TYPES (sizeof(map_type_names) / sizeof(map_type_names[0]))

/* The kernels whose memory computation this program repeats: [from, to). */
#define MEMORY_KERNELS_FROM KERNEL_VERSION(6, 18, 0)
#define MEMORY_KERNELS_TO KERNEL_VERSION(6, 19, 0)

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern int CONFIG_PAGE_SHIFT __kconfig __weak;

/*
 * num_possible_cpus(), counted by the kernel: it rounds the size of an LRU hash
 * map with a list per CPU (BPF_F_NO_COMMON_LRU) up to a multiple of the number
 * of possible CPUs, so one asked for a single entry gets exactly that many.
 * This map is one of iterfs's own.
 */
#define BPF_F_NO_COMMON_LRU (1U << 1)

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8);
} possible_cpus SEC(".maps");

static __always_inline __u32 num_possible_cpus(void)
{
	return ((struct bpf_map *)&possible_cpus)->max_entries;
}

static __always_inline __u64 round_up(__u64 value, __u64 align)
{
	return (value + align - 1) / align * align;
}

/* kernel/bpf/arraymap.c: array_map_mem_usage(), for every array of values or fds. */
static __always_inline __u64 array_usage(struct bpf_map *map, __u32 type, __u32 cpus)
{
	struct bpf_array *array = (void *)map;
	__u64 elem_size = BPF_CORE_READ(array, elem_size);
	__u64 entries = BPF_CORE_READ(map, max_entries);
	__u64 usage = bpf_core_type_size(struct bpf_array);
	__u64 page_size = 1ULL << CONFIG_PAGE_SHIFT;

	if (type == MAP_PERCPU_ARRAY)
		return usage + entries * sizeof(void *) + entries * elem_size * cpus;
	if (BPF_CORE_READ(map, map_flags) & BPF_F_MMAPABLE) {
		if (!CONFIG_PAGE_SHIFT)
			return UNKNOWN;
		return round_up(usage, page_size) + round_up(entries * elem_size, page_size);
	}
	return usage + entries * elem_size;
}

/* kernel/bpf/hashtab.c: htab_map_mem_usage(). */
static __always_inline __u64 hash_usage(struct bpf_map *map, __u32 type, __u32 cpus)
{
	struct bpf_htab *htab = (void *)map;
	bool percpu = type == MAP_PERCPU_HASH || type == MAP_LRU_PERCPU_HASH;
	bool lru = type == MAP_LRU_HASH || type == MAP_LRU_PERCPU_HASH;
	__u64 value_size = round_up(BPF_CORE_READ(map, value_size), 8);
	__u64 elem_size = BPF_CORE_READ(htab, elem_size);
	__u64 usage, entries;

	usage = bpf_core_type_size(struct bpf_htab) +
		bpf_core_type_size(struct bucket) * (__u64)BPF_CORE_READ(htab, n_buckets) +
		sizeof(int) * cpus * HASHTAB_MAP_LOCK_COUNT;
	if (!(BPF_CORE_READ(map, map_flags) & BPF_F_NO_PREALLOC)) {
		entries = BPF_CORE_READ(map, max_entries);
		/* htab_has_extra_elems(): a map of maps updates in place */
		if (!percpu && !lru && type != MAP_HASH_OF_MAPS)
			entries += cpus;
		usage += elem_size * entries;
		if (percpu)
			usage += value_size * cpus * entries;
		else if (!lru)
			usage += sizeof(void *) * cpus;
		return usage;
	}
	/* A per-CPU counter's sum needs every CPU's part, which a program cannot read. */
	if (BPF_CORE_READ(htab, use_percpu_counter))
		return UNKNOWN;
	entries = BPF_CORE_READ(htab, count.counter);
	usage += (elem_size + sizeof(struct llist_node)) * entries;
	if (percpu) {
		usage += (sizeof(struct llist_node) + sizeof(void *)) * entries;
		usage += value_size * cpus * entries;
	}
	return usage;
}

/* kernel/bpf/bpf_local_storage.c: bpf_local_storage_map_mem_usage(). */
static __always_inline __u64 local_storage_usage(struct bpf_map *map)
{
	struct bpf_local_storage_map *smap = (void *)map;

	return bpf_core_type_size(struct bpf_local_storage_map) +
	       (bpf_core_type_size(struct bpf_local_storage_map_bucket)
		<< BPF_CORE_READ(smap, bucket_log));
}

/* kernel/bpf/ringbuf.c: ringbuf_map_mem_usage(), for both ring buffer types. */
static __always_inline __u64 ringbuf_usage(struct bpf_map *map)
{
	struct bpf_ringbuf *rb = BPF_CORE_READ((struct bpf_ringbuf_map *)map, rb);
	__u32 page_shift = CONFIG_PAGE_SHIFT;
	__u64 meta_pages, data_pages;

	if (!page_shift)
		return UNKNOWN;
	/* RINGBUF_PGOFF: the pages before the consumer position's */
	meta_pages = (bpf_core_field_offset(struct bpf_ringbuf, consumer_pos) >> page_shift) +
		     RINGBUF_POS_PAGES;
	data_pages = BPF_CORE_READ(map, max_entries) >> page_shift;
	return bpf_core_type_size(struct bpf_ringbuf_map) +
	       ((__u64)BPF_CORE_READ(rb, nr_pages) << page_shift) +
	       (meta_pages + 2 * data_pages) * sizeof(void *);
}

/* kernel/bpf/bloom_filter.c: bloom_map_mem_usage(). */
static __always_inline __u64 bloom_filter_usage(struct bpf_map *map)
{
	__u64 bits = (__u64)BPF_CORE_READ((struct bpf_bloom_filter *)map, bitset_mask) + 1;

	return bpf_core_type_size(struct bpf_bloom_filter) +
	       round_up((bits + 7) / 8, sizeof(unsigned long));
}

/* kernel/bpf/queue_stack_maps.c: queue_stack_map_mem_usage(). */
static __always_inline __u64 queue_stack_usage(struct bpf_map *map)
{
	return bpf_core_type_size(struct bpf_queue_stack) +
	       ((__u64)BPF_CORE_READ(map, max_entries) + 1) * BPF_CORE_READ(map, value_size);
}

/* What fdinfo's memlock shows for this map, or UNKNOWN. */
static __u64 memory_usage(struct bpf_map *map)
{
	__u32 type = BPF_CORE_READ(map, map_type);

	if (LINUX_KERNEL_VERSION < MEMORY_KERNELS_FROM ||
	    LINUX_KERNEL_VERSION >= MEMORY_KERNELS_TO)
		return UNKNOWN;
	switch (type) {
	case MAP_ARRAY:
	case MAP_PERCPU_ARRAY:
	case MAP_PROG_ARRAY:
	case MAP_PERF_EVENT_ARRAY:
	case MAP_CGROUP_ARRAY:
	case MAP_ARRAY_OF_MAPS:
		return array_usage(map, type, num_possible_cpus());
	case MAP_HASH:
	case MAP_PERCPU_HASH:
	case MAP_LRU_HASH:
	case MAP_LRU_PERCPU_HASH:
	case MAP_HASH_OF_MAPS:
		return hash_usage(map, type, num_possible_cpus());
	case MAP_SK_STORAGE:
	case MAP_INODE_STORAGE:
	case MAP_TASK_STORAGE:
	case MAP_CGRP_STORAGE:
		return local_storage_usage(map);
	case MAP_RINGBUF:
	case MAP_USER_RINGBUF:
		return ringbuf_usage(map);
	case MAP_BLOOM_FILTER:
		return bloom_filter_usage(map);
	case MAP_QUEUE:
	case MAP_STACK:
		return queue_stack_usage(map);
	default:
		return UNKNOWN;
	}
}

SEC("iter/bpf_map")
int bpf_map(struct bpf_iter__bpf_map *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct seq_file *seq = meta->seq;
	struct bpf_map *map = ctx->map;
	struct session *session = session_get(meta);
	char unknown_type[TYPE_NAME_SIZE], memory[24];
	const char *type_name = unknown_type;
	const char *name;
	__u64 usage;
	__u32 type;

	if (!session)
		return 0;
	if (session_wants_header(session, meta, map))
		BPF_SEQ_PRINTF(seq, "%6s %-16s %-16s %-8s %6s %8s %11s %12s\n", "id", "type",
			       "name", "flags", "key", "value", "max_entries", "memlock");
	if (!map) {
		session_end(meta);
		return 0;
	}

	type = BPF_CORE_READ(map, map_type);
	if (type < MAP_TYPES && map_type_names[type][0])
		type_name = map_type_names[type];
	else
		BPF_SNPRINTF(unknown_type, sizeof(unknown_type), "%u", type);

	usage = memory_usage(map);
	if (usage == UNKNOWN)
		BPF_SNPRINTF(memory, sizeof(memory), "-");
	else
		BPF_SNPRINTF(memory, sizeof(memory), "%llu", usage);

	name = BPF_CORE_READ(map, name[0]) ? (const char *)map->name : "-";
	BPF_SEQ_PRINTF(seq, "%6u %-16s %-16s 0x%-6x %6u %8u %11u %12s\n",
		       BPF_CORE_READ(map, id), type_name, name, BPF_CORE_READ(map, map_flags),
		       BPF_CORE_READ(map, key_size), BPF_CORE_READ(map, value_size),
		       BPF_CORE_READ(map, max_entries), memory);
	return 0;
}
