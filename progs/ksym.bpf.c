// SPDX-License-Identifier: GPL-2.0
/*
 * ksym: /proc/kallsyms, byte for byte (kernel/kallsyms.c, s_show): the address
 * as %px prints it, the type letter, the name, and "\t[module]" for a symbol
 * that is not the core kernel's: a module's, a BPF program's or trampoline's
 * ([bpf]), an ftrace or kprobe trampoline's ([__builtin__ftrace],
 * [__builtin__kprobes]).
 *
 * /proc/kallsyms has a hundred thousand lines and more, and bpf_seq_printf()
 * parses its format on every call: a line is put together in per-thread scratch
 * instead and goes out in one bpf_seq_write().
 */
#include "iterfs.h"
#include "scratch.h"
#include "bytes.h"

char LICENSE[] SEC("license") = "GPL";

#define ADDRESS_DIGITS 16		/* %px of a 64-bit pointer */
#define LINE_AT 5			/* where a line starts in the scratch, */
#define NAME_AT (LINE_AT + ADDRESS_DIGITS + 3)	/* so that the name is aligned: 24 */
#define KSYM_NAME_SIZE 512			/* KSYM_NAME_LEN since 6.1 */
#define MODULE_NAME_SIZE 64		/* MODULE_NAME_LEN is 56 on 64-bit */
#define KSYM_LINE_SIZE 1024		/* room for the longest line, a power of two */

struct ksym_line {
	char text[KSYM_LINE_SIZE];
};

PER_THREAD_SCRATCH(struct ksym_line)

/* The kernel's toupper()/tolower() on a type letter, which is ASCII. */
static __always_inline char upper(char c)
{
	return c >= 'a' && c <= 'z' ? c - ('a' - 'A') : c;
}

static __always_inline char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/*
 * Copies the name to line[NAME_AT], eight bytes at a time straight from the
 * iterator (a word load each, where bpf_probe_read_kernel_str() is a helper
 * call copying a byte at a time), and returns where its NUL went.
 */
static __always_inline __u32 put_name(struct ksym_line *line, struct kallsym_iter *iter)
{
	const __u64 *words = (const __u64 *)iter->name;

#pragma unroll
	for (int i = 0; i < KSYM_NAME_SIZE / 8; i++) {
		__u64 word = words[i];

		*(__u64 *)&line->text[NAME_AT + 8 * i] = word;
		if (has_zero_byte(word)) {	/* a NUL in this word */
			__u32 at = NAME_AT + 8 * i;

			for (int j = 0; j < 7 && line->text[at]; j++)
				at++;
			return at;
		}
	}
	return 0;	/* no NUL: cannot be, kallsyms terminates every name */
}

SEC("iter/ksym")
int ksym(struct bpf_iter__ksym *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct kallsym_iter *iter = ctx->ksym;
	struct ksym_line *line;
	unsigned long value;
	long length;
	__u64 size;
	__u32 at;
	char type;

	/* Some debugging symbols have no name: s_show() skips them. */
	if (!iter || !iter->name[0])
		return 0;
	/*
	 * The final call, after the last symbol, gets the iterator's state too,
	 * never NULL (ksym_prog_seq_show): the last symbol's name and value,
	 * under a module name that the failed look-ups past the end left. The
	 * kernel's position has then moved one past the last symbol's seq_num,
	 * where for every symbol, shown once or again after a full buffer, the
	 * two are equal (one symbol per position, none skipped).
	 */
	if (meta->seq->index != meta->seq_num)
		return 0;
	line = scratch();
	if (!line)
		return 0;

	value = iter->show_value ? iter->value : 0;
	for (int i = 0; i < ADDRESS_DIGITS; i++) {
		__u32 digit = (value >> (4 * (ADDRESS_DIGITS - 1 - i))) & 0xf;

		line->text[LINE_AT + i] = digit < 10 ? '0' + digit : 'a' - 10 + digit;
	}
	/* Outside the core kernel: upper case if exported ("global"), else lower. */
	type = iter->type;
	if (iter->module_name[0])
		type = iter->exported ? upper(type) : lower(type);
	line->text[LINE_AT + ADDRESS_DIGITS] = ' ';
	line->text[LINE_AT + ADDRESS_DIGITS + 1] = type;
	line->text[LINE_AT + ADDRESS_DIGITS + 2] = ' ';

	at = put_name(line, iter);
	if (!at)
		return 0;
	if (iter->module_name[0]) {
		if (at > KSYM_LINE_SIZE - MODULE_NAME_SIZE - 4)
			return 0;	/* cannot be: a name is shorter than KSYM_NAME_SIZE */
		line->text[at++] = '\t';
		line->text[at++] = '[';
		length = bpf_probe_read_kernel_str(&line->text[at], MODULE_NAME_SIZE,
						   iter->module_name);
		if (length <= 1)
			return 0;
		at = (at + length - 1) & (KSYM_LINE_SIZE - 1);	/* over the NUL */
		line->text[at++ & (KSYM_LINE_SIZE - 1)] = ']';
	}
	line->text[at++ & (KSYM_LINE_SIZE - 1)] = '\n';
	size = (__u64)at - LINE_AT;
	if (size <= KSYM_LINE_SIZE - LINE_AT)
		bpf_seq_write(meta->seq, &line->text[LINE_AT], size);
	return 0;
}
