// SPDX-License-Identifier: GPL-2.0
/*
 * metrics/tasks.prom: threads by state, as the letter /proc/<pid>/stat and
 * ps print (R S D T t X Z P I), and processes (thread group leaders), kernel
 * threads included, as /proc lists them. 9 + 1 series, every one printed, 0
 * included. The task iterator walks every task of the daemon's pid namespace:
 * a reader in a pid namespace of its own is given the host's counts, as
 * /proc/loadavg gives them.
 */
#include "metrics.h"

char LICENSE[] SEC("license") = "GPL";

/* include/linux/sched.h; constants, not in BTF */
#define TASK_UNINTERRUPTIBLE	0x0002
#define TASK_REPORT		0x007f
#define TASK_REPORT_IDLE	0x0080
#define TASK_NOLOAD		0x0400
#define TASK_IDLE		(TASK_UNINTERRUPTIBLE | TASK_NOLOAD)
#define TASK_RTLOCK_WAIT	0x1000
#define TASK_FROZEN		0x8000
#define STATES			9

struct counts {
	__u64 session_id;
	__u64 threads[STATES];		/* by task_state_index() */
	__u64 processes;
};

METRIC_WALKS_MAP(struct counts);

static const char state_letters[STATES + 1] = "RSDTtXZPI";

/* task_state_index(): the index of the letter get_task_state() prints. */
static __always_inline int task_state_index(struct task_struct *task)
{
	unsigned int state = task->__state, report;
	int index = 0;

	report = (state | task->exit_state) & TASK_REPORT;
	if ((state & TASK_IDLE) == TASK_IDLE)
		report = TASK_REPORT_IDLE;
	if (state & (TASK_RTLOCK_WAIT | TASK_FROZEN))
		report = TASK_UNINTERRUPTIBLE;
	/* fls(report) */
	for (int bit = 0; bit < STATES - 1; bit++)
		if (report & (1U << bit))
			index = bit + 1;
	return index;
}

static void print(struct seq_file *seq, struct counts *walk)
{
	BPF_SEQ_PRINTF(seq, "# HELP iterfs_threads Threads by state, as the letter ps and "
		       "/proc/<pid>/stat show it.\n"
		       "# TYPE iterfs_threads gauge\n");
	for (int state = 0; state < STATES; state++)
		BPF_SEQ_PRINTF(seq, "iterfs_threads{state=\"%c\"} %llu\n", state_letters[state],
			       walk->threads[state]);
	BPF_SEQ_PRINTF(seq, "# HELP iterfs_processes Processes (thread groups).\n"
		       "# TYPE iterfs_processes gauge\n"
		       "iterfs_processes %llu\n", walk->processes);
}

SEC("iter/task")
int tasks_metrics(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct counts *walk = metric_walk(ctx->meta, struct counts);
	int state;

	if (!task) {
		if (walk) {
			print(ctx->meta->seq, walk);
			metric_walk_end();
		}
		return 0;
	}
	if (!walk)
		return METRIC_NO_ROOM;
	state = task_state_index(task);
	if (state < STATES)
		walk->threads[state]++;
	if (task->pid == task->tgid)
		walk->processes++;
	return 0;
}
