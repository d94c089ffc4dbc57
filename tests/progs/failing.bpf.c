// SPDX-License-Identifier: GPL-2.0
/*
 * failing: a view whose reads fail. An iterator program that returns 1 makes
 * the kernel's show() fail with EAGAIN, so read(2) of it fails: what the
 * daemon does with a read error (one log line, the errno for the reader) is
 * tested with it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("iter/bpf_map")
int failing(struct bpf_iter__bpf_map *ctx)
{
	return ctx->map ? 1 : 0;
}
