// SPDX-License-Identifier: GPL-2.0
/* tcp6: /proc/net/tcp6, line for line (net/ipv6/tcp_ipv6.c, tcp6_seq_show). */
#include "tcp.h"
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

static void show_address(struct seq_file *seq, const struct in6_addr *addr, __u16 port)
{
	BPF_SEQ_PRINTF(seq, "%08X%08X%08X%08X:%04X ",
		       addr->in6_u.u6_addr32[0], addr->in6_u.u6_addr32[1],
		       addr->in6_u.u6_addr32[2], addr->in6_u.u6_addr32[3], port);
}

static void show_socket(struct seq_file *seq, struct tcp6_sock *tp6, __u32 sl, uid_t uid)
{
	struct tcp_sock *tp = &tp6->tcp;
	struct inet_sock *inet = &tp->inet_conn.icsk_inet;
	struct sock *sk = &inet->sk;

	BPF_SEQ_PRINTF(seq, "%4d: ", sl);
	show_address(seq, &sk->__sk_common.skc_v6_rcv_saddr, bpf_ntohs(inet->inet_sport));
	show_address(seq, &sk->__sk_common.skc_v6_daddr, bpf_ntohs(sk->__sk_common.skc_dport));
	tcp_show_sock_fields(seq, tp, uid);
	bpf_seq_write(seq, "\n", 1);
}

static void show_timewait(struct seq_file *seq, struct tcp_timewait_sock *ttw, __u32 sl)
{
	struct inet_timewait_sock *tw = &ttw->tw_sk;

	BPF_SEQ_PRINTF(seq, "%4d: ", sl);
	show_address(seq, &tw->__tw_common.skc_v6_rcv_saddr, bpf_ntohs(tw->tw_sport));
	show_address(seq, &tw->__tw_common.skc_v6_daddr, bpf_ntohs(tw->__tw_common.skc_dport));
	tcp_show_timewait_fields(seq, tw);
	bpf_seq_write(seq, "\n", 1);
}

static void show_request(struct seq_file *seq, struct tcp_request_sock *treq, __u32 sl,
			 uid_t uid)
{
	struct request_sock *req = &treq->req.req;

	BPF_SEQ_PRINTF(seq, "%4d: ", sl);
	show_address(seq, &req->__req_common.skc_v6_rcv_saddr, req->__req_common.skc_num);
	show_address(seq, &req->__req_common.skc_v6_daddr,
		     bpf_ntohs(req->__req_common.skc_dport));
	tcp_show_openreq_fields(seq, req, uid);
	bpf_seq_write(seq, "\n", 1);
}

SEC("iter/tcp")
int tcp6(struct bpf_iter__tcp *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct sock_common *skc = ctx->sk_common;
	struct seq_file *seq = meta->seq;
	struct session *session = session_get(meta);
	struct tcp_timewait_sock *tw;
	struct tcp_request_sock *req;
	struct tcp6_sock *tp6;

	if (!session)
		return 0;
	if (session_wants_header(session, meta, skc))
		BPF_SEQ_PRINTF(seq, "  sl  local_address                         "
			       "remote_address                        "
			       "st tx_queue rx_queue tr tm->when retrnsmt"
			       "   uid  timeout inode\n");
	if (!skc) {
		session_end(meta);
		return 0;
	}
	if (skc->skc_family != AF_INET6)
		return 0;

	if (skc->skc_state == TCP_TIME_WAIT) {
		tw = bpf_skc_to_tcp_timewait_sock(skc);
		if (tw)
			show_timewait(seq, tw, session_number(session, meta->seq_num));
	} else if (skc->skc_state == TCP_NEW_SYN_RECV) {
		req = bpf_skc_to_tcp_request_sock(skc);
		if (req)
			show_request(seq, req, session_number(session, meta->seq_num), from_kuid_munged(session->opened.user_ns, ctx->uid));
	} else {
		tp6 = bpf_skc_to_tcp6_sock(skc);
		if (tp6)
			show_socket(seq, tp6, session_number(session, meta->seq_num), from_kuid_munged(session->opened.user_ns, ctx->uid));
	}
	return 0;
}
