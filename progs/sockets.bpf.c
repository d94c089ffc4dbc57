// SPDX-License-Identifier: GPL-2.0
/*
 * sockets: one line per open socket descriptor, with the process that holds
 * it: the join that `ss -p`, `netstat -p`, `lsof -i` and psutil make by
 * reading every /proc/<pid>/fd link, made here in one walk of the fds.
 *
 *	tgid fd netns family type protocol state local remote recv-q send-q inode uid comm
 *
 * - netns: the inode number of the socket's network namespace, as
 *   /proc/<pid>/ns/net names it: a socket made in another namespace shows it.
 * - family, type: inet, inet6, unix, netlink, packet, ...; stream, dgram,
 *   seqpacket, raw, ... A family or type without a name here is its number.
 * - protocol: for inet and inet6 its name (tcp, udp, udplite, icmp, icmpv6,
 *   sctp, mptcp, raw); for every other family its number, in decimal: a
 *   netlink socket's netlink family, a packet socket's ethertype (3: all).
 * - state, addresses and queues as `ss -n` prints them: state ESTAB, LISTEN,
 *   UNCONN...; inet `addr:port` (`0.0.0.0:*`, `[::1]:443`, `*:*` for an
 *   unbound dual-stack socket, `%dev` after a bound device); unix
 *   `name:inode` (`*` unnamed, an abstract name with its NULs as `@`) and
 *   `*:peer-inode` as remote; netlink `protocol:port-id`; packet
 *   `[ethertype]:dev` or `*:*`. ss's two columns, address and port, are one
 *   here, joined with ':' as ss joins them for inet.
 * - inode: the socket's, as readlink(/proc/<pid>/fd/<fd>) shows `socket:[inode]`.
 * - uid: the socket's owner, seen from the reader's user namespace.
 * - comm: the process's name.
 *
 * No field holds a blank: in a unix name and in comm, a byte below '!', DEL
 * and '\' are written as \ooo, the octal escape /proc uses in paths.
 */
#include "iterfs.h"
#include "opened.h"
#include "compat.h"
#include "namespaces.h"
#include "sock.h"
#include "scratch.h"
#include "text.h"	/* powers_of_ten, digit_pairs */
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define OUT_SIZE	2048	/* a line at its longest is under 1 KiB */
#define OUT_MASK	(OUT_SIZE - 1)
#define COMM_AT		1536	/* where a task's comm column is kept, past any line */
#define UNIX_NAME_SIZE	128	/* sun_path (108) and its NUL, rounded up */
#define NETDEV_HASHENTRIES 256
#define IFNAMSIZ	16
#define ETH_P_ALL	3
#define NETLINK_CONNECTED 1

struct scratch {
	/* The last uid mapped, in this walk: from kuid to uid. */
	__u64 uid_session;
	__u32 kuid;
	__u32 uid;
	/* The task whose fds the walk visits: whether it may be shown, its tgid
	 * column, and its comm column at out[COMM_AT]. */
	struct task_decision decided;
	__u32 comm_length;
	char tgid[16];
	char out[OUT_SIZE];
	__u8 address[16];	/* an inet or inet6 address, as the socket holds it */
	char name[UNIX_NAME_SIZE];	/* a unix name, a device name, comm */
};

PER_THREAD_SCRATCH(struct scratch)

/* Names of numbers, padded with blanks: each is written as two 8-byte words.
 * An entry without a name is all NULs. Each table's size is a power of two: an
 * index masked with it stays inside. */
struct label {
	char text[16];
};

static const struct label families[32] = {
	[AF_UNIX] = {"unix            "}, [AF_INET] = {"inet            "}, [AF_INET6] = {"inet6           "},
	[AF_NETLINK] = {"netlink         "}, [AF_PACKET] = {"packet          "},
};
#define FAMILY_WIDTH 8

