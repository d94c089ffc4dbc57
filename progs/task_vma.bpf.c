// SPDX-License-Identifier: GPL-2.0
/*
 * task_vma: /proc/<pid>/maps, line for line (fs/proc/task_mmu.c: show_map_vma,
 * show_vma_header_prefix, get_vma_name).
 *
 * A walk of one process (linfo.task.pid) or of one thread (linfo.task.tid)
 * prints exactly what /proc/<pid>/maps or /proc/<tid>/maps prints. A walk of
 * every task (no linfo) prints every process's maps, each line led by the
 * process's tgid and a space.
 *
 * What the kernel's walk does not do as /proc does:
 * - Besides each process's leader, it visits every thread whose file table is
 *   not the leader's (with the leader's mm), and a process whose leader exited
 *   through its other threads only. /proc/<pid>/maps shows the leader's mm once
 *   (nothing if the leader exited): in a walk of a process or of all, only a
 *   leader's VMAs are printed.
 * - It never visits the gate VMA ([vsyscall]), which /proc adds after the last
 *   VMA of an mm (get_gate_vma()). Its line is printed once the walk has left
 *   that mm: with the next process's first line, or in the final call.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "scratch.h"
#include "compat.h"
#include "opened.h"
#include "paths.h"

char LICENSE[] SEC("license") = "GPL";

#define HEADER_SIZE 128		/* the line up to its name */
#define VMA_NAME_SIZE 128
#define BUILT_END (2 * PATH_SIZE)	/* where the path being built ends in s->path.escaped */
#define NAME_COLUMN 72		/* seq_setwidth(m, 25 + sizeof(void *) * 6 - 1) */

#define VM_READ 0x1
#define VM_WRITE 0x2
#define VM_EXEC 0x4
#define VM_MAYSHARE 0x80
#define MINORBITS 20
#define NAME_MAX 255

#define VSYSCALL_ADDR 0xffffffffff600000ULL
#define MM_CONTEXT_HAS_VSYSCALL 1	/* a bit number, arch/x86/include/asm/mmu.h */

extern int CONFIG_PAGE_SHIFT __kconfig __weak;
extern bool CONFIG_COMPAT __kconfig __weak;
extern bool CONFIG_X86_VSYSCALL_EMULATION __kconfig __weak;
extern bool CONFIG_LEGACY_VSYSCALL_NONE __kconfig __weak;
extern bool CONFIG_LEGACY_VSYSCALL_XONLY __kconfig __weak;

/* What vm_ops->name is for _install_special_mapping()'s VMAs: [vdso], [vvar]... */
extern const void special_mapping_name __ksym __weak;

/*
 * The d_op->d_dname of the filesystems whose files can be mapped and that name
 * their files themselves: what d_path() gives for such a file is what these
 * functions print (pipefs, nsfs and pidfs files cannot be mapped).
 */
extern const void simple_dname __ksym __weak;		/* shmem, secretmem, aio... */
extern const void anon_inodefs_dname __ksym __weak;	/* perf_event, io_uring, bpf maps... */
extern const void sockfs_dname __ksym __weak;		/* packet rings, XDP sockets... */
extern const void dmabuffs_dname __ksym __weak;		/* dma-buf exporters */

/* The mm the walk printed last, and whether /proc ends it with the gate VMA. */
struct mm_mark {
	__u64 mm;		/* 0: nothing printed yet */
	__u32 pid;		/* the task walked, a thread in a walk of one thread */
	__u32 tgid;		/* as the reader numbers it */
	__u32 has_gate;
};

/*
 * A walk's state, by iterator session. The kernel shows a VMA again when its
 * text did not fit in the read buffer: the mark before it is kept so that the
 * second showing prints what the first did.
 */
struct walk {
	__u64 last_seq_num_plus_one;
	int type;		/* how the iterator was attached: iterator_type() */
	struct mm_mark before_last;
	struct mm_mark after_last;
};

/* Deleted at the walk's end, or by the daemon when it closes the iterator. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SESSIONS);
	__type(key, __u64);
	__type(value, struct walk);
} walks SEC(".maps");

/*
 * A walk from a dentry up to the reader's root: fs/d_path.c, __prepend_path().
 * Kept in the scratch map value, not on the stack, where the verifier would
 * follow every value it takes from one step to the next.
 */
struct path_walk {
	__u64 dentry;
	__u64 mount;
	__u64 root_dentry;
	__u64 root_mnt;
	__u32 start;		/* the path so far is s->path.escaped[start, BUILT_END) */
	bool escaped;		/* above its mount's root: d_path() gives "/" */
	bool too_long;
};

