/* SPDX-License-Identifier: GPL-2.0 */
/* Socket fields that the /proc/net files print, read as the kernel reads them. */
#ifndef ITERFS_SOCK_H
#define ITERFS_SOCK_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include "compat.h"

/*
 * A socket's address as %pK prints it for the reader: iterfs creates a reader's
 * iterator with the reader's credentials (uid, gid and no capability the reader
 * lacks), so the iterator file's f_cred is theirs. A reader with CAP_SYSLOG sees
 * what /proc shows root; anyone else zeros (what /proc shows them with
 * kptr_restrict >= 1: with 0, /proc shows a hashed value).
 */
static __always_inline const void *reader_pointer(struct seq_file *seq, const void *pointer)
{
	return cred_capable(BPF_CORE_READ(seq, file, f_cred), CAP_SYSLOG) ? pointer : NULL;
}

/* The tcp and unix iterators hold a reference on the socket shown; /proc holds none. */
#define ITERATOR_REF 1

/* 6.18 keeps the inode number in the sock; before, only the socket's inode had it. */
struct sock___sk_ino {
	unsigned long sk_ino;
} __attribute__((preserve_access_index));

/* 6.18 may count drops in per-NUMA-node halves outside the sock. */
struct numa_drop_counters___sk_drops {
	atomic_t drops0;
	atomic_t drops1;
} __attribute__((preserve_access_index));

struct sock___sk_drops {
	struct numa_drop_counters___sk_drops *sk_drop_counters;
} __attribute__((preserve_access_index));

/* sock_i_ino(). SOCK_INODE() before 6.18: kernel sockets have an inode, no file. */
static __always_inline unsigned long sock_inode(struct sock *sk)
{
	struct sock___sk_ino *with_ino = (void *)sk;
	struct socket *sock;

	if (bpf_core_field_exists(with_ino->sk_ino))
		return BPF_CORE_READ(with_ino, sk_ino);
	sock = BPF_CORE_READ(sk, sk_socket);
	if (!sock)
		return 0;
	return BPF_CORE_READ(container_of(sock, struct socket_alloc, socket), vfs_inode.i_ino);
}

/* sk_drops_read() */
static __always_inline unsigned int sock_drops(struct sock *sk)
{
	struct sock___sk_drops *with_counters = (void *)sk;
	struct numa_drop_counters___sk_drops *counters = NULL;

	if (bpf_core_field_exists(with_counters->sk_drop_counters))
		counters = BPF_CORE_READ(with_counters, sk_drop_counters);
	if (counters)
		return BPF_CORE_READ(counters, drops0.counter) +
		       BPF_CORE_READ(counters, drops1.counter);
	return BPF_CORE_READ(sk, sk_drops.counter);
}

#endif /* ITERFS_SOCK_H */
