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
#include "paths.h"

char LICENSE[] SEC("license") = "GPL";

#define O_CLOEXEC 02000000
#define FLAGS_WIDTH 10
#define BITS_PER_LONG 64
#define NUMBERS_SIZE 128		/* every number of a line, at their widest */

/*
 * The close-on-exec bits of 64 fds, read once for them: the iterator gives a
 * task's fds in order. Kept for one task's fds in one buffer of the walk (as
 * its task_decision), so never older than the buffer's other lines.
 */
struct cloexec_word {
	__u64 table;			/* fdt->close_on_exec */
	__u32 index;			/* of the word: fd / BITS_PER_LONG */
	__u32 valid;
	__u64 bits;
};

struct scratch {
	struct task_decision decided;	/* opened.h */
	struct cloexec_word cloexec;
	__u32 ids_length;
	char ids[24];			/* the task's tgid and pid columns */
	struct line line;
	/* A line goes out in one write: its numbers, copied to end where the path
	 * begins, then the path bpf_d_path() found, its NUL made the newline. */
	char numbers[NUMBERS_SIZE];
	struct path_buffer path;	/* paths.h */
};

PER_THREAD_SCRATCH(struct scratch)

/* f_flags as fdinfo shows them: with O_CLOEXEC when the fd is close-on-exec. */
static __always_inline unsigned int fdinfo_flags(struct cloexec_word *cloexec,
						 struct task_struct *task, struct file *file,
						 unsigned int fd)
{
	unsigned long *close_on_exec = task->files->fdt->close_on_exec;
	unsigned int flags = file->f_flags;
	__u32 index = fd / BITS_PER_LONG;

	if (!cloexec->valid || cloexec->table != (__u64)close_on_exec || cloexec->index != index) {
		cloexec->bits = 0;
		if (close_on_exec)
			bpf_probe_read_kernel(&cloexec->bits, sizeof(cloexec->bits),
					      close_on_exec + index);
		cloexec->table = (__u64)close_on_exec;
		cloexec->index = index;
		cloexec->valid = 1;
	}
	if (cloexec->bits & (1UL << (fd % BITS_PER_LONG)))
		flags |= O_CLOEXEC;
	return flags;
}

/* The line's first `at` bytes (at most NUMBERS_SIZE) into numbers[], ending
 * where the path begins: eight bytes a step, from the end; the last step
 * copies the line's first eight bytes again where fewer are left. */
static __always_inline void numbers_before_path(struct scratch *s, __u32 at)
{
	__u32 copied, rest, from, to;

	for (copied = 0; copied < NUMBERS_SIZE && copied < at; copied += 8) {
		rest = at - copied;
		/* The masks are for the verifier: at < NUMBERS_SIZE already. */
		from = (rest >= 8 ? rest - 8 : 0) & (NUMBERS_SIZE - 1);
		to = (rest >= 8 ? NUMBERS_SIZE - copied - 8 : NUMBERS_SIZE - at) &
		     (NUMBERS_SIZE - 1);
		*(__u64 *)&s->numbers[to] = *(__u64 *)&s->line.text[from];
	}
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
	__u32 at, path_length, start, size;

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
		s->cloexec.valid = 0;
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
	at = put_number(&s->line, at, fdinfo_flags(&s->cloexec, task, file, ctx->fd),
			NUMBER(FLAGS_WIDTH, 8, '0'));
	at = put_signed(&s->line, at, pos, 10);
	length = bpf_d_path((struct path *)&file->f_path, s->path.text, sizeof(s->path.text));
	if (length <= 0) {
		bpf_seq_write(seq, s->line.text, at & (LINE_SIZE - 1));
		BPF_SEQ_PRINTF(seq, "?\n");
		return 0;
	}
	length--;	/* without the terminating NUL */
	if (!has_newline(&s->path, length) && at < NUMBERS_SIZE) {
		/* The usual case: numbers, path and newline in one write. */
		numbers_before_path(s, at);
		path_length = length & (PATH_SIZE - 1);
		s->path.text[path_length] = '\n';
		/* Masks the verifier sees: 0 < at < NUMBERS_SIZE already. */
		start = (NUMBERS_SIZE - at) & (NUMBERS_SIZE - 1);
		size = (at + path_length + 1) & (2 * PATH_SIZE - 1);
		bpf_seq_write(seq, &s->numbers[start], size);
		return 0;
	}
	bpf_seq_write(seq, s->line.text, at & (LINE_SIZE - 1));
	bpf_seq_write(seq, s->path.escaped,
		      escape_path(&s->path, length) & (sizeof(s->path.escaped) - 1));
	bpf_seq_write(seq, "\n", 1);
	return 0;
}
