/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel's constants that views use and BTF does not carry (they are
 * #defines, so vmlinux.h has none of them), each defined here once, with the
 * header it comes from. Values of the kernel's ABI, the same on every kernel:
 * what changes from one kernel to another is read at load time (compat.h).
 */
#ifndef ITERFS_CONSTANTS_H
#define ITERFS_CONSTANTS_H

/* include/linux/socket.h */
#define AF_UNIX		1
#define AF_INET		2
#define AF_INET6	10
#define AF_NETLINK	16
#define AF_PACKET	17

/* include/uapi/linux/un.h */
#define UNIX_PATH_MAX	108

/* include/vdso/time64.h; include/asm-generic/param.h */
#define NSEC_PER_SEC	1000000000ULL
#define USER_HZ		100

/* include/uapi/linux/capability.h */
#define CAP_SYS_PTRACE	19
#define CAP_SYSLOG	34

#endif /* ITERFS_CONSTANTS_H */
