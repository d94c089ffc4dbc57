// SPDX-License-Identifier: GPL-2.0
/*
 * The daemon's own list of processes, for the process directories: the tgid of
 * every thread group leader the task iterator walks, as a 32-bit number, in
 * the order the iterator walks them (ascending, as /proc lists them). Not a
 * view: iterfs loads it itself.
 *
 * Listing /proc costs the kernel a dentry per process (proc_fill_cache()); the
 * iterator only walks the pid table. Numbers are the reader's pid namespace's,
 * where the iterator walks.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "pid.h"
#include "scratch.h"

char LICENSE[] SEC("license") = "GPL";

/* The reader's namespace, worked out once per iterator session. */
struct reader {
	__u64 session_id;
	struct pid_namespace *pid_ns;
	__u32 pid_ns_level;
};

PER_THREAD_SCRATCH(struct reader)

SEC("iter/task")
int processes(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct pid_namespace *pid_ns;
	struct reader *reader;
	__u32 tgid;

	if (!task || task->pid != task->tgid)
		return 0;
	reader = scratch();
	if (!reader)
		return 0;
	if (reader->session_id != ctx->meta->session_id) {
		pid_ns = reader_pid_ns();
		reader->session_id = ctx->meta->session_id;
		reader->pid_ns = pid_ns;
		reader->pid_ns_level = pid_ns ? BPF_CORE_READ(pid_ns, level) : 0;
	}
	pid_ns = reader->pid_ns;
	if (!pid_ns)
		return 0;
	/* The numbers a task holds are those of the initial namespace. */
	tgid = reader->pid_ns_level == 0 ? task->tgid : pid_nr_ns(task->thread_pid, pid_ns);
	if (tgid)
		bpf_seq_write(ctx->meta->seq, &tgid, sizeof(tgid));
	return 0;
}

/*
 * Which process a file of one process is opened for, as open() sees it: the
 * leader's start time and exec count, which progs/opened.h compares at every
 * task a walk shows. Attached to one process or thread; one record.
 */
struct identity {
	__u64 start_boottime;
	__u64 exec_id;
	__u32 tgid;
	__u32 tid;
};

SEC("iter/task")
int identity(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct task_struct *leader;
	struct identity id = {};

	if (!task || ctx->meta->seq_num != 0)
		return 0;
	leader = task->group_leader;
	if (!leader)
		return 0;
	id.start_boottime = leader->start_boottime;
	id.exec_id = leader->self_exec_id;
	id.tgid = task->tgid;
	id.tid = task->pid;
	bpf_seq_write(ctx->meta->seq, &id, sizeof(id));
	return 0;
}