static const struct label types[16] = {
	[1] = {"stream          "}, [2] = {"dgram           "}, [3] = {"raw             "}, [4] = {"rdm             "},
	[5] = {"seqpacket       "}, [6] = {"dccp            "}, [10] = {"packet          "},
};
#define TYPE_WIDTH 10

/* ss's names for the TCP states, which every family's sk_state borrows. */
static const struct label states[16] = {
	[0] = {"UNKNOWN         "}, [1] = {"ESTAB           "}, [2] = {"SYN-SENT        "},
	[3] = {"SYN-RECV        "}, [4] = {"FIN-WAIT-1      "}, [5] = {"FIN-WAIT-2      "},
	[6] = {"TIME-WAIT       "}, [7] = {"UNCONN          "}, [8] = {"CLOSE-WAIT      "},
	[9] = {"LAST-ACK        "}, [10] = {"LISTEN          "}, [11] = {"CLOSING         "},
	[12] = {"NEW-SYN-RECV    "}, [13] = {"BOUND-INACTIVE  "},
};
#define STATE_WIDTH 14
#define UNCONNECTED 7

#define PROTOCOL_WIDTH 8

static __always_inline __u32 put_byte(struct scratch *s, __u32 at, char c)
{
	s->out[at & OUT_MASK] = c;
	return at + 1;
}

#define BLANKS 0x2020202020202020ULL
/* Where a line's fixed-size writes stop: the widest of them, 16 bytes at 2 KiB - 64. */
#define OUT_FIXED (OUT_SIZE - 64)

/* A label's 16 bytes at `at`, of which `width` (< 16) count, then a blank. */
static __always_inline __u32 put_words(struct scratch *s, __u32 at, const char *text, __u32 width)
{
	if (at > OUT_FIXED)
		return at;
	at = bounded(at, OUT_FIXED);
	*(__u64 *)&s->out[at] = *(const __u64 *)text;
	*(__u64 *)&s->out[at + 8] = *(const __u64 *)(text + 8);
	s->out[at + width] = ' ';
	return at + width + 1;
}

/* `value` in decimal, right-aligned in `width` columns (at most 16). */
__noinline __u32 put_decimal(struct scratch *s, __u32 at, __u64 value, __u32 width);

static const char blanks[16] = "                ";

/*
 * table[index]'s name left-aligned in `width` columns, then a blank; the
 * number itself where the table has no name for it. The index is masked
 * where it is used, so that the compiler cannot drop the mask as implied by
 * the check before it.
 */
static __always_inline __u32 put_named(struct scratch *s, __u32 at, const struct label *table,
				       __u32 index, __u32 mask, __u32 width)
{
	const char *text = NULL;
	__u32 end;

	if (index <= mask) {
		barrier_var(index);
		text = table[index & mask].text;
	}
	if (text && text[0])
		return put_words(s, at, text, width);
	end = put_words(s, at, blanks, width);
	put_decimal(s, at, index, 0);
	return end;
}

/*
 * `value` in decimal, right-aligned in `width` columns (at most 16): two
 * digits a step, from the end. Below 2^32 a quotient is a multiply and a shift,
 * not a divide (x / 100 == x * 0x51eb851f >> 37 for every 32-bit x).
 */
__noinline __u32 put_decimal(struct scratch *s, __u32 at, __u64 value, __u32 width)
{
	__u32 digits = 1, end, pair;
	__u64 quotient;

	if (!s || at > OUT_FIXED)
		return at;
	for (int i = 1; i < 20; i++) {
		if (value < powers_of_ten[i])
			break;
		digits = i + 1;
	}
	at = bounded(at, OUT_FIXED);
	*(__u64 *)&s->out[at] = BLANKS;
	*(__u64 *)&s->out[at + 8] = BLANKS;
	if (width > digits)
		at += (width - digits) & 15;
	end = at + digits;
	at = end;
	for (int i = 0; i < 10 && value >= 100; i++) {
		quotient = value >> 32 ? value / 100 : value * 0x51eb851fULL >> 37;
		pair = (value - quotient * 100) * 2;
		s->out[--at & OUT_MASK] = digit_pairs[(pair + 1) & 255];
		s->out[--at & OUT_MASK] = digit_pairs[pair & 255];
		value = quotient;
	}
	if (value >= 10) {
		pair = value * 2;
		s->out[--at & OUT_MASK] = digit_pairs[(pair + 1) & 255];
		s->out[--at & OUT_MASK] = digit_pairs[pair & 255];
	} else {
		s->out[--at & OUT_MASK] = '0' + value;
	}
	return end;
}

