// SPDX-License-Identifier: GPL-2.0
/* udp6: /proc/net/udp6, line for line (net/ipv6/udp.c, udp6_seq_show). */
#include "udp_table.h"

char LICENSE[] SEC("license") = "GPL";

static void udp_show_header(struct seq_file *seq)
{
	BPF_SEQ_PRINTF(seq, "  sl  local_address                         "
		       "remote_address                        "
		       "st tx_queue rx_queue tr tm->when retrnsmt"
		       "   uid  timeout inode ref pointer drops\n");
}

static void show_address(struct seq_file *seq, const struct in6_addr *addr, __u16 port)
{
	BPF_SEQ_PRINTF(seq, "%08X%08X%08X%08X:%04X ",
		       addr->in6_u.u6_addr32[0], addr->in6_u.u6_addr32[1],
		       addr->in6_u.u6_addr32[2], addr->in6_u.u6_addr32[3], port);
}

/* __ip6_dgram_sock_seq_show(): no padding, unlike udp. */
static void udp_show_socket(struct seq_file *seq, struct udp_sock *up,
			    const struct udp_line *line)
{
	struct inet_sock *inet = &up->inet;
	struct sock_common *skc = &inet->sk.__sk_common;

	BPF_SEQ_PRINTF(seq, "%5d: ", line->bucket);
	show_address(seq, &skc->skc_v6_rcv_saddr, bpf_ntohs(inet->inet_sport));
	show_address(seq, &skc->skc_v6_daddr, bpf_ntohs(skc->skc_dport));
	BPF_SEQ_PRINTF(seq, "%02X %08X:%08X %02X:%08lX %08X %5u %8d %llu %d %pK %u\n",
		       line->state, line->tx_queue, line->rx_queue, 0, 0L, 0,
		       line->uid, 0, line->inode, line->ref, reader_pointer(seq, up), line->drops);
}

SEC("iter/udp")
int udp6(struct bpf_iter__udp *ctx)
{
	return udp_table_show(ctx, AF_INET6);
}
