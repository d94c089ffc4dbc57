// SPDX-License-Identifier: GPL-2.0
/*
 * netlink: /proc/net/netlink, line for line
 * (net/netlink/af_netlink.c, netlink_native_seq_show).
 */
#include "iterfs.h"
#include "sock.h"

char LICENSE[] SEC("license") = "GPL";

/* The first word of the groups bitmap, which /proc prints as a u32. */
static __always_inline __u32 first_groups(struct netlink_sock *nlk)
{
	unsigned long word = 0;
	unsigned long *groups = nlk->groups;

	if (groups)
		bpf_probe_read_kernel(&word, sizeof(word), groups);
	return word;
}

SEC("iter/netlink")
int netlink(struct bpf_iter__netlink *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct netlink_sock *nlk = ctx->sk;
	struct seq_file *seq = meta->seq;
	struct session *session = session_get(meta);
	struct sock *s;

	if (!session)
		return 0;
	/* The kernel shows its SEQ_START_TOKEN to no program: seq_num 0 is the first socket. */
	if (session_wants_header(session, meta, nlk))
		BPF_SEQ_PRINTF(seq, "sk               Eth Pid        Groups   "
			       "Rmem     Wmem     Dump  Locks    Drops    Inode\n");
	if (!nlk) {
		session_end(meta);
		return 0;
	}

	s = &nlk->sk;
	BPF_SEQ_PRINTF(seq, "%pK %-3d %-10u %08x %-8d %-8d %-5d %-8d %-8u %-8lu\n",
		       reader_pointer(seq, s),
		       s->sk_protocol,
		       nlk->portid,
		       first_groups(nlk),
		       s->sk_backlog.rmem_alloc.counter,
		       s->sk_wmem_alloc.refs.counter - 1,
		       nlk->cb_running,
		       s->__sk_common.skc_refcnt.refs.counter,
		       sock_drops(s),
		       sock_inode(s));
	return 0;
}
