/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Text scanned eight bytes at a time, a word load each, where a loop over the
 * bytes would cost a branch each: the views' one byte scanner.
 */
#ifndef ITERFS_BYTES_H
#define ITERFS_BYTES_H

#include "vmlinux.h"

#define BYTE_ONES	0x0101010101010101ULL
#define BYTE_HIGHS	0x8080808080808080ULL

/* `byte` in each byte of a word: XORed with one, its bytes equal to `byte` become 0. */
#define EVERY_BYTE(byte) (BYTE_ONES * (__u8)(byte))

/* Whether a byte of `word` is 0: Hacker's Delight, 6-1. */
static __always_inline bool has_zero_byte(__u64 word)
{
	return (word - BYTE_ONES) & ~word & BYTE_HIGHS;
}

/* What to OR into a word of which only the first `valid` bytes count: the others never 0. */
static __always_inline __u64 past_end_bytes(__u32 valid)
{
	return valid < 8 ? ~0ULL << (valid * 8) : 0;
}

/* Whether one of the first `valid` bytes of `word` (all eight from 8 on) is `byte`. */
static __always_inline bool word_has_byte(__u64 word, __u32 valid, __u8 byte)
{
	return has_zero_byte((word ^ EVERY_BYTE(byte)) | past_end_bytes(valid));
}

#endif /* ITERFS_BYTES_H */
