/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Paths as /proc/<pid>/maps writes them, seq_file_path(m, path, "\n"): a '\n'
 * as \012, so that every line of a view is one object. The view keeps a struct
 * path_buffer (too large for the stack: in its per-thread scratch, scratch.h)
 * and gives it to these helpers.
 */
#ifndef ITERFS_PATHS_H
#define ITERFS_PATHS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "bytes.h"

#define PATH_SIZE 4096		/* PATH_MAX */

/* A path, and room for it escaped: every byte may become four. */
struct path_buffer {
	char text[PATH_SIZE];
	char escaped[PATH_SIZE * 4];
};

/* Whether the path's first `length` bytes hold a '\n', eight bytes at a time. */
__noinline int has_newline(struct path_buffer *path, __u32 length)
{
	if (!path)
		return 0;
	for (__u32 offset = 0; offset < PATH_SIZE && offset < length; offset += 8)
		if (word_has_byte(*(__u64 *)&path->text[offset & (PATH_SIZE - 8)],
				  length - offset, '\n'))
			return 1;
	return 0;
}

struct path_escape {
	struct path_buffer *path;
	__u32 length;
	__u32 written;
};

/* One byte of the path as mangle_path(..., "\n") writes it. */
static long mangle_path_char(__u32 index, struct path_escape *e)
{
	struct path_buffer *path = e->path;
	__u32 out = e->written;
	char c;

	if (!path || index >= e->length || out > sizeof(path->escaped) - 4)
		return 1;
	c = path->text[index & (PATH_SIZE - 1)];
	if (c != '\n') {
		path->escaped[out] = c;
		e->written = out + 1;
		return 0;
	}
	path->escaped[out] = '\\';
	path->escaped[out + 1] = '0';
	path->escaped[out + 2] = '1';
	path->escaped[out + 3] = '2';
	e->written = out + 4;
	return 0;
}

/* The path's first `length` bytes into path->escaped; how many bytes that made. */
static __always_inline __u32 escape_path(struct path_buffer *path, __u32 length)
{
	struct path_escape escape = { .path = path, .length = length };

	bpf_loop(PATH_SIZE, mangle_path_char, &escape, 0);
	return escape.written;
}

#endif /* ITERFS_PATHS_H */
