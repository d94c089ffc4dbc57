/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A task's state as ps and /proc/<pid>/stat show it: the letter
 * get_task_state() prints, by task_state_index() (fs/proc/array.c,
 * include/linux/sched.h). What the task view and metrics/tasks.prom share.
 */
#ifndef ITERFS_TASK_STATE_H
#define ITERFS_TASK_STATE_H

#include "compat.h"

/* include/linux/sched.h; constants, not in BTF */
#define TASK_UNINTERRUPTIBLE	0x0002
#define TASK_REPORT		0x007f
#define TASK_REPORT_IDLE	0x0080
#define TASK_NOLOAD		0x0400
#define TASK_IDLE		(TASK_UNINTERRUPTIBLE | TASK_NOLOAD)
#define TASK_RTLOCK_WAIT	0x1000
#define TASK_FROZEN		0x8000

/* The letters, by index: task_state_array[] of fs/proc/array.c. */
#define TASK_STATES		9
/* No NUL: a C string clang 14 may put in .rodata.str1.1, which BTF then misplaces. */
static const char task_state_letters[TASK_STATES] = "RSDTtXZPI";

/* task_state_index(): fls() of the task's reported state, 0 to TASK_STATES - 1. */
static __always_inline unsigned int task_state_index(struct task_struct *task)
{
	unsigned int state = task_state(task), report, index = 0;

	report = (state | task->exit_state) & TASK_REPORT;
	if ((state & TASK_IDLE) == TASK_IDLE)
		report = TASK_REPORT_IDLE;
	if (state & (TASK_RTLOCK_WAIT | TASK_FROZEN))
		report = TASK_UNINTERRUPTIBLE;
	for (int bit = 0; bit < TASK_STATES - 1; bit++)
		if (report & (1U << bit))
			index = bit + 1;
	return index;
}

#endif /* ITERFS_TASK_STATE_H */