/* A port as ss prints it: `*` for none. */
static __always_inline __u32 put_port(struct scratch *s, __u32 at, __u16 port)
{
	return port ? put_decimal(s, at, port, 0) : put_byte(s, at, '*');
}

/* s->address[offset..offset + 4) as a dotted quad. */
__noinline __u32 put_ipv4(struct scratch *s, __u32 at, __u32 offset)
{
	if (!s)
		return at;
	for (int i = 0; i < 4; i++) {
		if (i)
			at = put_byte(s, at, '.');
		at = put_decimal(s, at, s->address[(offset + i) & 15], 0);
	}
	return at;
}

/* A 16-bit group in lowercase hex, without leading zeros. */
__noinline __u32 put_hex(struct scratch *s, __u32 at, __u32 word)
{
	bool started = false;

	if (!s)
		return at;
	for (int shift = 12; shift >= 0; shift -= 4) {
		__u32 digit = (word >> shift) & 15;

		if (!digit && !started && shift)
			continue;
		started = true;
		at = put_byte(s, at, digit < 10 ? '0' + digit : 'a' + digit - 10);
	}
	return at;
}

/*
 * s->address as an IPv6 address, as glibc's inet_ntop() writes it (and so ss):
 * the first longest run of two or more zero groups as `::`, and the last four
 * bytes dotted for ::ffff:a.b.c.d and for the IPv4-compatible ::a.b.c.d
 * (glibc 2.36: ::1 and ::2 are not dotted, ::1:2 is).
 * Its loops are unrolled: 6.1's verifier refuses the loop clang makes of the
 * second one (a back-edge taken by falling through, not by a jump).
 */
__noinline __u32 put_ipv6(struct scratch *s, __u32 at)
{
	int best_base = -1, best_len = 0, cur_base = -1, cur_len = 0;
	__u32 words[8];

	if (!s)
		return at;
	#pragma unroll
	for (int i = 0; i < 8; i++)
		words[i] = s->address[2 * i] << 8 | s->address[2 * i + 1];
	#pragma unroll
	for (int i = 0; i < 8; i++) {
		if (!words[i]) {
			if (cur_base == -1) {
				cur_base = i;
				cur_len = 0;
			}
			cur_len++;
			continue;
		}
		if (cur_base != -1 && cur_len > best_len) {
			best_base = cur_base;
			best_len = cur_len;
		}
		cur_base = -1;
	}
	if (cur_base != -1 && cur_len > best_len) {
		best_base = cur_base;
		best_len = cur_len;
	}
	if (best_len < 2)
		best_base = -1;
	#pragma unroll
	for (int i = 0; i < 8; i++) {
		if (best_base != -1 && i >= best_base && i < best_base + best_len) {
			if (i == best_base)
				at = put_byte(s, at, ':');
			continue;
		}
		if (i)
			at = put_byte(s, at, ':');
		if (i == 6 && best_base == 0 &&
		    (best_len == 6 || (best_len == 5 && words[5] == 0xffff)))
			return put_ipv4(s, at, 12);
		at = put_hex(s, at, words[i]);
	}
	if (best_base != -1 && best_base + best_len == 8)
		at = put_byte(s, at, ':');
	return at;
}

/*
 * s->name's first `length` bytes, with a byte below '!', DEL and '\' as \ooo,
 * and with every NUL as '@' when `abstract` (ss's way with abstract names).
 */
