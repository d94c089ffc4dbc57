/* SPDX-License-Identifier: GPL-2.0 */
#ifndef ITERFS_SCRATCH_H
#define ITERFS_SCRATCH_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/*
 * A view's scratch space, one `value_type` per reading thread, and scratch() to
 * get it. A thread runs one program at a time, so what a program keeps there
 * cannot race; it is too large for the stack.
 */
#define PER_THREAD_SCRATCH(value_type)						\
struct {									\
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);				\
	__uint(map_flags, BPF_F_NO_PREALLOC);					\
	__type(key, int);							\
	__type(value, value_type);						\
} scratch_space SEC(".maps");							\
										\
static __always_inline value_type *scratch(void)				\
{										\
	return bpf_task_storage_get(&scratch_space, bpf_get_current_task_btf(),	\
				    NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);	\
}

#endif /* ITERFS_SCRATCH_H */
