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

/* --- host-testable: tests/test_text.py compiles from here to the end marker --- */

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

/* 10^n for n < 20, then values no 64-bit number reaches: a width of 20 or more
 * always fits. 32 entries, so that an index masked with 31 stays inside. */
static const __u64 powers_of_ten[32] = {
	1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
	100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL,
	1000000000000ULL, 10000000000000ULL, 100000000000000ULL,
	1000000000000000ULL, 10000000000000000ULL, 100000000000000000ULL,
	1000000000000000000ULL, 10000000000000000000ULL,
	~0ULL, ~0ULL, ~0ULL, ~0ULL, ~0ULL, ~0ULL, ~0ULL, ~0ULL, ~0ULL, ~0ULL, ~0ULL, ~0ULL,
};

/* "00" to "99": two digits a step. 256 bytes, so that an index masked with 255
 * stays inside. */
static const char digit_pairs[256] =
	"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
	"8081828384858687888990919293949596979899";

/*
 * Puts `value` in `base` (8 or 10) at line[at], right-aligned in `width`
 * columns (more if it needs more), after `lead` if not NUL ('0' for fdinfo's
 * octal, '-'), then a space; returns where the line goes on. The line was
 * filled with spaces first (line_clear).
 */
__noinline __u32 put_number(struct line *line, __u32 at, __u64 value, __u32 style)
{
	__u32 width = style & 0xff, base = (style >> 8) & 0xff, lead = style >> 16;
	__u32 digits = 1, end, i, pair;
	__u64 power = 10, rest, quotient;

	/* A function of its own, verified once: inlined, its loops multiply. */
	if (!line)
		return at;
	if (base == 8) {
		/* As decimal below: columns known where it fits, two digits a step. */
		if (width > (lead ? 1 : 0) && width - (lead ? 1 : 0) < 21 &&
		    !(value >> (3 * (width - (lead ? 1 : 0))))) {
			end = at + width;
		} else {
			for (rest = value >> 3; rest && digits < 22; rest >>= 3)
				digits++;
			if (lead)
				digits++;
			end = at + (digits < width ? width : digits);
		}
		at = end;
		for (i = 0; i < 11 && value >= 64; i++) {
			line->text[--at & (LINE_SIZE - 1)] = '0' + (value & 7);
			line->text[--at & (LINE_SIZE - 1)] = '0' + (value >> 3 & 7);
			value >>= 6;
		}
		if (value >= 8)
			line->text[--at & (LINE_SIZE - 1)] = '0' + (value & 7);
		line->text[--at & (LINE_SIZE - 1)] = '0' + (value >= 8 ? value >> 3 : value);
		if (lead)
			line->text[--at & (LINE_SIZE - 1)] = lead;
		line->text[end & (LINE_SIZE - 1)] = ' ';
		return end + 1;
	}
	/*
	 * Decimal. Where the number fits its columns (nearly always), where it
	 * ends is known without counting its digits.
	 */
	if (width > (lead ? 1 : 0) && value < powers_of_ten[(width - (lead ? 1 : 0)) & 31]) {
		end = at + width;
	} else {
		for (; digits < 20 && value >= power; power *= 10)
			digits++;
		if (lead)
			digits++;
		end = at + (digits < width ? width : digits);
	}
	at = end;
	for (i = 0; i < 10 && value >= 100; i++) {
		if (value >> 32)
			quotient = value / 100;
		else	/* x / 100 == x * 0x51eb851f >> 37 for every 32-bit x: no divide */
			quotient = value * 0x51eb851fULL >> 37;
		pair = (value - quotient * 100) * 2;
		line->text[--at & (LINE_SIZE - 1)] = digit_pairs[(pair + 1) & 255];
		line->text[--at & (LINE_SIZE - 1)] = digit_pairs[pair & 255];
		value = quotient;
	}
	if (value >= 10) {
		pair = value * 2;
		line->text[--at & (LINE_SIZE - 1)] = digit_pairs[(pair + 1) & 255];
		line->text[--at & (LINE_SIZE - 1)] = digit_pairs[pair & 255];
	} else {
		line->text[--at & (LINE_SIZE - 1)] = '0' + value;
	}
	if (lead)
		line->text[--at & (LINE_SIZE - 1)] = lead;
	line->text[end & (LINE_SIZE - 1)] = ' ';
	return end + 1;
}

/* --- end of host-testable --- */

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
