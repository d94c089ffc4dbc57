/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by iterfs views: per-reader session state and /proc's units. */
#ifndef ITERFS_H
#define ITERFS_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "pid.h"
#include "constants.h"

/*
 * A view of one's own (from /etc/iterfs/progs.d or --progs) is root's alone,
 * since its program may read what /proc shows no one else, unless the program
 * says, at file scope:
 *
 *	ITERFS_WORLD_READABLE;
 *
 * Its view is then served as a built-in view of its target is: world-readable,
 * and a task_file or task_vma view still only to who may ptrace-read the
 * process. The daemon reads the marker from the object's section
 * ".iterfs.access"; libbpf skips that section (said at debug level only).
 */
#define ITERFS_WORLD_READABLE \
	static const char iterfs_access[] \
		__attribute__((section(".iterfs.access"), used)) = "world-readable"

/*
 * What the daemon tells a walk before it begins, and what the walk tells the
 * daemon back. Before an iterator's first read, the daemon thread about to
 * read writes under its thread id (gettid(), in its own pid namespace) what
 * open() saw (for a file of one process:
 * which process, as its start time and exec count). The first call of the
 * walk's session, in that read, takes it into the session and answers with the
 * session's id, which the daemon keeps to delete the session's entries when it
 * closes the iterator: no entry outlives its iterator, so these maps are plain
 * hashes, where one reader can never evict another's entry.
 */
#define OPENED_PROCESS	1	/* a file of one process: shown as open() saw it */
#define OPENED_OWN	2	/* the reader's own process (self) */
#define OPENED_TOLD	4	/* set by the walk: the daemon said who it is for */

struct opening {
	__u64 session_id;	/* the walk's answer */
	__u64 start_boottime;	/* the process's (its leader's), at open() */
	__u64 exec_id;		/* its leader's self_exec_id, at open() */
	__u32 flags;
	__u32 unused;
	/* The reader's namespaces where they are not the daemon's (namespaces.h):
	 * struct pid_namespace * and struct user_namespace *, 0 for the daemon's. */
	__u64 pid_ns;
	__u64 user_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct opening);
} openings SEC(".maps");

/* The daemon's word for the walk that begins now, in this thread; zeros if none. */
static __always_inline struct opening opening_take(struct bpf_iter_meta *meta)
{
	__u32 tid = reader_tid();
	struct opening *told = bpf_map_lookup_elem(&openings, &tid);
	struct opening taken = {};

	if (told) {
		told->session_id = meta->session_id;
		taken = *told;
		taken.flags |= OPENED_TOLD;
	}
	return taken;
}

/*
 * State of one reader's walk, keyed by the iterator's session id (unique per
 * iterator fd). The kernel shows an object again when its text did not fit in
 * the read buffer, so numbering must recognise a repeat by its seq_num.
 */
struct session {
	__u64 last_seq_num_plus_one;	/* 0: no object numbered yet */
	__u32 next_number;
	__u32 header_done;
	struct opening opened;
};

/* Sized above the daemon's limit on open iterators (fs.py MAX_OPEN). */
#define SESSIONS 16384

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SESSIONS);
	__type(key, __u64);
	__type(value, struct session);
} sessions SEC(".maps");

/*
 * The entry of `map` (a hash keyed by session id) for the walk of `meta`: the
 * one there, or one made from `fresh`, an expression evaluated only when there
 * is none (libbpf-tools' bpf_map_lookup_or_try_init(), but with the value made
 * only when it is needed). NULL where the map is full.
 */
#define session_entry(map, meta, fresh) ({					\
	__u64 session_id_ = (meta)->session_id;					\
	typeof(fresh) *entry_ = bpf_map_lookup_elem(map, &session_id_);		\
										\
	if (!entry_) {								\
		typeof(fresh) fresh_ = (fresh);					\
										\
		bpf_map_update_elem(map, &session_id_, &fresh_, BPF_NOEXIST);	\
		entry_ = bpf_map_lookup_elem(map, &session_id_);		\
	}									\
	entry_;									\
})

/* Deletes the entry of `map` for the walk of `meta`: the walk is over. */
static __always_inline void session_entry_delete(void *map, struct bpf_iter_meta *meta)
{
	__u64 id = meta->session_id;

	bpf_map_delete_elem(map, &id);
}

static __always_inline struct session *session_get(struct bpf_iter_meta *meta)
{
	return session_entry(&sessions, meta, ((struct session){ .opened = opening_take(meta) }));
}

static __always_inline void session_end(struct bpf_iter_meta *meta)
{
	session_entry_delete(&sessions, meta);
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
	__u64 tick_nsec = (NSEC_PER_SEC + hz / 2) / hz;

	return jiffies * tick_nsec / (NSEC_PER_SEC / USER_HZ);
}

static __always_inline __u64 jiffies_delta_to_clock_t(long delta)
{
	return delta > 0 ? jiffies_to_clock_t(delta) : 0;
}

#endif /* ITERFS_H */
