/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Paths as /proc/<pid>/maps writes them, seq_file_path(m, path, "\n"): a '\n'
 * as \012, so that every line of a view is one object. A view includes this
 * after PER_THREAD_SCRATCH() of a struct scratch that has
 *	char path[PATH_SIZE];
 *	char escaped[PATH_SIZE * 4];
 */
#ifndef ITERFS_PATHS_H
#define ITERFS_PATHS_H

/* Whether the path's first `length` bytes hold a '\n', eight bytes at a time. */
__noinline int has_newline(struct scratch *s, __u32 length)
{
	if (!s)
		return 0;
	for (__u32 offset = 0; offset < PATH_SIZE && offset < length; offset += 8) {
		__u64 word = *(__u64 *)&s->path[offset & (PATH_SIZE - 8)] ^ 0x0a0a0a0a0a0a0a0aULL;

		if (length - offset < 8)	/* bytes past the end never match */
			word |= ~0ULL << ((length - offset) * 8);
		if ((word - 0x0101010101010101ULL) & ~word & 0x8080808080808080ULL)
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

/* The first `length` bytes of s->path into s->escaped; how many bytes that made. */
static __always_inline __u32 escape_path(__u32 length)
{
	struct path_escape escape = { .length = length };

	bpf_loop(PATH_SIZE, escape_char, &escape, 0);
	return escape.written;
}

#endif /* ITERFS_PATHS_H */
