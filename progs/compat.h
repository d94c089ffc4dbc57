/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Compatibility shims: what the views read differently from one kernel to
 * another, kept in one place the way libbpf-tools keeps core_fixes.bpf.h.
 * Each shim names the kernel change it bridges (the release, the commit, what
 * changed) and picks its branch with CO-RE, so one object loads on every
 * kernel: libbpf settles the test at load time and the verifier never walks
 * the branch the running kernel cannot take.
 *
 * One section per view or header that needs shims, each under its own include
 * guard, so sections can be added anywhere in the file independently.
 */

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "constants.h"

/* ==== udp, udp6: the kernel's UDP table and its iterator (udp_table.h) ==== */
#ifndef ITERFS_COMPAT_UDP
#define ITERFS_COMPAT_UDP

/*
 * 6.2, 67fb43308f4b ("udp: Set NULL to sk->sk_prot->h.udp_table.") and
 * 478aee5d6bf6 ("udp: Set NULL to udp_seq_afinfo.udp_table."): a network
 * namespace finds its UDP table at net->ipv4.udp_table (its own, or the global
 * one when it has none), and /proc and the udp iterator walk that table.
 * Before, there is one table, the global udp_table, shared by all namespaces:
 * /proc and the iterator walk it and skip other namespaces' sockets, and the
 * iterator finds it at its udp_iter_state's bpf_seq_afinfo->udp_table (a
 * field e4fe1bf13e09, "udp: seq_file: Remove bpf_seq_afinfo from
 * udp_iter_state", 6.5, removed; from 6.2 to 6.4 it holds NULL there).
 */
struct netns_ipv4___udp_table {
	struct udp_table *udp_table;
} __attribute__((preserve_access_index));

struct net___udp_table {
	struct netns_ipv4___udp_table ipv4;
} __attribute__((preserve_access_index));

struct udp_iter_state___afinfo {
	struct udp_seq_afinfo *bpf_seq_afinfo;
} __attribute__((preserve_access_index));

/* The table the udp iterator of `seq` walks, in the namespace `net` it shows. */
static __always_inline struct udp_table *udp_iter_table(struct seq_file *seq, struct net *net)
{
	struct net___udp_table *netns = (void *)net;
	struct udp_iter_state___afinfo *state;

	if (bpf_core_field_exists(netns->ipv4.udp_table))
		return BPF_CORE_READ(netns, ipv4.udp_table);
	state = (void *)BPF_CORE_READ(seq, private);
	return BPF_CORE_READ(state, bpf_seq_afinfo, udp_table);
}

/*
 * 6.5, c96dac8d369f ("bpf: udp: Implement batching for sockets iterator"):
 * the iterator takes a slot of udp_table->hash2 at a time into a batch and
 * holds a reference on each socket of it until the socket is shown (until
 * then, batch[cur_sk, end_sk) are sockets), and a read() goes on from the slot
 * where the last one stopped. Before, it walks udp_table->hash holding the
 * slot's lock instead, no reference, and a read() finds its place again by
 * counting seq->index sockets from the table's start (udp_seq_start(),
 * udp_get_idx()): so the read() after the last socket, the one that should
 * return 0, finds sockets again if the table grew meanwhile, and the program
 * is called for them after its final call.
 */
struct bpf_udp_iter_state___batch {
	unsigned int cur_sk;
	unsigned int end_sk;
	void *batch;
} __attribute__((preserve_access_index));

/* Whether the udp iterator batches (6.5 on). */
#define udp_iter_batches() bpf_core_type_exists(struct bpf_udp_iter_state___batch)

/*
 * Where the udp iterator holds references, the sockets of its batch still to
 * be shown: *first and *count (count 0 where it holds none).
 */
static __always_inline void udp_iter_held(struct seq_file *seq, __u64 *first, __u32 *count)
{
	struct bpf_udp_iter_state___batch *state;
	__u32 cur, end;

	*first = 0;
	*count = 0;
	if (!udp_iter_batches())
		return;
	state = (void *)BPF_CORE_READ(seq, private);
	cur = BPF_CORE_READ(state, cur_sk);
	end = BPF_CORE_READ(state, end_sk);
	if (cur < end) {
		*first = (__u64)BPF_CORE_READ(state, batch) + cur * sizeof(__u64);
		*count = end - cur;
	}
}

