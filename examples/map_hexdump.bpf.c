// SPDX-License-Identifier: GPL-2.0
/*
 * map_hexdump: the entries of any hash or array map, in hex, one per line.
 * A map target: map_hexdump/ lists the maps it can walk, and
 * map_hexdump/<map id> dumps that map.
 *
 *	key 01000000 value 2a00000000000000
 *
 * Keys and values are copied out with bpf_probe_read_kernel(), never read
 * directly: the kernel refuses to attach a program to a map whose keys or
 * values are smaller than what the program reads of them, and this one must
 * fit every map. The first 64 bytes of each are shown, then "..." if there is
 * more. A per-CPU map shows the first CPU's value.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define SHOWN 64

struct line {
	char key[SHOWN];
	char value[SHOWN];
	char text[512];		/* "key " + 2 * SHOWN + "..." + " value " + 2 * SHOWN + "...\n" */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct line);
} lines SEC(".maps");

static __always_inline char hex_digit(__u8 value)
{
	return value < 10 ? '0' + value : 'a' + value - 10;
}

/* bytes[0..size) in hex at text[at], then "..." if cut; where the text goes on. */
static __u32 put_hex(char *text, __u32 at, const char *bytes, __u32 size)
{
	__u32 shown = size < SHOWN ? size : SHOWN;

	for (__u32 i = 0; i < SHOWN && i < shown; i++) {
		text[(at + 2 * i) & 511] = hex_digit((__u8)bytes[i] >> 4);
		text[(at + 2 * i + 1) & 511] = hex_digit(bytes[i] & 0xf);
	}
	at += 2 * shown;
	if (size > SHOWN) {
		text[at++ & 511] = '.';
		text[at++ & 511] = '.';
		text[at++ & 511] = '.';
	}
	return at;
}

SEC("iter/bpf_map_elem")
int map_hexdump(struct bpf_iter__bpf_map_elem *ctx)
{
	struct bpf_map *map = ctx->map;
	struct line *line;
	__u32 zero = 0, at = 0, key_size, value_size;

	if (!ctx->key || !ctx->value)
		return 0;
	line = bpf_map_lookup_elem(&lines, &zero);
	if (!line)
		return 0;
	key_size = map->key_size;
	value_size = map->value_size;
	bpf_probe_read_kernel(line->key, key_size < SHOWN ? key_size : SHOWN, ctx->key);
	bpf_probe_read_kernel(line->value, value_size < SHOWN ? value_size : SHOWN, ctx->value);
	__builtin_memcpy(line->text, "key ", 4);
	at = put_hex(line->text, 4, line->key, key_size);
	__builtin_memcpy(&line->text[at & 511], " value ", 7);
	at = put_hex(line->text, at + 7, line->value, value_size);
	line->text[at++ & 511] = '\n';
	bpf_seq_write(ctx->meta->seq, line->text, at & 511);
	return 0;
}
