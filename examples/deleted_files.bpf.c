// SPDX-License-Identifier: GPL-2.0
/*
 * deleted_files: files deleted while a process still holds them open, as
 * `lsof +L1` lists them: the space they take is freed only when the last one
 * closes, so they are where a full disk's missing gigabytes hide.
 *
 *	    pid comm             fd         size path
 *	    812 rsyslogd          7   2147483648 /var/log/syslog.1 (deleted)
 *
 * One line per fd of a regular file whose link count is 0 (memfd_create()
 * files are among them: they never had a name). deleted_files/all is every
 * process, deleted_files/<pid> one of them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define S_IFMT 00170000
#define S_IFREG 0100000
#define PATH_SIZE 4096

/* Too large for the stack: one buffer per CPU (an iterator program is not preempted). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[PATH_SIZE]);
} paths SEC(".maps");

SEC("iter/task_file")
int deleted_files(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct inode *inode;
	__u32 zero = 0;
	char *path;

	if (ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(seq, "%7s %-16s %4s %12s %s\n", "pid", "comm", "fd", "size", "path");
	if (!task || !file)
		return 0;
	inode = file->f_inode;
	if ((inode->i_mode & S_IFMT) != S_IFREG || inode->__i_nlink != 0)
		return 0;
	path = bpf_map_lookup_elem(&paths, &zero);
	if (!path)
		return 0;
	if (bpf_d_path((struct path *)&file->f_path, path, PATH_SIZE) < 0)
		path[0] = '\0';
	BPF_SEQ_PRINTF(seq, "%7d %-16s %4u %12lld %s\n", task->tgid, task->comm, ctx->fd,
		       inode->i_size, path);
	return 0;
}
