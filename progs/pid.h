/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Pids as a reader sees them: the number a struct pid has in a pid namespace,
 * and the namespace of the task reading the iterator, where the task iterator
 * walks and numbers the tasks it visits.
 */
#ifndef ITERFS_PID_H
#define ITERFS_PID_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#define MAX_PID_NS_LEVEL	32

/* pid_nr_ns(): the number `pid` has in `ns`, 0 where ns cannot see it. */
static __always_inline int pid_nr_ns(struct pid *pid, struct pid_namespace *ns)
{
	unsigned int ns_level, pid_level;
	struct upid upid;

	if (!pid || !ns)
		return 0;
	ns_level = BPF_CORE_READ(ns, level);
	pid_level = BPF_CORE_READ(pid, level);
	if (ns_level > pid_level || ns_level > MAX_PID_NS_LEVEL)
		return 0;
	if (bpf_probe_read_kernel(&upid, sizeof(upid),
				  (void *)((__u64)pid + bpf_core_field_offset(struct pid, numbers) +
					   ns_level * sizeof(struct upid))))
		return 0;
	return upid.ns == ns ? upid.nr : 0;
}

/* The upid of `pid` at its own level: its number in, and, the pid namespace
 * of the task it belongs to (task_active_pid_ns()). False if it cannot be read. */
static __always_inline bool own_upid(struct pid *pid, struct upid *upid)
{
	unsigned int level = BPF_CORE_READ(pid, level);

	return level <= MAX_PID_NS_LEVEL &&
	       !bpf_probe_read_kernel(upid, sizeof(*upid),
				      (void *)((__u64)pid + bpf_core_field_offset(struct pid, numbers) +
					       level * sizeof(struct upid)));
}

/* The reading thread's own upid: its number and pid namespace at its level.
 * False if it cannot be read. */
static __always_inline bool reader_upid(struct upid *upid)
{
	return own_upid(BPF_CORE_READ(bpf_get_current_task_btf(), thread_pid), upid);
}

/* task_active_pid_ns(current): where the iterator numbers the tasks it visits. */
static __always_inline struct pid_namespace *reader_pid_ns(void)
{
	struct upid upid;

	return reader_upid(&upid) ? upid.ns : NULL;
}

/* gettid() of the reading thread: its number in its own pid namespace, where
 * bpf_get_current_pid_tgid() gives the initial namespace's. 0 if unknown. */
static __always_inline __u32 reader_tid(void)
{
	struct upid upid;

	return reader_upid(&upid) ? upid.nr : 0;
}

#endif /* ITERFS_PID_H */
