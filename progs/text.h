/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Lines written without bpf_seq_printf(), which parses its format on every call
 * and costs more than the rest of a line together (and has no %o): numbers are
 * put into a line in per-thread scratch, which goes out in one bpf_seq_write().
 */
#ifndef ITERFS_TEXT_H
#define ITERFS_TEXT_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/* Room for every number of a line at its widest. */
#define LINE_SIZE 256

struct line {
	char text[LINE_SIZE];
};

static __always_inline void line_clear(struct line *line)
{
	__builtin_memset(line->text, ' ', LINE_SIZE);
}

/* How put_number() writes: five arguments are all a BPF function may take. */
#define NUMBER(width, base, lead) ((width) | (base) << 8 | (lead) << 16)

/*
 * Puts `value` in `base` (8 or 10) at line[at], right-aligned in `width`
 * columns (more if it needs more), after `lead` if not NUL ('0' for fdinfo's
 * octal, '-'), then a space; returns where the line goes on. The line was
 * filled with spaces first (line_clear).
 */
__noinline __u32 put_number(struct line *line, __u32 at, __u64 value, __u32 style)
{
	__u32 width = style & 0xff, base = (style >> 8) & 0xff, lead = style >> 16;
	__u32 digits = 1, end, i;
	__u64 power = 10, rest;

	/* A function of its own, verified once: inlined, its loops multiply. */
	if (!line)
		return at;
	/* Count the digits first, so that they go straight to their columns. */
	if (base == 8) {
		for (rest = value >> 3; rest && digits < 22; rest >>= 3)
			digits++;
	} else {
		for (; digits < 20 && value >= power; power *= 10)
			digits++;
	}
	if (lead)
		digits++;
	end = at + (digits < width ? width : digits);
	at = end;
	for (i = 0; i < 22; i++) {
		__u64 quotient;

		if (base == 8)
			quotient = value >> 3;
		else if (value >> 32)
			quotient = value / 10;
		else	/* x / 10 == x * 0xcccccccd >> 35 for every 32-bit x: no divide */
			quotient = value * 0xcccccccdULL >> 35;
		line->text[--at & (LINE_SIZE - 1)] = '0' + (value - quotient * base);
		value = quotient;
		if (!value)
			break;
	}
	if (lead)
		line->text[--at & (LINE_SIZE - 1)] = lead;
	line->text[end & (LINE_SIZE - 1)] = ' ';
	return end + 1;
}

/* A signed decimal, right-aligned in `width` columns, then a space. */
static __always_inline __u32 put_signed(struct line *line, __u32 at, long long value,
					__u32 width)
{
	return put_number(line, at, value < 0 ? -value : value,
			  NUMBER(width, 10, value < 0 ? '-' : 0));
}

/* A character right-aligned in `width` columns, then a space. */
static __always_inline __u32 put_char(struct line *line, __u32 at, char c, __u32 width)
{
	at += width - 1;
	line->text[at++ & (LINE_SIZE - 1)] = c;
	return at + 1;
}

#endif /* ITERFS_TEXT_H */