struct scratch {
	struct path_walk walk;
	char line[HEADER_SIZE];
	char name[VMA_NAME_SIZE];
	struct path_buffer path;	/* paths.h */
};

PER_THREAD_SCRATCH(struct scratch)

/*
 * Whether the walk got to the end of the mm that `mark` describes. A task that
 * exits (or execs) while it is walked cuts its walk short, and the walk goes
 * on to the next task or ends: no [vsyscall] line then, the task no longer has
 * that mm.
 */
static __always_inline bool walked_to_the_end(struct mm_mark *mark)
{
	struct task_struct *task;
	bool same;

	if (!bpf_task_from_pid)
		return true;	/* before 6.2 */
	task = bpf_task_from_pid(mark->pid);
	if (!task)
		return false;
	same = (__u64)task->mm == mark->mm;
	bpf_task_release(task);
	return same;
}

/* Whether get_gate_vma(mm) is not NULL: arch/x86/entry/vsyscall/vsyscall_64.c. */
static __always_inline __u32 mm_has_gate(struct mm_struct *mm)
{
#if defined(__TARGET_ARCH_x86)
	if (!CONFIG_X86_VSYSCALL_EMULATION || CONFIG_LEGACY_VSYSCALL_NONE)
		return 0;
	if (CONFIG_COMPAT &&
	    !(BPF_CORE_READ(mm, context.flags) & (1UL << MM_CONTEXT_HAS_VSYSCALL)))
		return 0;	/* a 32-bit process */
	return 1;
#else
	return 0;
#endif
}

/* The fields show_vma_header_prefix() prints. */
struct vma_header {
	__u64 start;
	__u64 end;
	__u64 flags;
	__u64 pgoff;
	__u64 ino;
	__u32 dev;
};

/* What seq_pad() writes at most: spaces up to NAME_COLUMN, then one. */
static const char spaces[NAME_COLUMN + 1] = { [0 ... NAME_COLUMN] = ' ' };

/*
 * The line up to where the name goes: the tgid in a walk of all, then the
 * header (seq_put_hex_ll() and seq_put_decimal_ull() print as %08lx, %02x and
 * %lu do); with a name, the padding to NAME_COLUMN and a space (seq_pad).
 * Written to the seq_file; returns what bpf_seq_write() returned.
 */
static __always_inline long write_header(struct seq_file *seq, struct scratch *s, int type,
					 __u32 tgid, struct vma_header *h, bool named)
{
	__u32 prefix = 0, length, pad = 0;
	long written;

	s->name[0] = h->flags & VM_READ ? 'r' : '-';
	s->name[1] = h->flags & VM_WRITE ? 'w' : '-';
	s->name[2] = h->flags & VM_EXEC ? 'x' : '-';
	s->name[3] = h->flags & VM_MAYSHARE ? 's' : 'p';
	s->name[4] = 0;
	if (type == BPF_TASK_ITER_ALL)
		prefix = (BPF_SNPRINTF(s->line, 16, "%u ", tgid) - 1) & 15;
	written = BPF_SNPRINTF(&s->line[prefix], HEADER_SIZE - 16, "%08lx-%08lx %s %08llx %02x:%02x %lu ",
			       h->start, h->end, s->name, h->pgoff, h->dev >> MINORBITS,
			       h->dev & ((1U << MINORBITS) - 1), h->ino);
	length = prefix + ((written - 1) & (HEADER_SIZE - 1));
	if (!named) {
		s->line[length & (HEADER_SIZE - 1)] = '\n';
		return bpf_seq_write(seq, s->line, (length + 1) & (HEADER_SIZE - 1));
	}
	if (length < prefix + NAME_COLUMN)
		pad = prefix + NAME_COLUMN - length;
	pad = (pad + 1) & (HEADER_SIZE - 1);
	bpf_probe_read_kernel(&s->line[length & (HEADER_SIZE - 1)], pad, spaces);
	return bpf_seq_write(seq, s->line, (length + pad) & (HEADER_SIZE - 1));
}

/* The gate VMA's line, for the mm that `mark` describes, if it has one. */
static __always_inline long write_gate(struct seq_file *seq, int type, struct mm_mark *mark)
{
	struct vma_header h = {
		.start = VSYSCALL_ADDR,
		.end = VSYSCALL_ADDR + 4096,
		/* vsyscall=xonly, the default; vsyscall=emulate maps it readable */
		.flags = CONFIG_LEGACY_VSYSCALL_XONLY ? VM_EXEC : VM_READ | VM_EXEC,
	};
	struct scratch *s;
	long err;

	if (!mark->mm || !mark->has_gate || !walked_to_the_end(mark))
		return 0;
	s = scratch();
	if (!s)
		return 0;
	err = write_header(seq, s, type, mark->tgid, &h, true);
	return err ?: bpf_seq_write(seq, "[vsyscall]\n", 11);
}

