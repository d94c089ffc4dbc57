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

static void show_address(struct seq_file *seq, const __u32 *address, __u16 port)
{
	BPF_SEQ_PRINTF(seq, "%08X%08X%08X%08X:%04X ",
		       address[0], address[1], address[2], address[3], port);
}

/* __ip6_dgram_sock_seq_show(): no padding, unlike udp. */
static void udp_show_socket(struct seq_file *seq, const struct udp_line *line)
{
	BPF_SEQ_PRINTF(seq, "%5d: ", line->bucket);
	show_address(seq, line->local_address, line->local_port);
	show_address(seq, line->remote_address, line->remote_port);
	BPF_SEQ_PRINTF(seq, "%02X %08X:%08X %02X:%08lX %08X %5u %8d %llu %d %pK %u\n",
		       line->state, line->tx_queue, line->rx_queue, 0, 0L, 0,
		       line->uid, 0, line->inode, line->ref,
		       reader_pointer(seq, (void *)line->sk), line->drops);
}

SEC("iter/udp")
int udp6(struct bpf_iter__udp *ctx)
{
	return udp_table_show(ctx, AF_INET6);
}
