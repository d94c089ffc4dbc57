// SPDX-License-Identifier: GPL-2.0
/*
 * netlink: /proc/net/netlink, line for line
 * (net/netlink/af_netlink.c, netlink_native_seq_show).
 */
#include "iterfs.h"

char LICENSE[] SEC("license") = "GPL";

/* Kernels before 6.18 had no sk_ino and reached the inode through the socket. */
struct sock___sk_ino {
	unsigned long sk_ino;
} __attribute__((preserve_access_index));

/* Since 6.18 a socket may count its drops in per-NUMA-node counters instead. */
struct numa_drop_counters___sk_drops {
	atomic_t drops0;
	atomic_t drops1;
} __attribute__((preserve_access_index));

struct sock___sk_drops {
	struct numa_drop_counters___sk_drops *sk_drop_counters;
} __attribute__((preserve_access_index));

/* SOCK_INODE(): kernel sockets have an inode but no file. */
static __always_inline unsigned long sock_i_ino(struct sock *sk)
{
	struct sock___sk_ino *with_ino = (void *)sk;
	struct socket *sock;

	if (bpf_core_field_exists(with_ino->sk_ino))
		return BPF_CORE_READ(with_ino, sk_ino);
	sock = BPF_CORE_READ(sk, sk_socket);
	if (!sock)
		return 0;
	return BPF_CORE_READ((struct socket_alloc *)sock, vfs_inode.i_ino);
}

static __always_inline int sk_drops_read(struct sock *sk)
{
	struct sock___sk_drops *with_counters = (void *)sk;
	struct numa_drop_counters___sk_drops *ndc = NULL;

	if (bpf_core_field_exists(with_counters->sk_drop_counters))
		ndc = BPF_CORE_READ(with_counters, sk_drop_counters);
	if (ndc)
		return BPF_CORE_READ(ndc, drops0.counter) + BPF_CORE_READ(ndc, drops1.counter);
	return sk->sk_drops.counter;
}

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
		       s,
		       s->sk_protocol,
		       nlk->portid,
		       first_groups(nlk),
		       s->sk_backlog.rmem_alloc.counter,
		       s->sk_wmem_alloc.refs.counter - 1,
		       nlk->cb_running,
		       s->__sk_common.skc_refcnt.refs.counter,
		       sk_drops_read(s),
		       sock_i_ino(s));
	return 0;
}
