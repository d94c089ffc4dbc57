// SPDX-License-Identifier: GPL-2.0
/* udp: /proc/net/udp, line for line (net/ipv4/udp.c, udp4_seq_show). */
#include "udp_table.h"

char LICENSE[] SEC("license") = "GPL";

/* udp4_seq_show pads every line, the header too, to this width (seq_setwidth). */
#define UDP4_LINE_WIDTH	127

static void udp_show_header(struct seq_file *seq)
{
	__u64 start = seq->count;

	BPF_SEQ_PRINTF(seq, "   sl  local_address rem_address   st tx_queue "
		       "rx_queue tr tm->when retrnsmt   uid  timeout "
		       "inode ref pointer drops");
	udp_seq_pad(seq, start, UDP4_LINE_WIDTH);
}

static void udp_show_socket(struct seq_file *seq, const struct udp_line *line)
{
	__u64 start = seq->count;

	BPF_SEQ_PRINTF(seq, "%5d: %08X:%04X %08X:%04X %02X %08X:%08X ",
		       line->bucket, line->local_address[0], line->local_port,
		       line->remote_address[0], line->remote_port, line->state,
		       line->tx_queue, line->rx_queue);
	BPF_SEQ_PRINTF(seq, "%02X:%08lX %08X %5u %8d %llu %d %pK %u",
		       0, 0L, 0, line->uid, 0, line->inode, line->ref,
		       reader_pointer(seq, (void *)line->sk), line->drops);
	udp_seq_pad(seq, start, UDP4_LINE_WIDTH);
}

SEC("iter/udp")
int udp(struct bpf_iter__udp *ctx)
{
	return udp_table_show(ctx, AF_INET);
}