static long prepend_name(__u32 index, void *unused)
{
	struct scratch *s = scratch();
	struct dentry *dentry, *parent;
	struct mount *mount, *parent_mount;
	struct path_walk *w;
	struct qstr name;
	__u32 start;

	if (!s)
		return 1;
	w = &s->walk;
	dentry = (void *)w->dentry;
	mount = (void *)w->mount;
	if (w->dentry == w->root_dentry &&
	    w->mount + bpf_core_field_offset(struct mount, mnt) == w->root_mnt)
		return 1;	/* the reader's root */
	if (dentry == BPF_CORE_READ(mount, mnt.mnt_root)) {
		parent_mount = BPF_CORE_READ(mount, mnt_parent);
		if (parent_mount == mount)
			return 1;	/* the root of all, or of a detached mount */
		w->dentry = (__u64)BPF_CORE_READ(mount, mnt_mountpoint);
		w->mount = (__u64)parent_mount;
		return 0;
	}
	parent = BPF_CORE_READ(dentry, d_parent);
	if (parent == dentry) {
		w->escaped = true;
		return 1;
	}
	BPF_CORE_READ_INTO(&name, dentry, d_name);
	start = w->start;
	if (name.len > NAME_MAX || start > BUILT_END || start < BUILT_END - PATH_SIZE + 2 + name.len) {
		w->too_long = true;
		return 1;
	}
	start -= name.len;
	bpf_probe_read_kernel(&s->path.escaped[start & (BUILT_END - 1)], name.len & NAME_MAX, name.name);
	start--;
	s->path.escaped[start & (BUILT_END - 1)] = '/';
	w->start = start;
	w->dentry = (__u64)parent;
	return 0;
}

/*
 * d_path() of a dentry that its filesystem names (d_op->d_dname), into
 * s->path.text
 * as the d_dname function formats it; what bpf_snprintf() returns (the length
 * with the NUL), 0 for a function the program does not know.
 */
static __always_inline long dname(struct scratch *s, struct dentry *dentry, __u64 d_dname)
{
	const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);

	/* fs/d_path.c: simple_dname(), for alloc_file_pseudo()'s files */
	if (d_dname == (__u64)&simple_dname)
		return BPF_SNPRINTF(s->path.text, sizeof(s->path.text), "/%s (deleted)", name);
	/* fs/anon_inodes.c: anon_inodefs_dname() */
	if (d_dname == (__u64)&anon_inodefs_dname)
		return BPF_SNPRINTF(s->path.text, sizeof(s->path.text), "anon_inode:%s", name);
	/* net/socket.c: sockfs_dname() */
	if (d_dname == (__u64)&sockfs_dname)
		return BPF_SNPRINTF(s->path.text, sizeof(s->path.text), "socket:[%lu]",
				    BPF_CORE_READ(dentry, d_inode, i_ino));
	/* drivers/dma-buf/dma-buf.c: dmabuffs_dname(), the name DMA_BUF_SET_NAME gave */
	if (bpf_core_type_exists(struct dma_buf) && d_dname == (__u64)&dmabuffs_dname) {
		struct dma_buf *dmabuf = BPF_CORE_READ(dentry, d_fsdata);
		const char *dmabuf_name = BPF_CORE_READ(dmabuf, name);

		if (!dmabuf_name)
			return BPF_SNPRINTF(s->path.text, sizeof(s->path.text), "/%s:", name);
		return BPF_SNPRINTF(s->path.text, sizeof(s->path.text), "/%s:%s", name,
				    dmabuf_name);
	}
	return 0;
}

/*
 * The path in s->path.text, `length` bytes, as seq_path(m, path, "\n") writes it,
 * and the newline: in s->path.text, or with a '\n' written \012 in s->path.escaped.
 * Returns the length; negated where the text is in s->path.escaped.
 */
static __always_inline long end_path(struct scratch *s, __u32 length)
{
	__u32 written;

	length &= PATH_SIZE - 1;
	if (!has_newline(&s->path, length)) {
		s->path.text[length] = '\n';
		return length + 1;
	}
	written = escape_path(&s->path, length) & (sizeof(s->path.escaped) - 1);
	s->path.escaped[written] = '\n';
	return -(long)(written + 1);
}