__noinline __u32 put_escaped(struct scratch *s, __u32 at, __u32 length, __u32 abstract)
{
	if (!s)
		return at;
	for (__u32 i = 0; i < UNIX_NAME_SIZE && i < length; i++) {
		unsigned char c = s->name[i];

		if (!c && abstract)
			c = '@';
		if (c > ' ' && c != 0x7f && c != '\\') {
			at = put_byte(s, at, c);
			continue;
		}
		at = put_byte(s, at, '\\');
		at = put_byte(s, at, '0' + (c >> 6));
		at = put_byte(s, at, '0' + ((c >> 3) & 7));
		at = put_byte(s, at, '0' + (c & 7));
	}
	return at;
}

/* The length of the NUL-terminated string at s->name, at most `size`. */
__noinline __u32 name_length(struct scratch *s, __u32 size)
{
	__u32 length = 0;

	if (!s)
		return 0;
	for (__u32 i = 0; i < UNIX_NAME_SIZE && i < size; i++) {
		if (!s->name[i])
			break;
		length++;
	}
	return length;
}

/* The name of device `ifindex` in `net` (dev_get_by_index()), or its number. */
static __always_inline __u32 put_device(struct scratch *s, __u32 at, struct net *net, int ifindex)
{
	struct hlist_head *heads = BPF_CORE_READ(net, dev_index_head);
	struct hlist_node *node = NULL;
	struct net_device *dev;
	long length;

	if (heads)
		node = BPF_CORE_READ(&heads[ifindex & (NETDEV_HASHENTRIES - 1)], first);
	for (int i = 0; i < 16 && node; i++) {
		dev = container_of(node, struct net_device, index_hlist);
		if (BPF_CORE_READ(dev, ifindex) == ifindex) {
			length = bpf_probe_read_kernel_str(s->name, IFNAMSIZ, dev->name);
			return put_escaped(s, at, length > 0 ? length - 1 : 0, 0);
		}
		node = BPF_CORE_READ(node, next);
	}
	at = put_byte(s, at, 'i');
	at = put_byte(s, at, 'f');
	return put_decimal(s, at, ifindex, 0);
}

/* One end of an inet socket: `addr[%dev]:port`. */
static __always_inline __u32 put_inet_end(struct scratch *s, __u32 at, struct sock *sk,
					  bool local, __u16 port)
{
	struct sock_common *common = &sk->__sk_common;
	int ifindex = local ? common->skc_bound_dev_if : 0;
	__u32 *words = (__u32 *)s->address;

	if (common->skc_family == AF_INET) {
		words[0] = local ? common->skc_rcv_saddr : common->skc_daddr;
		at = put_ipv4(s, at, 0);
	} else {
		struct in6_addr *address = local ? &common->skc_v6_rcv_saddr : &common->skc_v6_daddr;

		for (int i = 0; i < 4; i++)
			words[i] = address->in6_u.u6_addr32[i];
		if (!(words[0] | words[1] | words[2] | words[3]) &&
		    !BPF_CORE_READ_BITFIELD(common, skc_ipv6only)) {
			at = put_byte(s, at, '*');
		} else {
			at = put_byte(s, at, '[');
			at = put_ipv6(s, at);
			at = put_byte(s, at, ']');
		}
	}
	if (ifindex) {
		at = put_byte(s, at, '%');
		at = put_device(s, at, common->skc_net.net, ifindex);
	}
	at = put_byte(s, at, ':');
	return put_port(s, at, port);
}

/* A unix socket's name as ss prints it, `*` if it has none. */
static __always_inline __u32 put_unix_name(struct scratch *s, __u32 at, struct unix_sock *u)
{
	struct unix_address *addr = BPF_CORE_READ(u, addr);
	int length;

	if (!addr)
		return put_byte(s, at, '*');
	length = BPF_CORE_READ(addr, len) - (int)offsetof(struct sockaddr_un, sun_path);
	if (length <= 0 || length > UNIX_PATH_MAX + 1)
		return put_byte(s, at, '*');
	__builtin_memset(s->name, 0, sizeof(s->name));
	bpf_probe_read_kernel(s->name, length & (UNIX_NAME_SIZE - 1), &addr->name[0].sun_path);
	if (s->name[0])
		return put_escaped(s, at, name_length(s, length), 0);
	return put_escaped(s, at, length, 1);
}