/*
 * 6.2, a35b9af4ec2c ("bpf: Add a kfunc for generic type cast"): with
 * bpf_rdonly_cast(), a socket the walk finds by its address is read by plain
 * loads. Without it, every field is read with bpf_probe_read_kernel()
 * (BPF_CORE_READ): the same lines, about a tenth slower.
 *
 * The kfunc is __weak, and so 6.1 loads the object: declared plain __ksym, it
 * failed there ("extern (func ksym) 'bpf_rdonly_cast': not found in kernel or
 * module BTFs", EINVAL). libbpf leaves the call of a missing weak kfunc
 * unresolved (1.1: BTF id 0), which the verifier accepts as long as it never
 * gets there, and removes as dead code (since 5.16, a5d827275241, "bpf: Be
 * conservative while processing invalid kfunc calls"). Whether the kernel has
 * the kfunc is not asked with bpf_ksym_exists(), whose load of the kfunc's
 * address kernels before 6.4 refuse even in dead code (58aa2afbb1e6, "bpf:
 * Allow ld_imm64 instruction to point to kfunc."), but with CO-RE: the
 * verifier's own list of the kfuncs it handles itself, enum
 * special_kfunc_type, has had KF_bpf_rdonly_cast since a35b9af4ec2c. A kernel
 * whose BTF lacks that name only gets the slower branch.
 */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

enum special_kfunc_type___rdonly_cast {
	KF_bpf_rdonly_cast___rdonly_cast,
};

#define has_rdonly_cast()							\
	bpf_core_enum_value_exists(enum special_kfunc_type___rdonly_cast,	\
				   KF_bpf_rdonly_cast___rdonly_cast)

#endif /* ITERFS_COMPAT_UDP */


/* ==== task_vma: /proc/<pid>/maps (task_vma.bpf.c) ==== */
#ifndef ITERFS_COMPAT_TASK_VMA
#define ITERFS_COMPAT_TASK_VMA

extern unsigned int LINUX_KERNEL_VERSION __kconfig;

/*
 * prctl(PR_SET_VMA_ANON_NAME) names, set only with CONFIG_ANON_VMA_NAME.
 * From 5.17 to 6.1, vma->anon_name is there whatever the config, in a union
 * with vma->shared, the i_mmap tree node of file VMAs: it is a name only for
 * a VMA without vm_file (anon_vma_name() returns NULL for the others), and a
 * file VMA is never named (read anyway, it is a tree pointer: Debian's 6.1
 * printed [anon_shmem:<garbage>] for every mapped file). 6.2, "mm: anonymous
 * shared memory naming": a field of its own, only with CONFIG_ANON_VMA_NAME,
 * and a shared anonymous (shmem) VMA, which has a vm_file, can be named:
 * /proc prints it as [anon_shmem:NAME].
 */
struct vm_area_struct___anon_name {
	struct anon_vma_name *anon_name;
} __attribute__((preserve_access_index));

/* The name anon_vma_name() gives `vma`, NULL where it has none. */
static __always_inline const char *vma_anon_name(struct vm_area_struct *vma, bool has_file)
{
	struct vm_area_struct___anon_name *named = (void *)vma;
	__u32 at, shared, shared_size;
	struct anon_vma_name *anon_name;

	if (!bpf_core_field_exists(named->anon_name))
		return NULL;
	at = bpf_core_field_offset(named->anon_name);
	shared = bpf_core_field_offset(vma->shared);
	shared_size = bpf_core_field_size(vma->shared);
	if (has_file && at >= shared && at < shared + shared_size)
		return NULL;	/* before 6.2: the union holds vma->shared */
	anon_name = BPF_CORE_READ(named, anon_name);
	if (!anon_name)
		return NULL;
	return (const char *)anon_name + bpf_core_field_offset(struct anon_vma_name, name);
}

