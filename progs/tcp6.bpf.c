// SPDX-License-Identifier: GPL-2.0
/* tcp6: /proc/net/tcp6, line for line (net/ipv6/tcp_ipv6.c, tcp6_seq_show). */
#include "iterfs.h"
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET6		10
#define ICSK_TIME_RETRANS	1
#define ICSK_TIME_PROBE0	3
#define ICSK_TIME_LOSS_PROBE	5
#define ICSK_TIME_REO_TIMEOUT	6
#define TCP_INFINITE_SSTHRESH	0x7fffffff
#define TCP_PINGPONG_THRESH	1
/* The iterator holds a reference on each socket while showing it; /proc does not. */
#define ITERATOR_REF		1

/* Kernels before 6.14 kept the retransmit deadline in its own field. */
struct inet_connection_sock___icsk_timeout {
	unsigned long icsk_timeout;
} __attribute__((preserve_access_index));

/* Kernels before 6.18 had no sk_ino and reached the inode through the socket. */
struct sock___sk_ino {
	unsigned long sk_ino;
} __attribute__((preserve_access_index));

static __always_inline unsigned long retransmit_deadline(struct inet_connection_sock *icsk)
{
	struct inet_connection_sock___icsk_timeout *old = (void *)icsk;

	if (bpf_core_field_exists(old->icsk_timeout))
		return BPF_CORE_READ(old, icsk_timeout);
	return icsk->icsk_retransmit_timer.expires;
}

static __always_inline unsigned long socket_inode(struct sock *sk)
{
	struct sock___sk_ino *with_ino = (void *)sk;

	if (bpf_core_field_exists(with_ino->sk_ino))
		return BPF_CORE_READ(with_ino, sk_ino);
	return BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
}

static __always_inline bool timer_pending(const struct timer_list *timer)
{
	return timer->entry.pprev != NULL;
}

static void show_address(struct seq_file *seq, const struct in6_addr *addr, __u16 port)
{
	BPF_SEQ_PRINTF(seq, "%08X%08X%08X%08X:%04X ",
		       addr->in6_u.u6_addr32[0], addr->in6_u.u6_addr32[1],
		       addr->in6_u.u6_addr32[2], addr->in6_u.u6_addr32[3], port);
}

static void show_socket(struct seq_file *seq, struct tcp6_sock *tp6, __u32 sl, uid_t uid)
{
	struct tcp_sock *tp = &tp6->tcp;
	struct inet_connection_sock *icsk = &tp->inet_conn;
	struct inet_sock *inet = &icsk->icsk_inet;
	struct sock *sk = &inet->sk;
	unsigned long timer_expires;
	__u64 now = bpf_jiffies64();
	int timer_active, rx_queue, state;
	__u8 pending = icsk->icsk_pending;

	if (pending == ICSK_TIME_RETRANS || pending == ICSK_TIME_REO_TIMEOUT ||
	    pending == ICSK_TIME_LOSS_PROBE) {
		timer_active = 1;
		timer_expires = retransmit_deadline(icsk);
	} else if (pending == ICSK_TIME_PROBE0) {
		timer_active = 4;
		timer_expires = retransmit_deadline(icsk);
	} else if (timer_pending(&sk->sk_timer)) {
		timer_active = 2;
		timer_expires = sk->sk_timer.expires;
	} else {
		timer_active = 0;
		timer_expires = now;
	}

	state = sk->__sk_common.skc_state;
	if (state == TCP_LISTEN) {
		rx_queue = sk->sk_ack_backlog;
	} else {
		rx_queue = tp->rcv_nxt - tp->copied_seq;
		if (rx_queue < 0)
			rx_queue = 0;
	}

	BPF_SEQ_PRINTF(seq, "%4d: ", sl);
	show_address(seq, &sk->__sk_common.skc_v6_rcv_saddr, bpf_ntohs(inet->inet_sport));
	show_address(seq, &sk->__sk_common.skc_v6_daddr, bpf_ntohs(sk->__sk_common.skc_dport));
	BPF_SEQ_PRINTF(seq, "%02X %08X:%08X %02X:%08lX %08X %5u %8d %lu %d ",
		       state, tp->write_seq - tp->snd_una, rx_queue, timer_active,
		       jiffies_delta_to_clock_t(timer_expires - now),
		       icsk->icsk_retransmits, uid, icsk->icsk_probes_out,
		       socket_inode(sk), sk->__sk_common.skc_refcnt.refs.counter - ITERATOR_REF);
	BPF_SEQ_PRINTF(seq, "%pK %lu %lu %u %u %d\n",
		       tp6,
		       jiffies_to_clock_t(icsk->icsk_rto),
		       jiffies_to_clock_t(BPF_CORE_READ_BITFIELD_PROBED(icsk, icsk_ack.ato)),
		       (icsk->icsk_ack.quick << 1) |
				(icsk->icsk_ack.pingpong >= TCP_PINGPONG_THRESH),
		       tp->snd_cwnd,
		       state == TCP_LISTEN ? icsk->icsk_accept_queue.fastopenq.max_qlen :
		       (tp->snd_ssthresh >= TCP_INFINITE_SSTHRESH ? -1 : tp->snd_ssthresh));
}