/* The unix columns as ss prints them: `name:inode` and, for the peer, `*:inode`
 * (0 for none): ss names no peer. */
static __always_inline __u32 put_unix_ends(struct scratch *s, __u32 at, struct unix_sock *u)
{
	struct sock *peer = BPF_CORE_READ(u, peer);

	at = put_unix_name(s, at, u);
	at = put_byte(s, at, ':');
	at = put_decimal(s, at, sock_inode(&u->sk), 0);
	at = put_byte(s, at, ' ');
	at = put_byte(s, at, '*');
	at = put_byte(s, at, ':');
	return put_decimal(s, at, peer ? sock_inode(peer) : 0, 0);
}

/* unix_inq_len(): bytes waiting in a stream, the next datagram's size otherwise. */
struct queue_walk {
	struct sk_buff *skb;
	struct sk_buff *head;
	__u64 bytes;
};

static long add_skb(__u32 index, struct queue_walk *walk)
{
	struct sk_buff *skb = walk->skb;
	__u32 consumed = 0;

	if (!skb || skb == walk->head)
		return 1;
	bpf_probe_read_kernel(&consumed, sizeof(consumed),
			      (void *)skb + bpf_core_field_offset(struct sk_buff, cb) +
			      bpf_core_field_offset(struct unix_skb_parms, consumed));
	walk->bytes += BPF_CORE_READ(skb, len) - consumed;
	walk->skb = BPF_CORE_READ(skb, next);
	return 0;
}

static __always_inline __u64 unix_waiting(struct sock *sk, int type)
{
	struct sk_buff *head = (struct sk_buff *)&sk->sk_receive_queue;
	struct sk_buff *first = BPF_CORE_READ(sk, sk_receive_queue.next);
	struct queue_walk walk = { .skb = first, .head = head };

	if (!first || first == head)
		return 0;
	if (type != SOCK_STREAM && type != SOCK_SEQPACKET)
		return BPF_CORE_READ(first, len);
	bpf_loop(1 << 16, add_skb, &walk, 0);
	return walk.bytes;
}

/*
 * A TCP socket's queues as tcp_diag_get_info() gives them to ss: bytes not yet
 * read, bytes not yet acknowledged. The socket the file leads to is a pointer
 * the verifier does not trust, which no helper takes: it is read by plain
 * loads through bpf_rdonly_cast() (6.2 on, compat.h), else by probe reads.
 */
static __always_inline void tcp_queues(struct sock *sk, __u64 *recv_q, __u64 *send_q)
{
	struct tcp_sock *tp;
	int waiting;

	if (has_rdonly_cast()) {
		tp = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct tcp_sock));
		waiting = tp->rcv_nxt - tp->copied_seq;
		*send_q = tp->write_seq - tp->snd_una;
	} else {
		tp = (struct tcp_sock *)sk;
		waiting = BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(tp, copied_seq);
		*send_q = BPF_CORE_READ(tp, write_seq) - BPF_CORE_READ(tp, snd_una);
	}
	*recv_q = waiting > 0 ? waiting : 0;
}

/* Protocol names for inet sockets, as /etc/protocols has them. */
static const struct label protocols[16] = {
	{""}, {"icmp            "}, {"tcp             "}, {"udp             "}, {"icmpv6          "}, {"sctp            "}, {"udplite         "}, {"raw             "}, {"mptcp           "},
};

