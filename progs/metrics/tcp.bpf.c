// SPDX-License-Identifier: GPL-2.0
/*
 * metrics/tcp.prom: TCP sockets of the reader's network namespace by family
 * and state, counted as /proc/net/tcp and /proc/net/tcp6 list them: an IPv4
 * connection on an AF_INET6 socket is tcp6's, a request socket SYN_RECV, a
 * time-wait socket its substate (TIME_WAIT or FIN_WAIT2). The kernel's tcp
 * iterator visits both families. 2 families x 11 states: 22 series, every
 * one printed, 0 included, so that none vanishes between scrapes.
 */
#include "metrics.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET		2
#define AF_INET6	10
#define STATES		(TCP_CLOSING + 1)	/* TCP_ESTABLISHED (1) to TCP_CLOSING (11) */
/* Room for any state below 16, the index masked, no bounds check: 6.1's
 * verifier does not carry a check over to the copy of the state that indexes
 * (and clang drops a mask after one). The slots of no state are not printed. */
#define STATE_MASK	15

struct counts {
	__u64 session_id;
	__u64 sockets[2][STATE_MASK + 1];	/* [tcp, tcp6][state] */
};

METRIC_WALKS_MAP(struct counts);

/* As node_exporter's tcpstat collector names them. */
static const char state_names[STATES][12] = {
	[TCP_ESTABLISHED] = "established",
	[TCP_SYN_SENT] = "syn_sent",
	[TCP_SYN_RECV] = "syn_recv",
	[TCP_FIN_WAIT1] = "fin_wait1",
	[TCP_FIN_WAIT2] = "fin_wait2",
	[TCP_TIME_WAIT] = "time_wait",
	[TCP_CLOSE] = "close",
	[TCP_CLOSE_WAIT] = "close_wait",
	[TCP_LAST_ACK] = "last_ack",
	[TCP_LISTEN] = "listen",
	[TCP_CLOSING] = "closing",
};
static const char family_names[2][5] = { "tcp", "tcp6" };

/* The final call: the walk's totals, then its counts go. */
static int print_totals(struct seq_file *seq, struct counts *walk)
{
	BPF_SEQ_PRINTF(seq, "# HELP iterfs_sockets Sockets of the reader's network namespace, "
		       "by the /proc/net file that lists them and state.\n"
		       "# TYPE iterfs_sockets gauge\n");
	for (int family = 0; family < 2; family++)
		for (int state = TCP_ESTABLISHED; state < STATES; state++)
			BPF_SEQ_PRINTF(seq, "iterfs_sockets{family=\"%s\",state=\"%s\"} %llu\n",
				       family_names[family], state_names[state],
				       walk->sockets[family][state]);
	metric_walk_end();
	return 0;
}

/* The state /proc prints in its `st` column. */
static __always_inline int proc_state(struct sock_common *skc)
{
	struct tcp_timewait_sock *tw;
	int state = skc->skc_state;

	if (state == TCP_NEW_SYN_RECV)
		return TCP_SYN_RECV;
	if (state == TCP_TIME_WAIT) {
		tw = bpf_skc_to_tcp_timewait_sock(skc);
		if (tw)
			return tw->tw_sk.tw_substate;
	}
	return state;
}

SEC("iter/tcp")
int tcp_metrics(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct counts *walk = metric_walk(ctx->meta, struct counts);
	int state;

	if (!walk)		/* at the final call too: nothing to print */
		return METRIC_NO_ROOM;
	if (!skc)
		return print_totals(ctx->meta->seq, walk);
	state = proc_state(skc);
	walk->sockets[skc->skc_family == AF_INET6][state & STATE_MASK]++;
	return 0;
}
