/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The namespaces a walk shows its reader's view of. /proc numbers pids in the
 * pid namespace of its mount and maps uids into the opener's user namespace.
 * The daemon's threads read every walk, whoever asked; so where the reader's
 * namespaces are not the daemon's, open() finds them (the `namespaces` program,
 * progs/internal/processes.bpf.c) and tells the walk their addresses in struct
 * opening. The daemon holds each namespace open while any walk is told it, so
 * the addresses stay valid; they are read with probe reads only.
 */
#ifndef ITERFS_NAMESPACES_H
#define ITERFS_NAMESPACES_H

#include "iterfs.h"

/* include/linux/user_namespace.h; constants, not in BTF */
#define UID_GID_MAP_MAX_BASE_EXTENTS	5
#define UID_GID_MAP_MAX_EXTENTS		340
#define OVERFLOWUID			65534	/* kernel.overflowuid's default */

/* The pid namespace whose numbers the walk prints: the reader's, as open() saw it. */
static __always_inline struct pid_namespace *walk_pid_ns(const struct opening *opened)
{
	return opened->pid_ns ? (struct pid_namespace *)opened->pid_ns : reader_pid_ns();
}

/* The user namespace the walk maps uids into: the reader's, as open() saw it. */
static __always_inline __u64 walk_user_ns(const struct opening *opened, struct seq_file *seq)
{
	return opened->user_ns ? opened->user_ns : (__u64)BPF_CORE_READ(seq, file, f_cred, user_ns);
}

/* Whether a walk told the reader's pid namespace may show `task`: only one it numbers. */
static __always_inline bool in_told_pid_ns(const struct opening *opened, struct task_struct *task)
{
	return !opened->pid_ns ||
	       pid_nr_ns(BPF_CORE_READ(task, thread_pid), (struct pid_namespace *)opened->pid_ns);
}

/* The task's process id, numbered as the walk's reader numbers it. */
static __always_inline int seen_tgid(const struct opening *opened, struct task_struct *task)
{
	if (!opened->pid_ns)
		return BPF_CORE_READ(task, tgid);
	return pid_nr_ns(BPF_CORE_READ(task, signal, pids[PIDTYPE_TGID]),
			 (struct pid_namespace *)opened->pid_ns);
}

struct uid_lookup {
	__u64 extents;
	__u32 kuid;
	__u32 uid;
};

static __attribute__((unused)) long uid_extent(__u64 i, void *data)
{
	struct uid_lookup *lookup = data;
	struct uid_gid_extent *extent = (void *)(lookup->extents + i * sizeof(*extent));
	__u32 lower_first = BPF_CORE_READ(extent, lower_first);

	if (lookup->kuid - lower_first < BPF_CORE_READ(extent, count)) {
		lookup->uid = BPF_CORE_READ(extent, first) + (lookup->kuid - lower_first);
		return 1;
	}
	return 0;
}

/*
 * The kernel's from_kuid_munged(user_ns, kuid): map_id_up(), or the overflow
 * uid if unmapped. A user_ns of 0 is the daemon's, the initial namespace, where
 * a uid is its kuid: the tcp iterator's ctx->uid, which the kernel mapped into
 * the iterator's creator's namespace, and every kuid for a walk told nothing.
 */
static __attribute__((unused)) __u32 from_kuid_munged(__u64 user_ns, __u32 kuid)
{
	struct user_namespace *ns = (void *)user_ns;
	struct uid_lookup lookup = { .kuid = kuid, .uid = OVERFLOWUID };
	__u32 extents;

	if (!user_ns)
		return kuid;
	extents = BPF_CORE_READ(ns, uid_map.nr_extents);
	if (extents <= UID_GID_MAP_MAX_BASE_EXTENTS)
		lookup.extents = user_ns + bpf_core_field_offset(struct user_namespace, uid_map) +
				 bpf_core_field_offset(struct uid_gid_map, extent);
	else	/* sorted by lower_first, as map_id_up() searches it */
		lookup.extents = (__u64)BPF_CORE_READ(ns, uid_map.reverse);
	if (extents > UID_GID_MAP_MAX_EXTENTS)
		extents = UID_GID_MAP_MAX_EXTENTS;
	bpf_loop(extents, uid_extent, &lookup, 0);
	return lookup.uid;
}

#endif /* ITERFS_NAMESPACES_H */