/*
 * 6.7, "mm: fix VMA heap bounds checking" (vma_is_initial_heap()): [heap] is a
 * VMA that overlaps [start_brk, brk). Before (show_map_vma() since 3.x, then
 * vma_is_initial_heap() from 6.6), one that touches it counts too: the VMA
 * right after brk, or every VMA that ends at start_brk while the heap is empty.
 * A 6.6.y stable kernel may carry the fix; the version does not tell.
 */
static __always_inline bool vma_is_initial_heap(unsigned long vm_start, unsigned long vm_end,
						unsigned long start_brk, unsigned long brk)
{
	if (LINUX_KERNEL_VERSION >= KERNEL_VERSION(6, 7, 0))
		return vm_start < brk && vm_end > start_brk;
	return vm_start <= brk && vm_end >= start_brk;
}

/*
 * Backing files: a file mapped through overlayfs (or a FUSE passthrough) is
 * mapped as the file of the filesystem below, allocated inside a struct
 * backing_file (alloc_empty_backing_file()), which /proc/<pid>/maps tells by
 * FMODE_BACKING in f_mode. FMODE_BACKING is a macro: its bit is not in BTF.
 * - 6.5, "fs: use backing_file container for internal files with "fake"
 *   f_path": struct backing_file; FMODE_BACKING is 0x2000000 (bit 25). f_path
 *   is still the path the user opened (backing_file->real_path the one below)
 *   and /proc shows f_path and file_inode(): the plain rule, nothing to do.
 * - 6.7, def3ae83da02 ("fs: store real path instead of fake path in backing
 *   file f_path"): f_path is the path below, the user's is
 *   backing_file->user_path, and /proc shows that one (08582d678fcf, "fs:
 *   create helper file_user_path() for user displayed mapped file path"), with
 *   file_inode() still. CO-RE tells these kernels by the field user_path.
 * - 6.8, "fs/proc: show correct device and inode numbers in /proc/pid/maps":
 *   /proc shows the user path's inode too (file_user_inode()).
 * - 6.14, "fsnotify: opt-in for permission events at file open time": bit 24
 *   (bit 25 goes to FMODE_NONOTIFY). Stable 6.12.105 took that commit too
 *   (Debian's 6.12 changelog; 6.12.118's fs.h has bit 24). No other series
 *   from 6.7 to 6.13 is maintained.
 * Every backing file also has FMODE_NOACCOUNT (bit 29 wherever there are any),
 * which only a few internal opens share: both bits must be set.
 */
#define FMODE_NOACCOUNT (1U << 29)

static __always_inline __u32 fmode_backing(void)
{
	if (LINUX_KERNEL_VERSION >= KERNEL_VERSION(6, 14, 0) ||
	    (LINUX_KERNEL_VERSION >= KERNEL_VERSION(6, 12, 105) &&
	     LINUX_KERNEL_VERSION < KERNEL_VERSION(6, 13, 0)))
		return 1U << 24;
	return 1U << 25;
}

/* Whether /proc shows `file` by its backing_file->user_path: file_user_path(). */
static __always_inline bool file_has_user_path(struct file *file)
{
	__u32 mode, backing;

	if (!bpf_core_field_exists(struct backing_file, user_path))
		return false;	/* before 6.7 */
	backing = fmode_backing() | FMODE_NOACCOUNT;
	mode = BPF_CORE_READ(file, f_mode);
	return (mode & backing) == backing;
}

/* Whether /proc shows the inode of that user path too: file_user_inode(). */
static __always_inline bool maps_show_user_inode(void)
{
	return LINUX_KERNEL_VERSION >= KERNEL_VERSION(6, 8, 0);
}

#endif /* ITERFS_COMPAT_TASK_VMA */

/* ==== unix: /proc/net/unix (unix.bpf.c) ==== */
#ifndef ITERFS_COMPAT_UNIX
#define ITERFS_COMPAT_UNIX

