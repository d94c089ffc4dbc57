// SPDX-License-Identifier: GPL-2.0
/*
 * BPF objects for tests/test_bpf_objects.py to find in /bpf_prog, /bpf_map and
 * /bpf_link: programs of several types, each attachable as a different kind of
 * link, and a named map of every type whose memory /bpf_map computes, and of a
 * few whose memory it does not. Nothing here does anything when it runs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define BPF_F_NO_PREALLOC (1U << 0)
#define BPF_F_NO_COMMON_LRU (1U << 1)
#define BPF_F_MMAPABLE (1U << 10)
#define SK_PASS 1

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 100);
	__type(key, __u32);
	__type(value, __u64);
} t_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} t_hash_nopre SEC(".maps");

/* So large that the kernel counts its elements per CPU: memlock is "-". */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 20);
	__type(key, __u32);
	__type(value, __u32);
} t_hash_big SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32[3]);
} t_percpu_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} t_pcpu_hash_np SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 100);
	__type(key, __u32);
	__type(value, __u64);
} t_lru_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, 7);
	__type(key, __u32);
	__type(value, __u64);
} t_lru_percpu_lr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 100);
	__type(key, __u32);
	__type(value, __u64);
} t_lru_pcpu_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 10);
	__type(key, __u32);
	__type(value, __u32[3]);
} t_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1000);
	__type(key, __u32);
	__type(value, __u32[3]);
} t_mmap_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 10);
	__type(key, __u32);
	__type(value, __u32[3]);
} t_percpu_array SEC(".maps");

/*
 * No prog_array: one closed while other processes opened it by id (bpftool map
 * show) was seen to stay in the kernel on 6.18, held by references no one owns:
 * prog_array_map_clear() takes one each time its last user fd closes, and its
 * release work, if already queued, drops only one. Its memory is computed as
 * the other arrays' are.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} t_perf_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} t_cgroup_array SEC(".maps");

struct inner_array {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 3);
	__type(key, __u32);
	__array(values, struct inner_array);
} t_array_of_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 3);
	__type(key, __u32);
	__array(values, struct inner_array);
} t_hash_of_maps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16384);
} t_ringbuf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 8192);
} t_user_ringbuf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 10);
	__type(value, __u32[3]);
} t_queue SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 5);
	__type(value, __u64);
} t_stack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, 1000);
	__type(value, __u64);
} t_bloom SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} t_task_storage SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} t_sk_storage SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} t_inode_storag SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} t_cgrp_storage SEC(".maps");

/* Types whose memory /bpf_map does not compute. */
struct lpm_key {
	__u32 prefixlen;
	__u32 address;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16);
	__type(key, struct lpm_key);
	__type(value, __u32);
} t_lpm_trie SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16);
	__type(key, __u32);
	__uint(value_size, 127 * sizeof(__u64));
} t_stack_trace SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} t_devmap SEC(".maps");

/* A socket filter that uses two maps: `maps` is 2 for it. */
SEC("socket")
int objects_socket(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *counted = bpf_map_lookup_elem(&t_hash, &key);
	__u32 *value = bpf_map_lookup_elem(&t_array, &key);

	return (counted ? 1 : 0) + (value ? 1 : 0);
}

SEC("kprobe/do_nanosleep")
int objects_kprobe(struct pt_regs *regs)
{
	return 0;
}

SEC("raw_tp/task_rename")
int objects_raw_tp(void *ctx)
{
	return 0;
}

/* Not loaded where the kernel refuses every bpf_map_elem program (the test
   turns its autoload off): objects_bpf_map makes an iter link everywhere. */
SEC("iter/bpf_map_elem")
int objects_map_elem(struct bpf_iter__bpf_map_elem *ctx)
{
	return 0;
}

SEC("iter/bpf_map")
int objects_bpf_map(struct bpf_iter__bpf_map *ctx)
{
	return 0;
}

/* Lets every packet in; attached to an empty cgroup of the test's own. */
SEC("cgroup_skb/ingress")
int objects_cgroup(struct __sk_buff *skb)
{
	return 1;
}

/* Selects no socket; attached to a network namespace of the test's own. */
SEC("sk_lookup")
int objects_sk_lookup(struct bpf_sk_lookup *ctx)
{
	return SK_PASS;
}
