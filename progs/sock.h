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

#endif /* ITERFS_SOCK_H */