/*
 * Until 6.9 (8ecfc371d829, "bpf: Assign ID to scalars on spill"), what
 * the verifier learns from a check binds the register checked, not a copy of
 * the value the compiler spilled to the stack before the check: the copy,
 * filled back for the access, is as wide as its type, and the access fails
 * with "R1 unbounded memory access" (6.1 does so at bpf_snprintf(), in
 * hold_line()). bounded() is the check done where the value is used: it hides
 * the value from the compiler, which can then neither drop the check as
 * already done nor check a copy, and returns it unchanged when it is at most
 * `max` (the caller's own check has made sure of that), `max` otherwise.
 */
static __always_inline __u64 bounded(__u64 value, __u64 max)
{
	barrier_var(value);
	return value <= max ? value : max;
}

/*
 * 6.0, "bpf: af_unix: Use batching algorithm in bpf unix iter.": the
 * iterator takes a hash bucket's sockets into a batch
 * (struct bpf_unix_iter_state) and a read() goes on from the bucket where the
 * last stopped. Before, a read() finds its place again by position.
 */
#define unix_iter_batches() bpf_core_type_exists(struct bpf_unix_iter_state)

#endif /* ITERFS_COMPAT_UNIX */

/* ==== the reader's credentials: what an iterator's file may show (sock.h) ==== */
#ifndef ITERFS_COMPAT_CRED
#define ITERFS_COMPAT_CRED

/*
 * 6.3, f122a08b197d ("capability: just use a 'u64' instead of a 'u32[2]'
 * array"): kernel_cap_t is one u64, `val`. Before, two u32 words, `cap[]`.
 */
struct kernel_cap_struct___u32 {
	__u32 cap[2];
} __attribute__((preserve_access_index));

struct cred___u32 {
	struct kernel_cap_struct___u32 cap_effective;
} __attribute__((preserve_access_index));

/* Whether `cred` holds capability `cap` (a constant) in its effective set. */
static __always_inline bool cred_capable(const struct cred *cred, int cap)
{
	const struct cred___u32 *old = (const void *)cred;

	if (bpf_core_field_exists(cred->cap_effective.val))
		return BPF_CORE_READ(cred, cap_effective.val) >> cap & 1;
	return BPF_CORE_READ(old, cap_effective.cap[cap >> 5]) >> (cap & 31) & 1;
}

#define MMF_DUMPABLE_MASK	3
#define SUID_DUMP_USER		1

/*
 * 6.18, mm_flags_t (the mm_flags_*() accessors series): mm_struct.flags is a
 * bitmap, whose first word holds the bits the unsigned long `flags` held
 * before, the dumpable mode (MMF_DUMPABLE_MASK) among them.
 */
struct mm_flags___bitmap {
	unsigned long __mm_flags[1];
} __attribute__((preserve_access_index));

struct mm_struct___bitmap {
	struct mm_flags___bitmap flags;
} __attribute__((preserve_access_index));

struct mm_struct___word {
	unsigned long flags;
} __attribute__((preserve_access_index));

/* get_dumpable(): SUID_DUMP_USER for a task without an mm, which nothing restricts. */
static __always_inline unsigned long mm_dumpable(struct mm_struct *mm)
{
	struct mm_struct___bitmap *bitmap = (void *)mm;
	struct mm_struct___word *word = (void *)mm;

	if (!mm)
		return SUID_DUMP_USER;
	if (bpf_core_field_exists(bitmap->flags.__mm_flags))
		return BPF_CORE_READ(bitmap, flags.__mm_flags[0]) & MMF_DUMPABLE_MASK;
	return BPF_CORE_READ(word, flags) & MMF_DUMPABLE_MASK;
}

#endif /* ITERFS_COMPAT_CRED */

/* ==== task: /proc/<pid>/task/<tid>/stat and status (task.bpf.c) ==== */
#ifndef ITERFS_COMPAT_TASK
#define ITERFS_COMPAT_TASK

/*
 * 5.14, 2f064a59a11f ("sched: Change task_struct::state"): the task's state
 * word is __state, an unsigned int. Before, `state`, a long.
 */
