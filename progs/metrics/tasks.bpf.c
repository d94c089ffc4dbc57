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
#include "task_state.h"

char LICENSE[] SEC("license") = "GPL";

struct counts {
	__u64 session_id;
	__u64 threads[TASK_STATES];		/* by task_state_index() */
	__u64 processes;
};

METRIC_WALKS_MAP(struct counts);

/* The final call: the walk's totals, then its counts go. */
static int print_totals(struct seq_file *seq, struct counts *walk)
{
	BPF_SEQ_PRINTF(seq, "# HELP iterfs_threads Threads by state, as the letter ps and "
		       "/proc/<pid>/stat show it.\n"
		       "# TYPE iterfs_threads gauge\n");
	for (int state = 0; state < TASK_STATES; state++)
		BPF_SEQ_PRINTF(seq, "iterfs_threads{state=\"%c\"} %llu\n", task_state_letters[state],
			       walk->threads[state]);
	BPF_SEQ_PRINTF(seq, "# HELP iterfs_processes Processes (thread groups).\n"
		       "# TYPE iterfs_processes gauge\n"
		       "iterfs_processes %llu\n", walk->processes);
	metric_walk_end();
	return 0;
}

SEC("iter/task")
int tasks_metrics(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct counts *walk = metric_walk(ctx->meta, struct counts);
	int state;

	if (!walk)		/* at the final call too: nothing to print */
		return METRIC_NO_ROOM;
	if (!task)
		return print_totals(ctx->meta->seq, walk);
	state = task_state_index(task);
	if (state < TASK_STATES)
		walk->threads[state]++;
	if (task->pid == task->tgid)
		walk->processes++;
	return 0;
}