/*
 * A mapped file's name, the path (dentry, mnt) as d_path() gives it, in
 * s->path.text or s->path.escaped: end_path(). bpf_d_path() is not used: it takes only
 * a pointer the verifier trusts, and whether it trusts vma->vm_file changes
 * from one kernel build to another. So this does what d_path() does: a dentry
 * its filesystem names itself (a file never linked anywhere) gets that name,
 * unless it is the root of a mount; any other, the walk up to the reader's
 * root (prepend_path()), with " (deleted)" after an unlinked one. A function
 * of its own, verified once.
 */
__noinline long file_path(struct scratch *s, __u64 dentry_address, __u64 mnt_address)
{
	struct dentry *dentry = (void *)dentry_address, *parent;
	struct vfsmount *mnt = (void *)mnt_address;
	struct task_struct *reader = bpf_get_current_task_btf();
	struct path_walk *w;
	__u64 d_dname;
	__u32 start;
	bool deleted;
	long length;

	if (!s)
		return 0;
	parent = BPF_CORE_READ(dentry, d_parent);
	d_dname = (__u64)BPF_CORE_READ(dentry, d_op, d_dname);
	if (d_dname && (parent != dentry || dentry != BPF_CORE_READ(mnt, mnt_root))) {
		length = dname(s, dentry, d_dname);
		if (length <= 1)
			return 0;	/* a d_dname this program does not know */
		return end_path(s, length - 1);
	}
	w = &s->walk;
	w->dentry = dentry_address;
	w->mount = mnt_address - bpf_core_field_offset(struct mount, mnt);
	w->root_dentry = (__u64)BPF_CORE_READ(reader, fs, root.dentry);
	w->root_mnt = (__u64)BPF_CORE_READ(reader, fs, root.mnt);
	w->start = BUILT_END;
	w->escaped = false;
	w->too_long = false;
	deleted = !BPF_CORE_READ(dentry, d_hash.pprev) && parent != dentry;	/* d_unlinked() */
	bpf_loop(PATH_SIZE / 2, prepend_name, NULL, 0);
	start = w->start;
	if (w->too_long || start > BUILT_END)
		return 0;
	if (w->escaped || start == BUILT_END) {
		start = BUILT_END - 1;
		s->path.escaped[start & (BUILT_END - 1)] = '/';
	}
	length = BUILT_END - start;
	bpf_probe_read_kernel(s->path.text, length & (PATH_SIZE - 1),
			      &s->path.escaped[start & (BUILT_END - 1)]);
	if (deleted && length + 10 < PATH_SIZE) {
		__builtin_memcpy(&s->path.text[length & (PATH_SIZE - 1)], " (deleted)", 10);
		length += 10;
	}
	return end_path(s, length);
}

/* A mapped file's name and the newline; `?` where file_path() has none. */
static __always_inline void write_path(struct seq_file *seq, struct scratch *s,
				       struct dentry *dentry, struct vfsmount *mnt)
{
	long length = file_path(s, (__u64)dentry, (__u64)mnt);

	if (length > 0)
		bpf_seq_write(seq, s->path.text, ((length - 1) & (PATH_SIZE - 1)) + 1);
	else if (length < 0)
		bpf_seq_write(seq, s->path.escaped, -length & (sizeof(s->path.escaped) - 1));
	else
		bpf_seq_write(seq, "?\n", 2);	/* longer than PATH_MAX, or unknown */
}

/* A kernel string and the newline, as one write. */
static __always_inline void write_kernel_string(struct seq_file *seq, struct scratch *s,
						const char *string)
{
	long length = bpf_probe_read_kernel_str(s->name, sizeof(s->name) - 1, string);

	if (length <= 0)
		length = 1;
	s->name[(length - 1) & (VMA_NAME_SIZE - 1)] = '\n';
	bpf_seq_write(seq, s->name, length & (VMA_NAME_SIZE - 1));
}

/* What bpf_snprintf() put in s->name, without its NUL. */
static __always_inline void write_formatted(struct seq_file *seq, struct scratch *s, long length)
{
	if (length > 1)
		bpf_seq_write(seq, s->name, (length - 1) & (VMA_NAME_SIZE - 1));
}

