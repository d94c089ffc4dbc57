// SPDX-License-Identifier: GPL-2.0
/*
 * What the kernel's own walks cost, for the benchmarks' references: programs
 * that visit what task/all and task_file/all visit and write nothing.
 *
 *   walk_task       every thread, nothing done
 *   walk_task_file  every open file, nothing done
 *   d_path_file     every open file, its path found with bpf_d_path() as
 *                   task_file does, and nothing written
 *
 * A view can be no faster than these: formatting and FUSE come on top.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define PATH_SIZE 4096

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[PATH_SIZE]);
} paths SEC(".maps");

SEC("iter/task")
int walk_task(struct bpf_iter__task *ctx)
{
	return 0;
}

SEC("iter/task_file")
int walk_task_file(struct bpf_iter__task_file *ctx)
{
	return 0;
}

SEC("iter/task_file")
int d_path_file(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	__u32 zero = 0;
	char *path;

	if (!file)
		return 0;
	path = bpf_map_lookup_elem(&paths, &zero);
	if (path)
		bpf_d_path((struct path *)&file->f_path, path, PATH_SIZE);
	return 0;
}
