// SPDX-License-Identifier: GPL-2.0
/*
 * metrics/unix.prom: Unix sockets of the reader's network namespace by state,
 * counted as /proc/net/unix lists them, in the kernel's words for a Unix
 * socket's state (what ss shows): listening, connected (established: a
 * connection, a socketpair, a datagram socket connected to a peer), or
 * neither (close). 3 series, every one printed, 0 included.
 */
#include "metrics.h"

char LICENSE[] SEC("license") = "GPL";

struct counts {
	__u64 session_id;
	__u64 listen;
	__u64 established;
	__u64 close;
};

METRIC_WALKS_MAP(struct counts);

/* The final call: the walk's totals, then its counts go. */
static int print_totals(struct seq_file *seq, struct counts *walk)
{
	BPF_SEQ_PRINTF(seq, "# HELP iterfs_sockets Sockets of the reader's network namespace, "
		       "by the /proc/net file that lists them and state.\n"
		       "# TYPE iterfs_sockets gauge\n");
	BPF_SEQ_PRINTF(seq, "iterfs_sockets{family=\"unix\",state=\"established\"} %llu\n"
		       "iterfs_sockets{family=\"unix\",state=\"close\"} %llu\n"
		       "iterfs_sockets{family=\"unix\",state=\"listen\"} %llu\n",
		       walk->established, walk->close, walk->listen);
	metric_walk_end();
	return 0;
}

SEC("iter/unix")
int unix_metrics(struct bpf_iter__unix *ctx)
{
	struct unix_sock *unix_sk = ctx->unix_sk;
	struct counts *walk = metric_walk(ctx->meta, struct counts);
	int state;

	if (!walk)		/* at the final call too: nothing to print */
		return METRIC_NO_ROOM;
	if (!unix_sk)
		return print_totals(ctx->meta->seq, walk);
	state = unix_sk->sk.__sk_common.skc_state;
	if (state == TCP_LISTEN)
		walk->listen++;
	else if (state == TCP_ESTABLISHED)
		walk->established++;
	else
		walk->close++;
	return 0;
}
