// SPDX-License-Identifier: GPL-2.0
/*
 * A view whose single read() lasts seconds: it burns time on every kernel symbol
 * and writes a line only every 20,000 symbols, so one read() of 128 KiB covers
 * the whole walk.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define SPINS_PER_SYMBOL 2000

static long spin(__u32 index, void *ctx)
{
	return 0;
}

SEC("iter/ksym")
int slow(struct bpf_iter__ksym *ctx)
{
	if (!ctx->ksym)
		return 0;
	bpf_loop(SPINS_PER_SYMBOL, spin, NULL, 0);
	if (ctx->meta->seq_num % 20000 == 0)
		BPF_SEQ_PRINTF(ctx->meta->seq, "symbol %llu\n", ctx->meta->seq_num);
	return 0;
}