struct task_struct___state {
	long state;
} __attribute__((preserve_access_index));

static __always_inline unsigned int task_state(struct task_struct *task)
{
	if (bpf_core_field_exists(task->__state))
		return task->__state;
	return BPF_CORE_READ((struct task_struct___state *)task, state);
}

/*
 * 5.16, bcf9033e5449 ("sched: move CPU field back into thread_info if
 * THREAD_INFO_IN_TASK=y"):
 * task_cpu() reads thread_info.cpu. Before, task->cpu.
 */
struct task_struct___cpu {
	unsigned int cpu;
} __attribute__((preserve_access_index));

struct thread_info___cpu {
	__u32 cpu;
} __attribute__((preserve_access_index));

static __always_inline int task_cpu(struct task_struct *task)
{
	struct thread_info___cpu *info = (void *)&task->thread_info;

	if (bpf_core_field_exists(info->cpu))
		return info->cpu;
	return BPF_CORE_READ((struct task_struct___cpu *)task, cpu);
}

/*
 * 5.17, "kthread: Generalize pf_io_worker so it can point to struct kthread":
 * a kernel thread's struct kthread is task->worker_private. Before, it was kept
 * in task->set_child_tid.
 */
struct task_struct___set_child_tid {
	int *set_child_tid;
} __attribute__((preserve_access_index));

static __always_inline void *kthread_of(struct task_struct *task)
{
	if (bpf_core_field_exists(task->worker_private))
		return BPF_CORE_READ(task, worker_private);
	return BPF_CORE_READ((struct task_struct___set_child_tid *)task, set_child_tid);
}

/*
 * 5.17, d6986ce24fc0 ("kthread: dynamically allocate memory to store
 * kthread's full name"): a
 * kernel thread whose name is longer than comm keeps it whole in
 * kthread->full_name. Before, only comm: NULL.
 */
static __always_inline const char *kthread_full_name(struct kthread *kthread)
{
	if (!bpf_core_field_exists(struct kthread, full_name))
		return NULL;
	return BPF_CORE_READ(kthread, full_name);
}

/*
 * 6.2, f1a7941243c1 ("mm: convert mm's rss stats into percpu_counter"):
 * mm->rss_stat[] are percpu_counters, whose count get_mm_counter() reads
 * (percpu_counter_read_positive()). Before, atomic counters in
 * mm->rss_stat.count[], read as they are, clamped at 0 (the threads' own caches
 * are not added, in /proc neither).
 */
struct mm_rss_stat___atomic {
	long count[4];
} __attribute__((preserve_access_index));

struct mm_struct___atomic_rss {
	struct mm_rss_stat___atomic rss_stat;
} __attribute__((preserve_access_index));

static __always_inline __u64 mm_rss_atomic(struct mm_struct *mm)
{
	struct mm_struct___atomic_rss *old = (void *)mm;
	long counts[NR_MM_COUNTERS] = {};
	__u64 rss = 0;

	if (bpf_probe_read_kernel(counts, sizeof(counts),
				  (void *)mm + bpf_core_field_offset(old->rss_stat)))
		return 0;
	for (int member = 0; member < NR_MM_COUNTERS; member++)
		if (member != MM_SWAPENTS && counts[member] > 0)
			rss += counts[member];
	return rss;
}

/* get_mm_rss(mm) */
static __always_inline __u64 mm_rss(struct mm_struct *mm)
{
	__u64 rss = 0;
	__s64 count;
	int member;

	if (bpf_core_type_exists(struct mm_rss_stat___atomic))
		return mm_rss_atomic(mm);
	for (member = 0; member < NR_MM_COUNTERS; member++) {
		if (member == MM_SWAPENTS)
			continue;
		count = mm->rss_stat[member].count;	/* percpu_counter_read_positive */
		if (count > 0)
			rss += count;
	}
	return rss;
}

#endif /* ITERFS_COMPAT_TASK */

