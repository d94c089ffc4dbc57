/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What /proc/net/tcp and /proc/net/tcp6 print alike: every column after the
 * addresses (net/ipv4/tcp_ipv4.c and net/ipv6/tcp_ipv6.c). Each helper stops
 * before the end of the line, which the two files end differently.
 */
#ifndef ITERFS_TCP_H
#define ITERFS_TCP_H

#include "iterfs.h"
#include "sock.h"
#include "namespaces.h"
#include "compat.h"

#define ICSK_TIME_RETRANS	1
#define ICSK_TIME_PROBE0	3
#define ICSK_TIME_LOSS_PROBE	5
#define ICSK_TIME_REO_TIMEOUT	6
#define TCP_INFINITE_SSTHRESH	0x7fffffff

static __always_inline bool timer_pending(const struct timer_list *timer)
{
	return timer->entry.pprev != NULL;
}

/* A full socket, from `st` on: get_tcp4_sock and get_tcp6_sock. */
static void tcp_show_sock_fields(struct seq_file *seq, struct tcp_sock *tp, uid_t uid)
{
	struct inet_connection_sock *icsk = &tp->inet_conn;
	struct sock *sk = &icsk->icsk_inet.sk;
	struct timer_list *keepalive;
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
	} else if (timer_pending(keepalive = keepalive_timer(icsk))) {
		timer_active = 2;
		timer_expires = keepalive->expires;
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

	BPF_SEQ_PRINTF(seq, "%02X %08X:%08X %02X:%08lX %08X %5u %8d %lu %d ",
		       state, tp->write_seq - tp->snd_una, rx_queue, timer_active,
		       jiffies_delta_to_clock_t(timer_expires - now),
		       icsk->icsk_retransmits, uid, icsk->icsk_probes_out,
		       sock_inode(sk), sk->__sk_common.skc_refcnt.refs.counter - ITERATOR_REF);
	BPF_SEQ_PRINTF(seq, "%pK %lu %lu %u %u %d",
		       reader_pointer(seq, tp),
		       jiffies_to_clock_t(icsk->icsk_rto),
		       jiffies_to_clock_t(BPF_CORE_READ_BITFIELD_PROBED(icsk, icsk_ack.ato)),
		       (icsk->icsk_ack.quick << 1) |
				(icsk->icsk_ack.pingpong >= tcp_pingpong_thresh(sk)),
		       tp->snd_cwnd,
		       state == TCP_LISTEN ? icsk->icsk_accept_queue.fastopenq.max_qlen :
		       (tp->snd_ssthresh >= TCP_INFINITE_SSTHRESH ? -1 : tp->snd_ssthresh));
}

/* A TIME_WAIT socket, from `st` on: get_timewait4_sock and get_timewait6_sock. */
static void tcp_show_timewait_fields(struct seq_file *seq, struct inet_timewait_sock *tw)
{
	long delta = tw->tw_timer.expires - bpf_jiffies64();

	BPF_SEQ_PRINTF(seq, "%02X %08X:%08X %02X:%08lX %08X %5d %8d %d %d %pK",
		       tw->tw_substate, 0, 0, 3, jiffies_delta_to_clock_t(delta),
		       0, 0, 0, 0, tw->__tw_common.skc_refcnt.refs.counter - ITERATOR_REF,
		       reader_pointer(seq, tw));
}

/* A request socket (SYN_RECV), from `st` on: get_openreq4 and get_openreq6. */
static void tcp_show_openreq_fields(struct seq_file *seq, struct request_sock *req, uid_t uid)
{
	long delta = req->rsk_timer.expires - bpf_jiffies64();

	BPF_SEQ_PRINTF(seq, "%02X %08X:%08X %02X:%08lX %08X %5u %8d %u %d %pK",
		       TCP_SYN_RECV, 0, 0, 1, jiffies_delta_to_clock_t(delta),
		       BPF_CORE_READ_BITFIELD_PROBED(req, num_timeout), uid, 0, 0, 0,
		       reader_pointer(seq, req));
}

#endif /* ITERFS_TCP_H */
