/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Whether a walk may show a task to its reader: decided where the data is
 * made, for every task, on the task as it is then, so that no lookup of the
 * task between reads can slip past what open() checked.
 *
 * - A file of one process shows that process only as open() saw it: the same
 *   start time (not another process that took its pid) and the same exec count
 *   (not the program it became since: /proc's maps file ends there too).
 * - The reader's own process (self) may always be shown, as /proc allows.
 * - Anyone else's only as the kernel's ptrace read check allows the reader, on
 *   the iterator file's credentials, which are the reader's (credentials.py):
 *   CAP_SYS_PTRACE, or the reader's fs uid and gid equal to the task's real,
 *   effective and saved ones while its mm is dumpable (SUID_DUMP_USER):
 *   __ptrace_may_access() in kernel/ptrace.c.
 *
 * - A reader in a pid namespace of its own sees only the tasks it numbers.
 *
 * A walk the daemon told nothing (OPENED_TOLD unset) shows nothing.
 */
#ifndef ITERFS_OPENED_H
#define ITERFS_OPENED_H

#include "iterfs.h"
#include "compat.h"
#include "namespaces.h"

static __always_inline bool same_process_as_opened(struct opening *opened,
						   struct task_struct *task)
{
	struct task_struct *leader = task->group_leader;

	return leader && leader->start_boottime == opened->start_boottime &&
	       leader->self_exec_id == opened->exec_id;
}

static __always_inline bool ptrace_readable(const struct cred *reader, struct task_struct *task)
{
	const struct cred *target = task->real_cred;
	__u32 uid = BPF_CORE_READ(reader, fsuid.val), gid = BPF_CORE_READ(reader, fsgid.val);

	if (cred_capable(reader, CAP_SYS_PTRACE))
		return true;
	if (!target || target->uid.val != uid || target->euid.val != uid ||
	    target->suid.val != uid || target->gid.val != gid || target->egid.val != gid ||
	    target->sgid.val != gid)
		return false;
	return mm_dumpable(task->mm) == SUID_DUMP_USER;
}

static __always_inline bool may_show_task(struct session *s, struct seq_file *seq,
					  struct task_struct *task)
{
	if (!s || !(s->opened.flags & OPENED_TOLD) || !task)
		return false;
	if ((s->opened.flags & OPENED_PROCESS) && !same_process_as_opened(&s->opened, task))
		return false;
	if (!in_told_pid_ns(&s->opened, task))
		return false;
	if (s->opened.flags & OPENED_OWN)
		return true;
	return ptrace_readable(BPF_CORE_READ(seq, file, f_cred), task);
}

/*
 * may_show_task() once for a task's objects that one buffer of the walk shows
 * one after another (the task_file walk visits a task's fds in a row): the
 * decision is made again for another task (known by its address and start time:
 * another may take the address later), in another walk, and at the start of
 * every buffer the kernel fills, so at least at every read(): what changed
 * between two reads (an exec, a process no longer dumpable) is seen, as it is
 * by may_show_task() at every object.
 */
struct task_decision {
	__u64 session_id;
	__u64 task;
	__u64 start_time;
	__u32 shown;
	__u32 unused;
};

/* Whether `d` holds the decision for `task` here; if not, decide_task() makes it. */
static __always_inline bool task_decided(struct task_decision *d, struct bpf_iter_meta *meta,
					 struct task_struct *task)
{
	return meta->seq->count && d->session_id == meta->session_id &&
	       d->task == (__u64)task && d->start_time == task->start_time;
}

static __always_inline bool decide_task(struct task_decision *d, struct session *s,
					struct bpf_iter_meta *meta, struct task_struct *task)
{
	d->session_id = meta->session_id;
	d->task = (__u64)task;
	d->start_time = task->start_time;
	d->shown = may_show_task(s, meta->seq, task);
	return d->shown;
}

#endif /* ITERFS_OPENED_H */
