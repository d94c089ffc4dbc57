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
#include "iterfs.h"
#include "scratch.h"

char LICENSE[] SEC("license") = "GPL";

/* The reader's namespace, worked out once per iterator session. */
struct reader_namespace {
	__u64 session_id;
	struct pid_namespace *pid_ns;
	__u32 pid_ns_level;
};

PER_THREAD_SCRATCH(struct reader_namespace)

SEC("iter/task")
int processes(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct pid_namespace *pid_ns;
	struct reader_namespace *reader;
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

/*
 * The namespaces of one thread, a reader whose namespaces are not the daemon's
 * (iterfs/namespaces.py): their addresses, for walks told them
 * (progs/namespaces.h), and their inode numbers, which the daemon checks
 * against the namespace files it holds open. Attached to that thread; one record.
 */
struct namespaces {
	__u64 pid_ns;		/* task_active_pid_ns() */
	__u64 user_ns;		/* its credentials' */
	__u32 pid_ns_inum;
	__u32 user_ns_inum;
	__u32 net_ns_inum;
	__u32 pid_ns_level;
};

SEC("iter/task")
int namespaces(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct pid_namespace *pid_ns;
	struct user_namespace *user_ns;
	struct namespaces found = {};
	struct upid upid;

	if (!task || ctx->meta->seq_num != 0 || !own_upid(task->thread_pid, &upid))
		return 0;
	pid_ns = upid.ns;
	user_ns = BPF_CORE_READ(task, real_cred, user_ns);
	found.pid_ns = (__u64)pid_ns;
	found.user_ns = (__u64)user_ns;
	found.pid_ns_inum = BPF_CORE_READ(pid_ns, ns.inum);
	found.user_ns_inum = BPF_CORE_READ(user_ns, ns.inum);
	found.net_ns_inum = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	found.pid_ns_level = BPF_CORE_READ(pid_ns, level);
	bpf_seq_write(ctx->meta->seq, &found, sizeof(found));
	return 0;
}

/*
 * Every task a pid namespace numbers, for a reader in it: its number there,
 * and its tid and tgid as the daemon numbers them; in the iterator's order.
 * The namespace is told by the daemon (progs/iterfs.h), by address.
 */
struct numbered {
	__u32 number;
	__u32 tid;
	__u32 tgid;
};

SEC("iter/task")
int numbered(struct bpf_iter__task *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct task_struct *task = ctx->task;
	struct numbered record;
	struct session *session;

	session = session_get(meta);
	if (!task) {
		session_end(meta);
		return 0;
	}
	if (!session || !session->opened.pid_ns)
		return 0;
	record.number = pid_nr_ns(task->thread_pid, (struct pid_namespace *)session->opened.pid_ns);
	if (!record.number)
		return 0;
	record.tid = task->pid;
	record.tgid = task->tgid;
	bpf_seq_write(meta->seq, &record, sizeof(record));
	return 0;
}
