// SPDX-License-Identifier: GPL-2.0
/*
 * metrics/files.prom: file descriptors open in every process, as
 * /proc/<pid>/fd lists them, a table that threads share counted once. One
 * series. The task_file iterator walks every task of the daemon's pid
 * namespace: a reader in a pid namespace of its own is given the host's count,
 * as /proc/sys/fs/file-nr gives it.
 */
#include "metrics.h"

char LICENSE[] SEC("license") = "GPL";

struct counts {
	__u64 session_id;
	__u64 files;
};

METRIC_WALKS_MAP(struct counts);

SEC("iter/task_file")
int files_metrics(struct bpf_iter__task_file *ctx)
{
	struct counts *walk = metric_walk(ctx->meta, struct counts);

	if (!ctx->file) {
		if (!ctx->task && walk) {	/* the final call */
			BPF_SEQ_PRINTF(ctx->meta->seq,
				       "# HELP iterfs_open_files File descriptors open in every "
				       "process, a table threads share counted once.\n"
				       "# TYPE iterfs_open_files gauge\n"
				       "iterfs_open_files %llu\n", walk->files);
			metric_walk_end();
		}
		return 0;
	}
	if (!walk)
		return METRIC_NO_ROOM;
	walk->files++;
	return 0;
}
