// SPDX-License-Identifier: GPL-2.0
/*
 * metrics/udp.prom: UDP sockets of the reader's network namespace by family
 * and state, counted as /proc/net/udp and /proc/net/udp6 list them (an IPv4
 * connection on an AF_INET6 socket is udp6's). A UDP socket is connected
 * (established) or not (close), the two states /proc shows: 2 families x 2
 * states, 4 series, every one printed, 0 included.
 */
#include "metrics.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET6	10

struct counts {
	__u64 session_id;
	__u64 established[2];			/* [udp, udp6] */
	__u64 close[2];
};

METRIC_WALKS_MAP(struct counts);

/* The final call: the walk's totals, then its counts go. */
static int print_totals(struct seq_file *seq, struct counts *walk)
{
	BPF_SEQ_PRINTF(seq, "# HELP iterfs_sockets Sockets of the reader's network namespace, "
		       "by the /proc/net file that lists them and state.\n"
		       "# TYPE iterfs_sockets gauge\n");
	BPF_SEQ_PRINTF(seq, "iterfs_sockets{family=\"udp\",state=\"established\"} %llu\n"
		       "iterfs_sockets{family=\"udp\",state=\"close\"} %llu\n",
		       walk->established[0], walk->close[0]);
	BPF_SEQ_PRINTF(seq, "iterfs_sockets{family=\"udp6\",state=\"established\"} %llu\n"
		       "iterfs_sockets{family=\"udp6\",state=\"close\"} %llu\n",
		       walk->established[1], walk->close[1]);
	metric_walk_end();
	return 0;
}

SEC("iter/udp")
int udp_metrics(struct bpf_iter__udp *ctx)
{
	struct udp_sock *udp_sk = ctx->udp_sk;
	struct counts *walk = metric_walk(ctx->meta, struct counts);
	struct sock_common *skc;
	int family;

	if (!walk)		/* at the final call too: nothing to print */
		return METRIC_NO_ROOM;
	if (!udp_sk)
		return print_totals(ctx->meta->seq, walk);
	skc = &udp_sk->inet.sk.__sk_common;
	family = skc->skc_family == AF_INET6;
	if (skc->skc_state == TCP_ESTABLISHED)
		walk->established[family]++;
	else
		walk->close[family]++;
	return 0;
}
