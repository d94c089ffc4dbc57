// SPDX-License-Identifier: GPL-2.0
/*
 * unix: /proc/net/unix, line for line (net/unix/af_unix.c, unix_seq_show).
 *
 * The kernel's unix iterator takes a hash bucket at a time into a batch, and
 * when a read() ends inside a batch it drops the rest, then starts the next
 * read() at the following bucket (bpf_iter_unix_batch trusts st_bucket_done).
 * A read() ends at the first socket after the reader's count is reached, so
 * writing anything before a bucket is left would lose that bucket's sockets.
 *
 * So lines are held, not written, while the walk goes from bucket to bucket;
 * they are written at a flush point, a socket with more of its batch after it.
 * There the rest of the batch is formatted and held too, everything held is
 * written, and the read() is ended at the next socket, which the kernel may
 * then drop: its line is already out. One read() runs in one thread, so what
 * is held lives in per-thread storage. A bucket whose lines exceed what one
 * read() returns cannot be handed over whole: the read() fails with E2BIG
 * rather than return a table with sockets missing.
 */
#include "iterfs.h"
#include "compat.h"
#include "sock.h"
#include "scratch.h"

char LICENSE[] SEC("license") = "GPL";

#define __SO_ACCEPTCON		(1 << 16)
#define NAME_WORDS		((UNIX_PATH_MAX + 1 + 7) / 8)	/* sun_path and a NUL */
/* "%pK: %08X %08X %08X %04X %02X %5lu" is at most 73 bytes and its NUL. */
#define PREFIX_SIZE		96
/* Room kept free for one more line: the prefix, ' ', a name and '\n'. */
#define LINE_ROOM		256
/* What one read() can return: the iterator's seq_file buffer (PAGE_SIZE << 3). */
#define HELD_MAX		32768
#define TEXT_SIZE		(HELD_MAX + LINE_ROOM)

struct scratch {
	__u64 session_id;	/* whose lines are held */
	__u64 next_seq_num;	/* seq_num of the next show in the same read() */
	__u64 flushed_last;	/* last socket of the batch flushed in this read() */
	__u32 length;		/* bytes held in text */
	bool hide_pointers;	/* the reader is not root: see reader_pointer() */
	char text[TEXT_SIZE];
};

PER_THREAD_SCRATCH(struct scratch)

/*
 * The rest of a batch written at a flush point, in case the kernel shows it
 * again in the next read() (as it would if it resumed inside the bucket).
 */
struct resume {
	__u64 skip_from;	/* the socket after the flush point */
	__u64 skip_to;		/* the last socket of that batch */
	__u32 skipping;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct resume);
} resumes SEC(".maps");

/* What sock->state would be, as unix_seq_show derives it. */
static __always_inline int sock_state(struct sock *sk)
{
	bool established = BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_ESTABLISHED;

	if (BPF_CORE_READ(sk, sk_socket))
		return established ? SS_CONNECTED : SS_UNCONNECTED;
	return established ? SS_CONNECTING : SS_DISCONNECTING;
}

/*
 * Holds " name" as /proc prints it at text[at]; returns its length, or 0.
 * The address length decides how many bytes, not a NUL, since abstract names
 * may hold NULs and need no terminator. Every NUL, the leading one of an
 * abstract name included, is printed as '@'.
 */
static __always_inline __u32 hold_name(struct scratch *s, __u32 at, struct unix_address *addr)
{
	__u64 name[NAME_WORDS] = {};
	int length = BPF_CORE_READ(addr, len) - (int)offsetof(struct sockaddr_un, sun_path);

	/* A path's length counts its terminating NUL. */
	if (length <= 0 || length > UNIX_PATH_MAX + 1)
		return 0;
	if (bpf_probe_read_kernel(name, length, &addr->name[0].sun_path))
		return 0;
	if (((char *)name)[0])
		length--;
	if (length > UNIX_PATH_MAX)
		return 0;

	/* A byte is NUL when adding 0x7f to its low seven bits leaves bit 7 clear. */
	for (int i = 0; i < NAME_WORDS; i++) {
		__u64 low = 0x7f7f7f7f7f7f7f7fULL;
		__u64 word = name[i];
		__u64 nul = ~(((word & low) + low) | word | low);

		name[i] = word | (nul >> 7) * '@';
	}
	if (at > HELD_MAX + PREFIX_SIZE)
		return 0;
	at = bounded(at, HELD_MAX + PREFIX_SIZE);
	s->text[at] = ' ';
	bpf_probe_read_kernel(&s->text[at + 1], length, name);
	return length + 1;
}