/* ==== sockets: what /proc/net prints of every socket (sock.h) ==== */
#ifndef ITERFS_COMPAT_SOCK
#define ITERFS_COMPAT_SOCK

/*
 * 6.18: the sock keeps its inode number, sk->sk_ino, which sock_i_ino()
 * reads. Before, SOCK_INODE(sk->sk_socket)->i_ino; kernel sockets
 * have an inode, no file.
 */
struct sock___sk_ino {
	unsigned long sk_ino;
} __attribute__((preserve_access_index));

/* sock_i_ino() */
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

/*
 * 6.18, struct numa_drop_counters: a socket may count its drops in two halves outside the sock,
 * sk->sk_drop_counters, which sk_drops_read() adds up. Before, and for a socket
 * without them, the atomic sk->sk_drops.
 */
struct numa_drop_counters___sk_drops {
	atomic_t drops0;
	atomic_t drops1;
} __attribute__((preserve_access_index));

struct sock___sk_drops {
	struct numa_drop_counters___sk_drops *sk_drop_counters;
} __attribute__((preserve_access_index));

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

#endif /* ITERFS_COMPAT_SOCK */

/* ==== tcp, tcp6: /proc/net/tcp and tcp6 (tcp.h) ==== */
#ifndef ITERFS_COMPAT_TCP
#define ITERFS_COMPAT_TCP

/*
 * 6.14: icsk->icsk_timeout is gone, the retransmit timer's own expires holds
 * the deadline. Before, the deadline was that field of its own.
 */
struct inet_connection_sock___icsk_timeout {
	unsigned long icsk_timeout;
} __attribute__((preserve_access_index));

static __always_inline unsigned long retransmit_deadline(struct inet_connection_sock *icsk)
{
	struct inet_connection_sock___icsk_timeout *old = (void *)icsk;

	if (bpf_core_field_exists(old->icsk_timeout))
		return BPF_CORE_READ(old, icsk_timeout);
	return icsk->icsk_retransmit_timer.expires;
}

/*
 * 6.18, keepalive on sk_timer: before, the keepalive timer is a field of the
 * connection socket (icsk_keepalive_timer, in a union with MPTCP's
 * mptcp_tout_timer), sk_timer stays idle for TCP, and /proc reads the field.
 * 6.18 has no such field and runs keepalive on sk_timer.
 */
struct inet_connection_sock___icsk_keepalive_timer {
	struct timer_list icsk_keepalive_timer;
} __attribute__((preserve_access_index));

static __always_inline struct timer_list *keepalive_timer(struct inet_connection_sock *icsk)
{
	struct inet_connection_sock___icsk_keepalive_timer *old = (void *)icsk;

	if (bpf_core_field_exists(old->icsk_keepalive_timer))
		return __builtin_preserve_access_index(&old->icsk_keepalive_timer);
	return &icsk->icsk_inet.sk.sk_timer;
}

/*
 * The threshold of inet_csk_in_pingpong_mode(), which /proc's `quick` column
 * tests icsk_ack.pingpong against. It was the #define TCP_PINGPONG_THRESH:
 * 5.1, 4a41f453bedf ("tcp: change pingpong threshold to 3"), made it 3, and
 * 5.19, 4d8f24eeedc5 (its revert, taken by the stable series too, 5.15.58
 * among them), 1 again. 6.5, "tcp: Make pingpong threshold tunable": it is the
 * network namespace's sysctl net.ipv4.tcp_pingpong_thresh (1 unless set),
 * netns_ipv4.sysctl_tcp_pingpong_thresh, read here with CO-RE where it exists.
 * Where it does not, the #define is 1: BTF cannot tell a kernel from 5.1 to
 * 5.18 without the stable revert (3), nor can anything else a program reads,
 * and every kernel iterfs is tested on (6.1 and later) has 1 or the field.
 */
#define TCP_PINGPONG_THRESH	1	/* since 4d8f24eeedc5, where not a sysctl */

struct netns_ipv4___pingpong_thresh {
	__u8 sysctl_tcp_pingpong_thresh;
} __attribute__((preserve_access_index));

