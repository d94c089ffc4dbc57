// SPDX-License-Identifier: GPL-2.0
/* tcp: /proc/net/tcp, line for line (net/ipv4/tcp_ipv4.c, tcp4_seq_show). */
#include "tcp.h"
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

/* tcp4_seq_show pads every line, the header too, to TMPSZ - 1 before its newline. */
#define TMPSZ		150

static const char spaces[TMPSZ - 1] = { [0 ... TMPSZ - 2] = ' ' };

/* seq_pad(seq, '\n') after seq_setwidth(seq, TMPSZ - 1) at line_start. */
static __always_inline void seq_pad(struct seq_file *seq, size_t line_start)
{
	size_t width = seq->count - line_start;

	/* Past the width (or past the buffer, to be shown again) nothing is padded. */
	if (width < TMPSZ - 1)
		bpf_seq_write(seq, spaces, TMPSZ - 1 - width);
	bpf_seq_write(seq, "\n", 1);
}

static void show_address(struct seq_file *seq, __be32 addr, __u16 port)
{
	BPF_SEQ_PRINTF(seq, "%08X:%04X ", addr, port);
}

static void show_socket(struct seq_file *seq, struct tcp_sock *tp, __u32 sl, uid_t uid)
{
	struct inet_sock *inet = &tp->inet_conn.icsk_inet;
	struct sock_common *skc = &inet->sk.__sk_common;

	BPF_SEQ_PRINTF(seq, "%4d: ", sl);
	show_address(seq, skc->skc_rcv_saddr, bpf_ntohs(inet->inet_sport));
	show_address(seq, skc->skc_daddr, bpf_ntohs(skc->skc_dport));
	tcp_show_sock_fields(seq, tp, uid);
}

static void show_timewait(struct seq_file *seq, struct tcp_timewait_sock *ttw, __u32 sl)
{
	struct inet_timewait_sock *tw = &ttw->tw_sk;

	BPF_SEQ_PRINTF(seq, "%4d: ", sl);
	show_address(seq, tw->__tw_common.skc_rcv_saddr, bpf_ntohs(tw->tw_sport));
	show_address(seq, tw->__tw_common.skc_daddr, bpf_ntohs(tw->__tw_common.skc_dport));
	tcp_show_timewait_fields(seq, tw);
}

static void show_request(struct seq_file *seq, struct tcp_request_sock *treq, __u32 sl,
			 uid_t uid)
{
	struct request_sock *req = &treq->req.req;

	BPF_SEQ_PRINTF(seq, "%4d: ", sl);
	show_address(seq, req->__req_common.skc_rcv_saddr, req->__req_common.skc_num);
	show_address(seq, req->__req_common.skc_daddr, bpf_ntohs(req->__req_common.skc_dport));
	tcp_show_openreq_fields(seq, req, uid);
}

SEC("iter/tcp")
int tcp(struct bpf_iter__tcp *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct sock_common *skc = ctx->sk_common;
	struct seq_file *seq = meta->seq;
	struct session *session = session_get(meta);
	struct tcp_timewait_sock *tw;
	struct tcp_request_sock *req;
	struct tcp_sock *tp;
	size_t line_start;

	if (!session)
		return 0;
	if (session_wants_header(session, meta, skc)) {
		line_start = seq->count;
		BPF_SEQ_PRINTF(seq, "  sl  local_address rem_address   st tx_queue "
			       "rx_queue tr tm->when retrnsmt   uid  timeout inode");
		seq_pad(seq, line_start);
	}
	if (!skc) {
		session_end(meta);
		return 0;
	}
	/* IPv4-mapped connections on AF_INET6 sockets belong to tcp6. */
	if (skc->skc_family != AF_INET)
		return 0;

	line_start = seq->count;
	if (skc->skc_state == TCP_TIME_WAIT) {
		tw = bpf_skc_to_tcp_timewait_sock(skc);
		if (!tw)
			return 0;
		show_timewait(seq, tw, session_number(session, meta->seq_num));
	} else if (skc->skc_state == TCP_NEW_SYN_RECV) {
		req = bpf_skc_to_tcp_request_sock(skc);
		if (!req)
			return 0;
		show_request(seq, req, session_number(session, meta->seq_num), from_kuid_munged(session->opened.user_ns, ctx->uid));
	} else {
		tp = bpf_skc_to_tcp_sock(skc);
		if (!tp)
			return 0;
		show_socket(seq, tp, session_number(session, meta->seq_num), from_kuid_munged(session->opened.user_ns, ctx->uid));
	}
	seq_pad(seq, line_start);
	return 0;
}
