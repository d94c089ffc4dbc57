// SPDX-License-Identifier: GPL-2.0
/*
 * task_file: one line per open file descriptor: tgid, pid, fd, the flags and
 * position that /proc/<pid>/fdinfo/<fd> shows, and the path that
 * readlink(/proc/<pid>/fd/<fd>) shows, with a newline in a path written as \012
 * the way /proc/<pid>/maps writes it, so that every line is one descriptor.
 */
#include "iterfs.h"

char LICENSE[] SEC("license") = "GPL";

#define PATH_SIZE 4096
#define O_CLOEXEC 02000000
#define FLAGS_WIDTH 10
#define BITS_PER_LONG 64

/* Per reading thread: a thread runs one program at a time, so nothing races. */
struct scratch {
	char path[PATH_SIZE];
	char escaped[PATH_SIZE * 4];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct scratch);
} scratch_space SEC(".maps");

static __always_inline struct scratch *scratch(void)
{
	return bpf_task_storage_get(&scratch_space, bpf_get_current_task_btf(), NULL,
				    BPF_LOCAL_STORAGE_GET_F_CREATE);
}

struct newline_scan {
	__u32 length;
	bool found;
};

/* Looks at eight bytes of the path at a time for a '\n'. */
static long scan_word(__u32 index, struct newline_scan *scan)
{
	struct scratch *s = scratch();
	__u32 offset = index * 8;
	__u64 word;

	if (!s || offset >= scan->length)
		return 1;
	word = *(__u64 *)&s->path[offset & (PATH_SIZE - 8)] ^ 0x0a0a0a0a0a0a0a0aULL;
	if (scan->length - offset < 8)	/* bytes past the end never match */
		word |= ~0ULL << ((scan->length - offset) * 8);
	if ((word - 0x0101010101010101ULL) & ~word & 0x8080808080808080ULL) {
		scan->found = true;
		return 1;
	}
	return 0;
}

struct path_escape {
	__u32 length;
	__u32 written;
};

static long escape_char(__u32 index, struct path_escape *e)
{
	struct scratch *s = scratch();
	__u32 out = e->written;
	char c;

	if (!s || index >= e->length || out > sizeof(s->escaped) - 4)
		return 1;
	c = s->path[index & (PATH_SIZE - 1)];
	if (c != '\n') {
		s->escaped[out] = c;
		e->written = out + 1;
		return 0;
	}
	s->escaped[out] = '\\';
	s->escaped[out + 1] = '0';
	s->escaped[out + 2] = '1';
	s->escaped[out + 3] = '2';
	e->written = out + 4;
	return 0;
}

/* f_flags as fdinfo shows them: with O_CLOEXEC when the fd is close-on-exec. */
static __always_inline unsigned int fdinfo_flags(struct task_struct *task, struct file *file,
						 unsigned int fd)
{
	unsigned long *close_on_exec = BPF_CORE_READ(task, files, fdt, close_on_exec);
	unsigned long word = 0;
	unsigned int flags = file->f_flags;

	if (close_on_exec)
		bpf_probe_read_kernel(&word, sizeof(word), close_on_exec + fd / BITS_PER_LONG);
	if (word & (1UL << (fd % BITS_PER_LONG)))
		flags |= O_CLOEXEC;
	return flags;
}

/*
 * fdinfo's "0%o", right-aligned in FLAGS_WIDTH columns and followed by a space.
 * bpf_seq_printf() has no %o, so the digits are made here.
 */
static __always_inline void show_flags(struct seq_file *seq, unsigned int flags)
{
	union {
		char c[16];
		__u64 words[2];
	} text = { .words = { 0x2020202020202020ULL, 0x2020202020202020ULL } };
	int at = FLAGS_WIDTH;

	for (int i = 0; i < 11 && at > 1; i++) {
		text.c[--at] = '0' + (flags & 7);
		flags >>= 3;
		if (!flags)
			break;
	}
	text.c[--at & 15] = '0';
	bpf_seq_write(seq, text.c, FLAGS_WIDTH + 1);
}

SEC("iter/task_file")
int task_file(struct bpf_iter__task_file *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct seq_file *seq = meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct session *session = session_get(meta);
	struct newline_scan scan = {};
	struct path_escape escape = {};
	struct scratch *s;
	long length;

	if (!session)
		return 0;
	if (session_wants_header(session, meta, file))
		BPF_SEQ_PRINTF(seq, "%8s %8s %8s %10s %10s %s\n",
			       "tgid", "pid", "fd", "flags", "pos", "path");
	if (!task || !file) {
		session_end(meta);
		return 0;
	}
	s = scratch();
	if (!s)
		return 0;

	BPF_SEQ_PRINTF(seq, "%8d %8d %8u ", task->tgid, task->pid, ctx->fd);
	show_flags(seq, fdinfo_flags(task, file, ctx->fd));
	BPF_SEQ_PRINTF(seq, "%10lld ", file->f_pos);
	length = bpf_d_path((struct path *)&file->f_path, s->path, sizeof(s->path));
	if (length <= 0) {
		BPF_SEQ_PRINTF(seq, "?\n");
		return 0;
	}
	scan.length = length - 1;	/* without the terminating NUL */
	bpf_loop(PATH_SIZE / 8, scan_word, &scan, 0);
	if (!scan.found) {
		bpf_seq_write(seq, s->path, scan.length & (PATH_SIZE - 1));
	} else {
		escape.length = scan.length;
		bpf_loop(PATH_SIZE, escape_char, &escape, 0);
		bpf_seq_write(seq, s->escaped, escape.written & (sizeof(s->escaped) - 1));
	}
	bpf_seq_write(seq, "\n", 1);
	return 0;
}