/* show_map_vma(): the header, then the name get_vma_name() gives. */
static __always_inline void write_vma(struct seq_file *seq, struct scratch *s, int type,
				      __u32 tgid, struct vm_area_struct *vma)
{
	int page_shift = CONFIG_PAGE_SHIFT ?: 12;
	struct mm_struct *mm = vma->vm_mm;
	struct file *file = vma->vm_file;
	const struct vm_operations_struct *ops = vma->vm_ops;
	struct vma_header h = {
		.start = vma->vm_start,
		.end = vma->vm_end,
		.flags = vma->vm_flags,
	};
	const char *name;

	if (file) {
		struct dentry *dentry;
		struct vfsmount *mnt;
		struct inode *inode;

		if (file_has_user_path(file)) {	/* a backing file */
			struct backing_file *backing = (void *)file;

			dentry = BPF_CORE_READ(backing, user_path.dentry);
			mnt = BPF_CORE_READ(backing, user_path.mnt);
			if (maps_show_user_inode())
				inode = BPF_CORE_READ(dentry, d_inode);
			else
				inode = BPF_CORE_READ(file, f_inode);
		} else {
			dentry = BPF_CORE_READ(file, f_path.dentry);
			mnt = BPF_CORE_READ(file, f_path.mnt);
			inode = BPF_CORE_READ(file, f_inode);
		}
		h.dev = BPF_CORE_READ(inode, i_sb, s_dev);
		h.ino = BPF_CORE_READ(inode, i_ino);
		h.pgoff = (__u64)vma->vm_pgoff << page_shift;
		write_header(seq, s, type, tgid, &h, true);
		name = vma_anon_name(vma, true);
		if (name) {
			write_formatted(seq, s, BPF_SNPRINTF(s->name, sizeof(s->name),
							     "[anon_shmem:%s]\n", name));
			return;
		}
		write_path(seq, s, dentry, mnt);
		return;
	}
	if (&special_mapping_name && ops &&
	    (unsigned long)BPF_CORE_READ(ops, name) == (unsigned long)&special_mapping_name) {
		struct vm_special_mapping *special = vma->vm_private_data;

		write_header(seq, s, type, tgid, &h, true);
		write_kernel_string(seq, s, BPF_CORE_READ(special, name));
		return;
	}
	/* x86's arch_vma_name() names nothing; the gate VMA is not visited. */
	if (vma_is_initial_heap(vma->vm_start, vma->vm_end, mm->start_brk, mm->brk)) {
		write_header(seq, s, type, tgid, &h, true);
		bpf_seq_write(seq, "[heap]\n", 7);
		return;
	}
	if (vma->vm_start <= mm->start_stack && vma->vm_end >= mm->start_stack) {
		write_header(seq, s, type, tgid, &h, true);
		bpf_seq_write(seq, "[stack]\n", 8);
		return;
	}
	name = vma_anon_name(vma, false);
	if (name) {
		write_header(seq, s, type, tgid, &h, true);
		write_formatted(seq, s, BPF_SNPRINTF(s->name, sizeof(s->name),
						     "[anon:%s]\n", name));
		return;
	}
	write_header(seq, s, type, tgid, &h, false);
}

SEC("iter/task_vma")
int task_vma(struct bpf_iter__task_vma *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct seq_file *seq = meta->seq;
	struct task_struct *task = ctx->task;
	struct vm_area_struct *vma = ctx->vma;
	struct mm_mark before, here;
	struct session *session;
	struct scratch *s;
	struct walk *w;
	int type;

	w = session_entry(&walks, meta, ((struct walk){ .type = iterator_type(seq) }));
	if (!w)
		return 0;
	session = session_get(meta);
	type = w->type;
	if (!vma) {
		/* The final call. Kept if its line did not fit: it is called again. */
		before = w->after_last;
		if (!write_gate(seq, type, &before)) {
			session_entry_delete(&walks, meta);
			session_end(meta);
		}
		return 0;
	}
	if (!task || (type != BPF_TASK_ITER_TID && task->pid != task->tgid) ||
	    !may_show_task(session, seq, task))
		return 0;
	s = scratch();
	if (!s)
		return 0;

	if (w->last_seq_num_plus_one == meta->seq_num + 1) {
		before = w->before_last;	/* this VMA again */
	} else {
		before = w->after_last;
		w->before_last = before;
		w->last_seq_num_plus_one = meta->seq_num + 1;
	}
	here.mm = (__u64)vma->vm_mm;
	here.pid = task->pid;
	/* The number the reader knows the process by (namespaces.h). */
	here.tgid = session->opened.pid_ns ?
		    pid_nr_ns(BPF_CORE_READ(task, signal, pids[PIDTYPE_TGID]),
			      (struct pid_namespace *)session->opened.pid_ns) : task->tgid;
	here.has_gate = mm_has_gate(vma->vm_mm);
	w->after_last = here;

	if (before.tgid != here.tgid)
		write_gate(seq, type, &before);
	write_vma(seq, s, type, here.tgid, vma);
	return 0;
}
