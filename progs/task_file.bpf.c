// SPDX-License-Identifier: GPL-2.0
/*
 * task_file: one line per open file descriptor: tgid, pid, fd, the flags and
 * position that /proc/<pid>/fdinfo/<fd> shows, and the path that
 * readlink(/proc/<pid>/fd/<fd>) shows, with a newline in a path written as \012
 * the way /proc/<pid>/maps writes it, so that every line is one descriptor.
 */
#include "iterfs.h"
#include "opened.h"
#include "text.h"
#include "scratch.h"

char LICENSE[] SEC("license") = "GPL";

#define PATH_SIZE 4096
#define O_CLOEXEC 02000000
#define FLAGS_WIDTH 10
#define BITS_PER_LONG 64

struct scratch {
	struct task_decision decided;	/* opened.h */
	__u32 ids_length;
	char ids[24];			/* the task's tgid and pid columns */
	struct line line;
	char path[PATH_SIZE];
	char escaped[PATH_SIZE * 4];
};

PER_THREAD_SCRATCH(struct scratch)

#include "paths.h"

/* f_flags as fdinfo shows them: with O_CLOEXEC when the fd is close-on-exec. */
static __always_inline unsigned int fdinfo_flags(struct task_struct *task, struct file *file,
						 unsigned int fd)
{
	unsigned long *close_on_exec = task->files->fdt->close_on_exec;
	unsigned long word = 0;
	unsigned int flags = file->f_flags;

	if (close_on_exec)
		bpf_probe_read_kernel(&word, sizeof(word), close_on_exec + fd / BITS_PER_LONG);
	if (word & (1UL << (fd % BITS_PER_LONG)))
		flags |= O_CLOEXEC;
	return flags;
}

SEC("iter/task_file")
int task_file(struct bpf_iter__task_file *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct seq_file *seq = meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct pid_namespace *ns;
	struct session *session;
	struct scratch *s;
	long long pos;
	long length;
	__u32 at;

	session = session_get(meta);
	if (session && session_wants_header(session, meta, file))
		BPF_SEQ_PRINTF(seq, "%8s %8s %8s %10s %10s %s\n",
			       "tgid", "pid", "fd", "flags", "pos", "path");
	if (!file) {
		session_end(meta);
		return 0;
	}
	s = scratch();
	if (!s || !session || !task)
		return 0;
	if (!task_decided(&s->decided, meta, task)) {
		/* A task's first fd here: its tgid and pid columns, kept for the others. */
		if (!decide_task(&s->decided, session, meta, task))
			return 0;
		line_clear(&s->line);
		if (!session->opened.pid_ns) {
			at = put_number(&s->line, 0, task->tgid, NUMBER(8, 10, 0));
			at = put_number(&s->line, at, task->pid, NUMBER(8, 10, 0));
		} else {
			ns = (struct pid_namespace *)session->opened.pid_ns;
			at = put_number(&s->line, 0, seen_tgid(&session->opened, task),
					NUMBER(8, 10, 0));
			at = put_number(&s->line, at, pid_nr_ns(task->thread_pid, ns),
					NUMBER(8, 10, 0));
		}
		__builtin_memcpy(s->ids, s->line.text, sizeof(s->ids));
		s->ids_length = at < sizeof(s->ids) ? at : sizeof(s->ids);
	} else if (!s->decided.shown) {
		return 0;
	}

	pos = file->f_pos;
	line_clear(&s->line);
	__builtin_memcpy(s->line.text, s->ids, sizeof(s->ids));
	at = s->ids_length;
	at = put_number(&s->line, at, ctx->fd, NUMBER(8, 10, 0));
	at = put_number(&s->line, at, fdinfo_flags(task, file, ctx->fd),
			NUMBER(FLAGS_WIDTH, 8, '0'));
	at = put_signed(&s->line, at, pos, 10);
	bpf_seq_write(seq, s->line.text, at & (LINE_SIZE - 1));
	length = bpf_d_path((struct path *)&file->f_path, s->path, sizeof(s->path));
	if (length <= 0) {
		BPF_SEQ_PRINTF(seq, "?\n");
		return 0;
	}
	length--;	/* without the terminating NUL */
	if (!has_newline(s, length)) {
		/* The path and its newline in one write, where its NUL was. */
		s->path[length & (PATH_SIZE - 1)] = '\n';
		bpf_seq_write(seq, s->path, (length & (PATH_SIZE - 1)) + 1);
		return 0;
	}
	bpf_seq_write(seq, s->escaped, escape_path(length) & (sizeof(s->escaped) - 1));
	bpf_seq_write(seq, "\n", 1);
	return 0;
}