static __always_inline __u32 put_protocol(struct scratch *s, __u32 at, int family,
					  int protocol)
{
	__u32 name = 0;

	if (family == AF_INET || family == AF_INET6) {
		switch (protocol) {
		case 1: name = 1; break;
		case 6: name = 2; break;
		case 17: name = 3; break;
		case 58: name = 4; break;
		case 132: name = 5; break;
		case 136: name = 6; break;
		case 255: name = 7; break;
		case 262: name = 8; break;
		}
	}
	if (name)
		return put_named(s, at, protocols, name, 15, PROTOCOL_WIDTH);
	return put_named(s, at, protocols, protocol, 0, PROTOCOL_WIDTH);	/* [0] has no name */
}

/* The family, type, protocol and state columns, then the two addresses and the queues. */
static __always_inline __u32 put_socket(struct scratch *s, __u32 at, struct sock *sk, int type)
{
	int family = sk->__sk_common.skc_family;
	int protocol = sk->sk_protocol;
	int state = sk->__sk_common.skc_state;
	/* sk_rmem_alloc_get() and sk_wmem_alloc_get(), unless the family says otherwise */
	__u64 recv_q = sk->sk_backlog.rmem_alloc.counter;
	__u64 send_q = sk->sk_wmem_alloc.refs.counter - 1;

	at = put_named(s, at, families, family, 31, FAMILY_WIDTH);
	at = put_named(s, at, types, type, 15, TYPE_WIDTH);
	if (family == AF_PACKET)	/* the ethertype it takes, in the packet's order */
		at = put_protocol(s, at, family, bpf_ntohs(BPF_CORE_READ((struct packet_sock *)sk, num)));
	else
		at = put_protocol(s, at, family, protocol);
	if (family == AF_NETLINK || family == AF_PACKET)
		state = UNCONNECTED;
	at = put_named(s, at, states, state, 15, STATE_WIDTH);

	if (family == AF_INET || family == AF_INET6) {
		at = put_inet_end(s, at, sk, true, sk->__sk_common.skc_num);
		at = put_byte(s, at, ' ');
		at = put_inet_end(s, at, sk, false, bpf_ntohs(sk->__sk_common.skc_dport));
		if (state == TCP_LISTEN) {
			recv_q = sk->sk_ack_backlog;
			send_q = sk->sk_max_ack_backlog;
		} else if (protocol == IPPROTO_TCP && type == SOCK_STREAM) {
			tcp_queues(sk, &recv_q, &send_q);
		} else if (protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE) {
			recv_q -= BPF_CORE_READ((struct udp_sock *)sk, forward_deficit);
		}
	} else if (family == AF_UNIX) {
		struct unix_sock *u = (struct unix_sock *)sk;

		at = put_unix_ends(s, at, u);
		if (state == TCP_LISTEN) {
			recv_q = sk->sk_receive_queue.qlen;
			send_q = sk->sk_max_ack_backlog;
		} else {
			recv_q = unix_waiting(sk, type);
		}
	} else if (family == AF_NETLINK) {
		struct netlink_sock *nlk = (struct netlink_sock *)sk;

		at = put_decimal(s, at, protocol, 0);
		at = put_byte(s, at, ':');
		at = put_decimal(s, at, BPF_CORE_READ(nlk, portid), 0);
		at = put_byte(s, at, ' ');
		if (sk->__sk_common.skc_state == NETLINK_CONNECTED) {
			at = put_decimal(s, at, BPF_CORE_READ(nlk, dst_group), 0);
			at = put_byte(s, at, ':');
			at = put_decimal(s, at, BPF_CORE_READ(nlk, dst_portid), 0);
		} else {
			at = put_byte(s, at, '*');
		}
	} else if (family == AF_PACKET) {
		struct packet_sock *po = (struct packet_sock *)sk;
		__u16 ethertype = bpf_ntohs(BPF_CORE_READ(po, num));
		int ifindex = BPF_CORE_READ(po, ifindex);

		if (ethertype == ETH_P_ALL) {
			at = put_byte(s, at, '*');
		} else {
			at = put_byte(s, at, '[');
			at = put_decimal(s, at, ethertype, 0);
			at = put_byte(s, at, ']');
		}
		at = put_byte(s, at, ':');
		if (ifindex)
			at = put_device(s, at, sk->__sk_common.skc_net.net, ifindex);
		else
			at = put_byte(s, at, '*');
		at = put_byte(s, at, ' ');
		at = put_byte(s, at, '*');
	} else {
		at = put_byte(s, at, '*');
		at = put_byte(s, at, ' ');
		at = put_byte(s, at, '*');
	}
	at = put_byte(s, at, ' ');
	at = put_decimal(s, at, recv_q, 0);
	at = put_byte(s, at, ' ');
	at = put_decimal(s, at, send_q, 0);
	return put_byte(s, at, ' ');
}