struct net___pingpong_thresh {
	struct netns_ipv4___pingpong_thresh ipv4;
} __attribute__((preserve_access_index));

static __always_inline __u8 tcp_pingpong_thresh(struct sock *sk)
{
	struct net___pingpong_thresh *net;

	if (!bpf_core_field_exists(struct netns_ipv4___pingpong_thresh, sysctl_tcp_pingpong_thresh))
		return TCP_PINGPONG_THRESH;
	net = (void *)BPF_CORE_READ(sk, __sk_common.skc_net.net);
	return BPF_CORE_READ(net, ipv4.sysctl_tcp_pingpong_thresh);
}

#endif /* ITERFS_COMPAT_TCP */


/* ==== bpf_link: the links loaded (bpf_link.bpf.c) ==== */
#ifndef ITERFS_COMPAT_BPF_LINK
#define ITERFS_COMPAT_BPF_LINK

/*
 * 6.17: struct bpf_link holds the attach type of every link (the July 2025
 * series that gave bpf_link an attach_type field). Before, only the link types
 * that have one keep it, each in its own struct: bpf_tracing_link->attach_type,
 * bpf_cgroup_link->type, bpf_netns_link->type.
 */
struct bpf_link___attach_type {
	enum bpf_attach_type attach_type;
} __attribute__((preserve_access_index));

struct bpf_tracing_link___own_attach_type {
	enum bpf_attach_type attach_type;
} __attribute__((preserve_access_index));

struct bpf_cgroup_link___own_attach_type {
	enum bpf_attach_type type;
} __attribute__((preserve_access_index));

struct bpf_netns_link___own_attach_type {
	enum bpf_attach_type type;
} __attribute__((preserve_access_index));

#define link_has_attach_type() \
	bpf_core_field_exists(struct bpf_link___attach_type, attach_type)
#define link_attach_type(link) \
	BPF_CORE_READ((struct bpf_link___attach_type *)(link), attach_type)
/* Before 6.17, by the link's type. */
#define tracing_link_attach_type(link) \
	BPF_CORE_READ((struct bpf_tracing_link___own_attach_type *)(link), attach_type)
#define cgroup_link_attach_type(link) \
	BPF_CORE_READ((struct bpf_cgroup_link___own_attach_type *)(link), type)
#define netns_link_attach_type(link) \
	BPF_CORE_READ((struct bpf_netns_link___own_attach_type *)(link), type)

#endif /* ITERFS_COMPAT_BPF_LINK */

/* ==== task_vma: how the iterator was attached; a task by its pid ==== */
#ifndef ITERFS_COMPAT_TASK_ITER
#define ITERFS_COMPAT_TASK_ITER

/*
 * 6.1, "bpf: Parameterize task iterators.": a task iterator
 * can be attached to one thread or one process (linfo.task.tid, pid), and its
 * seq_file's private data starts with struct bpf_iter_seq_task_common, whose
 * `type` says which (kernel/bpf/task_iter.c relies on that layout). Before,
 * every task iterator walks every task.
 */
struct bpf_iter_seq_task_common___type {
	enum bpf_iter_task_type type;
} __attribute__((preserve_access_index));

/* BPF_TASK_ITER_ALL, _TID or _TGID: how the iterator of `seq` was attached. */
static __always_inline int iterator_type(struct seq_file *seq)
{
	struct bpf_iter_seq_task_common___type *common;

	if (!bpf_core_field_exists(struct bpf_iter_seq_task_common___type, type))
		return BPF_TASK_ITER_ALL;
	common = BPF_CORE_READ(seq, private);
	return BPF_CORE_READ(common, type);
}

/*
 * 6.2, "bpf: Add bpf_task_from_pid() kfunc": a task found by
 * its pid, with a reference (bpf_task_release() drops it). Declared __weak:
 * where the kernel lacks it, the address is NULL and the caller does without.
 */
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym __weak;
extern void bpf_task_release(struct task_struct *p) __ksym __weak;

#endif /* ITERFS_COMPAT_TASK_ITER */