static void show_timewait(struct seq_file *seq, struct tcp_timewait_sock *ttw, __u32 sl)
{
	struct inet_timewait_sock *tw = &ttw->tw_sk;
	long delta = tw->tw_timer.expires - bpf_jiffies64();

	BPF_SEQ_PRINTF(seq, "%4d: ", sl);
	show_address(seq, &tw->__tw_common.skc_v6_rcv_saddr, bpf_ntohs(tw->tw_sport));
	show_address(seq, &tw->__tw_common.skc_v6_daddr, bpf_ntohs(tw->__tw_common.skc_dport));
	BPF_SEQ_PRINTF(seq, "%02X %08X:%08X %02X:%08lX %08X %5d %8d %d %d %pK\n",
		       tw->tw_substate, 0, 0, 3, jiffies_delta_to_clock_t(delta),
		       0, 0, 0, 0, tw->__tw_common.skc_refcnt.refs.counter - ITERATOR_REF, ttw);
}

static void show_request(struct seq_file *seq, struct tcp_request_sock *treq, __u32 sl,
			 uid_t uid)
{
	struct request_sock *req = &treq->req.req;
	long ttd = req->rsk_timer.expires - bpf_jiffies64();

	if (ttd < 0)
		ttd = 0;
	BPF_SEQ_PRINTF(seq, "%4d: ", sl);
	show_address(seq, &req->__req_common.skc_v6_rcv_saddr, req->__req_common.skc_num);
	show_address(seq, &req->__req_common.skc_v6_daddr,
		     bpf_ntohs(req->__req_common.skc_dport));
	BPF_SEQ_PRINTF(seq, "%02X %08X:%08X %02X:%08lX %08X %5u %8d %d %d %pK\n",
		       TCP_SYN_RECV, 0, 0, 1, jiffies_to_clock_t(ttd),
		       BPF_CORE_READ_BITFIELD_PROBED(req, num_timeout), uid, 0, 0, 0, treq);
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
	__u32 sl;

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

	sl = session_number(session, meta->seq_num);
	if (skc->skc_state == TCP_TIME_WAIT) {
		tw = bpf_skc_to_tcp_timewait_sock(skc);
		if (tw)
			show_timewait(seq, tw, sl);
	} else if (skc->skc_state == TCP_NEW_SYN_RECV) {
		req = bpf_skc_to_tcp_request_sock(skc);
		if (req)
			show_request(seq, req, sl, ctx->uid);
	} else {
		tp6 = bpf_skc_to_tcp6_sock(skc);
		if (tp6)
			show_socket(seq, tp6, sl, ctx->uid);
	}
	return 0;
}