/* The socket's owner as the reader sees it; the last one mapped again at once:
 * a process's sockets have, nearly always, one owner. */
static __always_inline __u32 socket_uid(struct scratch *s, struct session *session,
				       __u64 session_id, struct seq_file *seq, __u32 kuid)
{
	if (s->uid_session != session_id || s->kuid != kuid) {
		s->uid_session = session_id;
		s->uid = from_kuid_munged(walk_user_ns(&session->opened, seq), kuid);
		s->kuid = kuid;
	}
	return s->uid;
}

/*
 * What a task's lines share, found with the decision whether it may be shown
 * (opened.h) and kept while that holds: its tgid column and its comm column.
 */
static __always_inline bool task_columns(struct scratch *s, struct session *session,
					 struct bpf_iter_meta *meta, struct task_struct *task)
{
	struct task_struct *leader;
	long length;
	__u32 end;

	if (task_decided(&s->decided, meta, task))
		return s->decided.shown;
	if (!decide_task(&s->decided, session, meta, task))
		return false;
	put_decimal(s, 0, seen_tgid(&session->opened, task), 8);
	__builtin_memcpy(s->tgid, s->out, sizeof(s->tgid));
	leader = task->group_leader;
	length = leader ? bpf_probe_read_kernel_str(s->name, sizeof(leader->comm), leader->comm) : 0;
	end = put_escaped(s, COMM_AT, length > 0 ? length - 1 : 0, 0);
	end = put_byte(s, end, '\n');
	s->comm_length = end - COMM_AT;
	return true;
}

static const char header[] = "    tgid       fd      netns family   type       protocol state          local remote recv-q send-q inode uid comm\n";

SEC("iter/task_file")
int sockets(struct bpf_iter__task_file *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct seq_file *seq = meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct session *session;
	struct socket *sock;
	struct scratch *s;
	struct sock *sk;
	__u32 at;

	session = session_get(meta);
	if (session && session_wants_header(session, meta, file))
		bpf_seq_write(seq, header, sizeof(header) - 1);
	if (!file) {
		session_end(meta);
		return 0;
	}
	/* A socket's file: not an O_PATH descriptor of one, which ss counts. */
	sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	sk = sock->sk;
	s = scratch();
	if (!sk || !s || !session || !task ||
	    !task_columns(s, session, meta, task))
		return 0;

	__builtin_memcpy(s->out, s->tgid, sizeof(s->tgid));
	at = put_byte(s, 8, ' ');
	at = put_decimal(s, at, ctx->fd, 8);
	at = put_byte(s, at, ' ');
	at = put_decimal(s, at, sk->__sk_common.skc_net.net->ns.inum, 10);
	at = put_byte(s, at, ' ');
	at = put_socket(s, at, sk, sock->type);
	at = put_decimal(s, at, file->f_inode->i_ino, 0);
	at = put_byte(s, at, ' ');
	at = put_decimal(s, at, socket_uid(s, session, meta->session_id, seq, sk->sk_uid.val), 0);
	at = put_byte(s, at, ' ');
	bpf_seq_write(seq, s->out, at & OUT_MASK);
	bpf_seq_write(seq, &s->out[COMM_AT], s->comm_length & 127);
	return 0;
}
