/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by iterfs views: per-reader session state and /proc's units. */
#ifndef ITERFS_H
#define ITERFS_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

/*
 * State of one reader's walk, keyed by the iterator's session id (unique per
 * iterator fd). The kernel shows an object again when its text did not fit in
 * the read buffer, so numbering must recognise a repeat by its seq_num.
 * A reader that closes before the end leaves its entry behind: LRU bounds that.
 */
struct session {
	__u64 last_seq_num_plus_one;	/* 0: no object numbered yet */
	__u32 next_number;
	__u32 header_done;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct session);
} sessions SEC(".maps");

static __always_inline struct session *session_get(struct bpf_iter_meta *meta)
{
	__u64 id = meta->session_id;
	struct session *s = bpf_map_lookup_elem(&sessions, &id);

	if (s)
		return s;
	struct session fresh = {};
	bpf_map_update_elem(&sessions, &id, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&sessions, &id);
}

static __always_inline void session_end(struct bpf_iter_meta *meta)
{
	__u64 id = meta->session_id;

	bpf_map_delete_elem(&sessions, &id);
}

/*
 * The header goes out with the first object, or in the final call (no object)
 * when there was no object at all, and again if the first object's text is
 * shown a second time. The final call's seq_num cannot tell "no object": the
 * socket iterators count their start token, so it is then -1, not 0.
 */
static __always_inline bool session_wants_header(struct session *s,
						 struct bpf_iter_meta *meta,
						 const void *object)
{
	if (object ? meta->seq_num != 0 : s->header_done)
		return false;
	s->header_done = 1;
	return true;
}

/* The number /proc prints in its `sl` column: printed objects only, from 0. */
static __always_inline __u32 session_number(struct session *s, __u64 seq_num)
{
	if (s->last_seq_num_plus_one == seq_num + 1)
		return s->next_number - 1;
	s->last_seq_num_plus_one = seq_num + 1;
	return s->next_number++;
}

/* jiffies to USER_HZ (100) clock ticks, as kernel/time/time.c does for any HZ. */
extern int CONFIG_HZ __kconfig;

static __always_inline __u64 jiffies_to_clock_t(__u64 jiffies)
{
	__u64 hz = (unsigned int)CONFIG_HZ;
	__u64 tick_nsec = (1000000000ULL + hz / 2) / hz;

	return jiffies * tick_nsec / (1000000000ULL / 100);
}

static __always_inline __u64 jiffies_delta_to_clock_t(long delta)
{
	return delta > 0 ? jiffies_to_clock_t(delta) : 0;
}

#endif /* ITERFS_H */