/*
 * Appends the socket's line to what is held; false if there is no room. Each
 * write at a computed place in s->text is bounded() where it is made, after
 * the check that returns: for verifiers before 6.9 (see compat.h).
 */
static bool hold_line(struct scratch *s, struct unix_sock *u)
{
	struct sock *sk = &u->sk;
	struct unix_address *addr;
	__u32 at = s->length;
	long n;

	if (at > HELD_MAX)
		return false;
	n = BPF_SNPRINTF(&s->text[bounded(at, HELD_MAX)], PREFIX_SIZE,
			 "%pK: %08X %08X %08X %04X %02X %5lu",
			 s->hide_pointers ? NULL : sk,
			 BPF_CORE_READ(sk, __sk_common.skc_refcnt.refs.counter) - ITERATOR_REF,
			 0, BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_LISTEN ? __SO_ACCEPTCON : 0,
			 BPF_CORE_READ(sk, sk_type), sock_state(sk), sock_inode(sk));
	if (n <= 1 || n > PREFIX_SIZE)
		return false;
	at += n - 1;
	addr = BPF_CORE_READ(u, addr);
	if (addr)
		at += hold_name(s, at, addr);
	if (at > HELD_MAX + LINE_ROOM - 1)
		return false;
	at = bounded(at, HELD_MAX + LINE_ROOM - 1);
	s->text[at] = '\n';
	s->length = at + 1;
	return true;
}

/* Writes what is held; false if it does not fit in what this read() has left. */
static __always_inline bool write_held(struct seq_file *seq, struct scratch *s)
{
	__u32 length = s->length;

	s->length = 0;
	/* seq_write() needs one byte more than it writes. */
	if (length > HELD_MAX || length >= seq->size - seq->count)
		return false;
	bpf_seq_write(seq, s->text, length);
	return true;
}

/* Something to write that is larger than any iterator buffer (32 KiB here). */
static char overflow[TEXT_SIZE];

/*
 * Writing more than the buffer holds makes the kernel drop this show's output
 * and end the read() here, or fail it with E2BIG if nothing was written yet.
 */
static __always_inline void end_read(struct seq_file *seq, struct scratch *s)
{
	if (s)
		s->length = 0;
	for (int i = 0; i < 16; i++)
		if (bpf_seq_write(seq, overflow, sizeof(overflow)))
			break;
}

struct batch_walk {
	struct sock **batch;
	__u32 from;
	__u32 to;
	bool full;
};

static long hold_batch_socket(__u32 index, struct batch_walk *walk)
{
	struct scratch *s = scratch();
	struct sock *sk = NULL;

	if (!s || walk->from + index >= walk->to)
		return 1;
	bpf_probe_read_kernel(&sk, sizeof(sk), &walk->batch[walk->from + index]);
	/* Gone from the table since it was batched: the kernel would skip it too. */
	if (!sk || !BPF_CORE_READ(sk, __sk_common.skc_node.pprev))
		return 0;
	if (!hold_line(s, (struct unix_sock *)sk)) {
		walk->full = true;
		return 1;
	}
	return 0;
}

