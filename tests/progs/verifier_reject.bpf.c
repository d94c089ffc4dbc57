// SPDX-License-Identifier: GPL-2.0
/* Rejected by the verifier on purpose: ctx->task may be NULL and is not checked. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("iter/task")
int verifier_reject(struct bpf_iter__task *ctx)
{
	BPF_SEQ_PRINTF(ctx->meta->seq, "%d\n", ctx->task->pid);
	return 0;
}
