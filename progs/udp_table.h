/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel's UDP table, walked the way /proc/net/udp and /proc/net/udp6 walk
 * it (net/ipv4/udp.c, udp_get_first and udp_get_next), for the udp and udp6 views.
 *
 * The udp iterator visits sockets by udp_table->hash2 (address and port) and
 * gives that slot as ctx->bucket, but /proc goes through udp_table->hash (port
 * only) and prints that slot in `sl`: other numbers, in another order. (Before
 * 6.5 the iterator goes through udp_table->hash too, but it resumes each read()
 * by counting sockets: see compat.h.) So the program does not print the
 * iterator's socket. Each call walks on through udp_table->hash, under RCU,
 * from where the last call stopped, and prints the lines that fit in the
 * seq_file buffer; the iterator's calls are only the chances to print, and the
 * final call (no socket) prints what is left. Where kernels differ (the table
 * of a network namespace, the iterator's references, bpf_rdonly_cast()), the
 * shims are in compat.h.
 *
 * A view that includes this file defines udp_show_header() and
 * udp_show_socket(), and its program calls udp_table_show().
 */
#ifndef UDP_TABLE_H
#define UDP_TABLE_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "compat.h"
#include "iterfs.h"
#include "sock.h"
#include "namespaces.h"

/* Room kept for one line: /proc's longest (udp6, every number at its widest) is 206. */
#define UDP_LINE_MAX	256
/* Steps of one call's walk: every slot of the largest table, and then some. */
#define UDP_WALK_STEPS	(1 << 20)
/* Sockets of the iterator's current batch looked through for one line. */
#define UDP_BATCH_MAX	(1 << 16)
/* Writes of UDP_LINE_MAX that fill any seq_file buffer (32 KiB with 4 KiB pages). */
#define UDP_OVERFLOW_WRITES	(1 << 14)

/* A place in the walk: the next line to print. */
struct udp_position {
	__u32 bucket;		/* slot of udp_table->hash, /proc's `sl` */
	__u32 index;		/* nodes of that slot's chain already passed */
	__u32 header_done;
};

/*
 * One reader's walk. It lives in the map value, which the verifier does not
 * track, so that the bpf_loop callback's steps leave its states alike.
 */
struct udp_walk {
	struct udp_position next;
	struct udp_position start;	/* where this call began */
	__u64 node;		/* the chain node at next.index, 0 at the chain's end */
	__u32 passed;		/* nodes of that chain walked in this call */
	__u32 positioned;	/* node and passed are set for next.bucket */
	__u32 printed;		/* lines this call printed */
	__u32 overflowed;	/* this call's text is lost */
	__u64 user_ns;		/* the reader's, if open() told it (namespaces.h) */
};

/*
 * Keyed by the iterator's session id. A reader that closes early leaves its
 * entry, and before 6.5 so does every walk that ended (udp_table_show()): the
 * daemon deletes it when it closes the iterator (iterfs.h, struct opening).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SESSIONS);
	__type(key, __u64);
	__type(value, struct udp_walk);
} udp_walks SEC(".maps");

/* One socket's line, as /proc computes it; the view prints it. */
struct udp_line {
	__u32 bucket;
	__u32 state;
	int tx_queue;
	int rx_queue;
	__u32 uid;		/* as the reader sees it (first read: the kuid) */
	int ref;		/* less the iterator's (first read: the refcount) */
	__u64 inode;
	__u64 sk;		/* the socket's address, for %pK */
	__u32 drops;
	__u16 local_port;	/* host order */
	__u16 remote_port;
	/* Network order; an AF_INET socket's in [0] (skc_rcv_saddr, skc_daddr). */
	__u32 local_address[4];
	__u32 remote_address[4];
};

static void udp_show_header(struct seq_file *seq);
static void udp_show_socket(struct seq_file *seq, const struct udp_line *line);

/* What every line of one call needs to know. */
struct udp_line_source {
	__u64 user_ns;		/* seq_user_ns(seq) */
	__u64 held_batch;	/* the sockets the iterator holds a reference on */
	__u32 held;
	int family;
};

/* What one call knows, for the bpf_loop callback: the same at every step. */
struct udp_walk_call {
	struct seq_file *seq;
	struct udp_walk *walk;
	struct udp_line_source source;
	__u64 net;
	__u64 hash;		/* udp_table->hash */
	__u32 mask;
};

static __always_inline bool seq_has_room(struct seq_file *seq)
{
	return seq->count + UDP_LINE_MAX < seq->size;
}

#define SPACES16 "                "
#define SPACES64 SPACES16 SPACES16 SPACES16 SPACES16
static const char udp_spaces[UDP_LINE_MAX] = SPACES64 SPACES64 SPACES64 SPACES64;

/* seq_pad(seq, '\n') after seq_setwidth(seq, width) where the line started. */
static __always_inline void udp_seq_pad(struct seq_file *seq, __u64 start, __u32 width)
{
	__u64 used = seq->count - start;

	if (used < width) {
		__u32 pad = width - used;

		if (pad < sizeof(udp_spaces))
			bpf_seq_write(seq, udp_spaces, pad);
	}
	bpf_seq_write(seq, "\n", 1);
}

static long udp_overflow_step(__u64 i, void *data)
{
	struct seq_file *seq = *(struct seq_file **)data;

	bpf_seq_write(seq, udp_spaces, sizeof(udp_spaces));
	return seq->count >= seq->size;
}

/*
 * Write past the buffer's end, as seq_set_overflow() marks it: the kernel drops
 * this call's text and calls again, for the same socket or the final call
 * again, with an empty buffer.
 */
static __always_inline void seq_set_overflow(struct seq_file *seq)
{
	bpf_loop(UDP_OVERFLOW_WRITES, udp_overflow_step, &seq, 0);
}

static __always_inline __u64 udp_hslot_first(__u64 hash, __u32 bucket)
{
	struct udp_hslot *hslot = (void *)(hash + bucket * bpf_core_type_size(struct udp_hslot));

	return (__u64)BPF_CORE_READ(hslot, head.first);
}

static __always_inline __u64 hlist_next(__u64 node)
{
	return (__u64)BPF_CORE_READ((struct hlist_node *)node, next);
}

/* sk_del_node_init() clears both links of a socket leaving the table. */
static __always_inline bool hlist_unhashed(__u64 node)
{
	return !BPF_CORE_READ((struct hlist_node *)node, pprev);
}

struct udp_batch_search {
	__u64 batch;
	__u64 sk;
	bool found;
};

static long udp_batch_item(__u64 i, void *data)
{
	struct udp_batch_search *search = data;
	__u64 item = 0;

	bpf_probe_read_kernel(&item, sizeof(item), (void *)(search->batch + i * sizeof(item)));
	if (item == search->sk) {
		search->found = true;
		return 1;
	}
	return 0;
}

/* The iterator holds a reference on every socket of its batch not yet shown; /proc holds none. */
static __always_inline int iterator_references(const struct udp_line_source *source, __u64 sk)
{
	struct udp_batch_search search = { .batch = source->held_batch, .sk = sk };

	bpf_loop(source->held, udp_batch_item, &search, 0);
	return search.found;
}

/*
 * The fields of a socket that its line prints as they are, and the kernel's uid
 * and reference count, by plain loads through bpf_rdonly_cast() (6.2 on: see
 * compat.h).
 */
static __always_inline void udp_line_load(__u64 sk_address, int family, struct udp_line *line)
{
	struct udp_sock *up = bpf_rdonly_cast((void *)sk_address,
					      bpf_core_type_id_kernel(struct udp_sock));
	struct sock *sk = &up->inet.sk;
	struct sock_common *skc = &sk->__sk_common;

	line->state = skc->skc_state;
	line->tx_queue = sk->sk_wmem_alloc.refs.counter - 1;			/* sk_wmem_alloc_get() */
	line->rx_queue = sk->sk_backlog.rmem_alloc.counter - up->forward_deficit; /* udp_rqueue_get() */
	line->uid = sk->sk_uid.val;
	line->ref = skc->skc_refcnt.refs.counter;
	line->local_port = bpf_ntohs(up->inet.inet_sport);
	line->remote_port = bpf_ntohs(skc->skc_dport);
	if (family == AF_INET) {
		line->local_address[0] = skc->skc_rcv_saddr;
		line->remote_address[0] = skc->skc_daddr;
	} else {
		__builtin_memcpy(line->local_address, &skc->skc_v6_rcv_saddr, 16);
		__builtin_memcpy(line->remote_address, &skc->skc_v6_daddr, 16);
	}
}

/* The same, with bpf_probe_read_kernel(): where the kernel has no bpf_rdonly_cast(). */
static __always_inline void udp_line_probe(__u64 sk_address, int family, struct udp_line *line)
{
	struct udp_sock *up = (void *)sk_address;
	struct sock *sk = &up->inet.sk;
	struct sock_common *skc = &sk->__sk_common;

	line->state = BPF_CORE_READ(skc, skc_state);
	line->tx_queue = BPF_CORE_READ(sk, sk_wmem_alloc.refs.counter) - 1;
	line->rx_queue = BPF_CORE_READ(sk, sk_backlog.rmem_alloc.counter) -
			 BPF_CORE_READ(up, forward_deficit);
	line->uid = BPF_CORE_READ(sk, sk_uid.val);
	line->ref = BPF_CORE_READ(skc, skc_refcnt.refs.counter);
	line->local_port = bpf_ntohs(BPF_CORE_READ(&up->inet, inet_sport));
	line->remote_port = bpf_ntohs(BPF_CORE_READ(skc, skc_dport));
	if (family == AF_INET) {
		line->local_address[0] = BPF_CORE_READ(skc, skc_rcv_saddr);
		line->remote_address[0] = BPF_CORE_READ(skc, skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&line->local_address, skc, skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&line->remote_address, skc, skc_v6_daddr);
	}
}

/*
 * One socket's line. A global function, verified once on its own: inlined in
 * the walk, its branches multiply with the walk's.
 */
__noinline int udp_line_fill(__u64 sk_address, const struct udp_line_source *source,
			     struct udp_line *line)
{
	struct sock *sk = (void *)sk_address;

	if (!source || !line)
		return 0;
	if (has_rdonly_cast())
		udp_line_load(sk_address, source->family, line);
	else
		udp_line_probe(sk_address, source->family, line);
	line->sk = sk_address;
	line->uid = from_kuid_munged(source->user_ns, line->uid);
	line->ref -= iterator_references(source, sk_address);
	line->inode = sock_inode(sk);
	line->drops = sock_drops(sk);
	return 0;
}

/* Whether the socket is one the view shows: of its family, in its namespace. */
static __always_inline bool udp_sock_shown(__u64 sk_address, const struct udp_walk_call *call)
{
	struct sock_common *skc = (void *)sk_address;

	if (has_rdonly_cast()) {
		skc = bpf_rdonly_cast(skc, bpf_core_type_id_kernel(struct sock_common));
		return skc->skc_family == call->source.family &&
		       (__u64)skc->skc_net.net == call->net;
	}
	return BPF_CORE_READ(skc, skc_family) == call->source.family &&
	       (__u64)BPF_CORE_READ(skc, skc_net.net) == call->net;
}

/* One step of the walk: one node of a chain, or on to the next slot. */
static long udp_walk_step(__u64 step, void *data)
{
	struct udp_walk_call *call = data;
	struct udp_walk *walk = call->walk;
	struct udp_line line;
	__u64 sk_address, next;

	if (walk->next.bucket > call->mask)
		return 1;	/* the whole table is shown */
	if (!walk->positioned) {
		walk->node = udp_hslot_first(call->hash, walk->next.bucket);
		walk->passed = 0;
		walk->positioned = 1;
	}
	if (!walk->node) {
		walk->next.bucket++;
		walk->next.index = 0;
		walk->positioned = 0;
		return 0;
	}
	next = hlist_next(walk->node);
	if (!next && hlist_unhashed(walk->node)) {
		/* Closed under us, and its link to the rest of the chain with it. */
		walk->positioned = 0;
		return 0;
	}
	if (walk->passed < walk->next.index) {	/* back to where the last call stopped */
		walk->node = next;
		walk->passed++;
		return 0;
	}

	sk_address = walk->node - bpf_core_field_offset(struct sock, __sk_common.skc_node);
	if (udp_sock_shown(sk_address, call)) {
		if (!seq_has_room(call->seq)) {
			/* A call that printed nothing asks for an empty buffer. */
			if (!walk->printed) {
				seq_set_overflow(call->seq);
				walk->overflowed = 1;
			}
			return 1;
		}
		line = (struct udp_line){ .bucket = walk->next.bucket };
		udp_line_fill(sk_address, &call->source, &line);
		udp_show_socket(call->seq, &line);
		walk->printed++;
	}
	walk->node = next;
	walk->passed++;
	walk->next.index++;
	return 0;
}

static __always_inline int udp_table_show(struct bpf_iter__udp *ctx, int family)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct seq_file *seq = meta->seq;
	/* Tells the daemon the session's id; the daemon tells the reader's user namespace. */
	struct udp_walk *walk = session_entry(&udp_walks, meta,
		((struct udp_walk){ .user_ns = opening_take(meta).user_ns }));
	struct seq_net_private *private;
	struct udp_table *table;
	bool final = !ctx->udp_sk;
	__u64 used = seq->count;
	struct net *net;

	if (!walk)
		return 0;
	walk->start = walk->next;
	walk->positioned = 0;
	walk->printed = 0;
	walk->overflowed = 0;

	private = BPF_CORE_READ(seq, private);
	net = BPF_CORE_READ(private, net);
	table = udp_iter_table(seq, net);
	struct udp_walk_call call = {
		.seq = seq,
		.walk = walk,
		.net = (__u64)net,
		.hash = (__u64)BPF_CORE_READ(table, hash),
		.mask = BPF_CORE_READ(table, mask),
		.source.family = family,
	};
	call.source.user_ns = walk->user_ns ?: (__u64)BPF_CORE_READ(seq, file, f_cred, user_ns);
	if (!final) {
		udp_iter_held(seq, &call.source.held_batch, &call.source.held);
		if (call.source.held > UDP_BATCH_MAX)
			call.source.held = UDP_BATCH_MAX;
	}

	if (!walk->next.header_done) {
		if (!seq_has_room(seq)) {
			seq_set_overflow(seq);
			return 0;
		}
		udp_show_header(seq);
		walk->next.header_done = 1;
		walk->printed = 1;
	}
	bpf_loop(UDP_WALK_STEPS, udp_walk_step, &call, 0);

	/*
	 * Nothing is shown after the final call. If the buffer held text
	 * already and the walk is not over, overflow to have it again, empty.
	 */
	if (final && walk->next.bucket <= call.mask && used && !walk->overflowed) {
		seq_set_overflow(seq);
		walk->overflowed = 1;
	}
	/* The kernel drops the text of a call that overflowed: so does the walk. */
	if (walk->overflowed || seq->count >= seq->size) {
		walk->next = walk->start;
		return 0;
	}
	/*
	 * The walk is over. Where the iterator may call again after its end
	 * (before 6.5: see compat.h), the finished walk stays, so that those
	 * calls print nothing; the daemon deletes it at close.
	 */
	if (final && udp_iter_batches())
		session_entry_delete(&udp_walks, meta);
	return 0;
}

#endif /* UDP_TABLE_H */