/* True for a socket already written at a flush point and shown again. */
static __always_inline bool written_before(struct resume *r, __u64 sk, __u32 cur_sk)
{
	if (!r->skip_from)
		return false;
	if (cur_sk == 0)	/* a new batch: the one resumed at skip_from, or another */
		r->skipping = sk == r->skip_from;
	if (!r->skipping) {
		r->skip_from = 0;
		return false;
	}
	if (sk == r->skip_to)
		r->skip_from = 0;
	return true;
}

SEC("iter/unix")
int unix(struct bpf_iter__unix *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct unix_sock *u = ctx->unix_sk;
	struct seq_file *seq = meta->seq;
	struct session *session = session_get(meta);
	__u64 session_id = meta->session_id;
	struct bpf_unix_iter_state *state;
	struct batch_walk walk = {};
	struct resume *r;
	struct scratch *s;
	__u32 cur_sk, end_sk;
	__u64 last = 0;

	s = scratch();
	if (!session || !s) {
		end_read(seq, s);
		return 0;
	}
	/* Lines held by an earlier read() that did not end as planned are not ours. */
	if (s->session_id != session_id ||
	    s->next_seq_num != (u ? meta->seq_num : meta->seq_num + 1)) {
		s->session_id = session_id;
		s->length = 0;
		s->hide_pointers = !reader_pointer(seq, s);
	}
	s->next_seq_num = meta->seq_num + 1;

	/* Not session_wants_header: this target's final call has seq_num -1, not 0. */
	if (!session->header_done) {
		long n = BPF_SNPRINTF(s->text, LINE_ROOM, "Num       RefCount Protocol Flags    "
				      "Type St Inode Path\n");

		s->length = n > 0 ? n - 1 : 0;
		session->header_done = 1;
	}

	if (!u) {
		if (!write_held(seq, s)) {
			end_read(seq, s);
			return 0;
		}
		session_end(meta);
		bpf_map_delete_elem(&resumes, &session_id);
		return 0;
	}

	/* An iterator that does not batch resumes where it stopped: write at once. */
	if (!unix_iter_batches()) {
		if (!hold_line(s, u) || !write_held(seq, s))
			end_read(seq, s);
		return 0;
	}

	state = seq->private;
	cur_sk = BPF_CORE_READ(state, cur_sk);
	end_sk = BPF_CORE_READ(state, end_sk);
	walk.batch = BPF_CORE_READ(state, batch);
	if (end_sk > 0)
		bpf_probe_read_kernel(&last, sizeof(last), &walk.batch[end_sk - 1]);

	if (seq->count > 0) {
		/* After this read()'s flush point: end it inside the batch flushed. */
		if (last == s->flushed_last) {
			end_read(seq, s);
			return 0;
		}
		/*
		 * The rest of that batch was closed meanwhile and the walk went on:
		 * this batch's lines go out now if they fit.
		 */
	} else {
		r = bpf_map_lookup_elem(&resumes, &session_id);
		if (r && written_before(r, (__u64)u, cur_sk))
			return 0;
	}

	if (cur_sk + 1 >= end_sk && seq->count == 0) {
		/* The last of its batch: hold it until a flush point. */
		if (!hold_line(s, u))
			end_read(seq, s);
		return 0;
	}

	/*
	 * A flush point. When the kernel has the whole bucket batched, it drops the
	 * rest of the batch at the end of this read(), so that rest is held too.
	 */
	walk.from = cur_sk;
	walk.to = BPF_CORE_READ(state, st_bucket_done) ? end_sk : cur_sk + 1;
	bpf_loop(walk.to - walk.from, hold_batch_socket, &walk, 0);
	if (walk.full || !write_held(seq, s)) {
		end_read(seq, s);
		return 0;
	}
	s->flushed_last = last;
	if (walk.to == end_sk && cur_sk + 1 < end_sk) {
		struct resume resume = {};

		bpf_probe_read_kernel(&resume.skip_from, sizeof(resume.skip_from),
				      &walk.batch[cur_sk + 1]);
		resume.skip_to = last;
		bpf_map_update_elem(&resumes, &session_id, &resume, BPF_ANY);
	}
	return 0;
}
