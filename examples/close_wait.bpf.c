// SPDX-License-Identifier: GPL-2.0
/*
 * close_wait: TCP sockets in CLOSE_WAIT, with the process that holds them.
 *
 * The peer has closed and the kernel waits for the owner to close its end:
 * a process that piles these up leaks connections. /proc/net/tcp and the tcp
 * iterator show the socket but not who holds it, so this walks open files
 * (iter/task_file) and prints each socket fd whose TCP state is CLOSE_WAIT:
 *
 *	    pid comm               fd local remote
 *	   4242 python3             5 127.0.0.1:8080 127.0.0.1:51234
 *	   4242 python3             6 [0000:0000:0000:0000:0000:0000:0000:0001]:8080 [...
 *
 * IPv6 addresses are written in full, in brackets. close_wait/all is every
 * process, close_wait/<pid> one of them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10

/* " address:port", IPv6 addresses in brackets. */
static void print_address(struct seq_file *seq, struct sock_common *common, bool local)
{
	__u16 port = local ? common->skc_num : __builtin_bswap16(common->skc_dport);

	if (common->skc_family == AF_INET) {
		__be32 address = local ? common->skc_rcv_saddr : common->skc_daddr;

		BPF_SEQ_PRINTF(seq, " %pI4:%u", &address, port);
	} else {
		struct in6_addr address = local ? common->skc_v6_rcv_saddr : common->skc_v6_daddr;

		BPF_SEQ_PRINTF(seq, " [%pI6]:%u", &address, port);
	}
}

SEC("iter/task_file")
int close_wait(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct socket *socket;
	struct sock *sk;

	if (ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(seq, "%7s %-16s %4s %s %s\n", "pid", "comm", "fd", "local", "remote");
	if (!task || !file)
		return 0;
	socket = bpf_sock_from_file(file);	/* NULL unless the file is a socket */
	if (!socket)
		return 0;
	sk = socket->sk;
	if (!sk || sk->sk_protocol != IPPROTO_TCP || sk->__sk_common.skc_state != TCP_CLOSE_WAIT)
		return 0;
	if (sk->__sk_common.skc_family != AF_INET && sk->__sk_common.skc_family != AF_INET6)
		return 0;
	BPF_SEQ_PRINTF(seq, "%7d %-16s %4u", task->tgid, task->comm, ctx->fd);
	print_address(seq, &sk->__sk_common, true);
	print_address(seq, &sk->__sk_common, false);
	BPF_SEQ_PRINTF(seq, "\n");
	return 0;
}
