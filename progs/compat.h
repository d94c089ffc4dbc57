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
