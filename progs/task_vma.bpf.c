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

char LICENSE[] SEC("license") = "GPL";

#define PATH_SIZE 4096
#define LINE_SIZE 128
#define NAME_SIZE 128
#define NAME_COLUMN 72		/* seq_setwidth(m, 25 + sizeof(void *) * 6 - 1) */

#define VM_READ 0x1
#define VM_WRITE 0x2
#define VM_EXEC 0x4
#define VM_MAYSHARE 0x80
#define MINORBITS 20
#define NAME_MAX 255

#define VSYSCALL_ADDR 0xffffffffff600000ULL
#define MM_CONTEXT_HAS_VSYSCALL 1	/* a bit number, arch/x86/include/asm/mmu.h */

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern int CONFIG_PAGE_SHIFT __kconfig __weak;
extern bool CONFIG_COMPAT __kconfig __weak;
extern bool CONFIG_X86_VSYSCALL_EMULATION __kconfig __weak;
extern bool CONFIG_LEGACY_VSYSCALL_NONE __kconfig __weak;
extern bool CONFIG_LEGACY_VSYSCALL_XONLY __kconfig __weak;

extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym __weak;
extern void bpf_task_release(struct task_struct *p) __ksym __weak;

/* What vm_ops->name is for _install_special_mapping()'s VMAs: [vdso], [vvar]... */
extern const void special_mapping_name __ksym __weak;

/* prctl(PR_SET_VMA_ANON_NAME) names: only with CONFIG_ANON_VMA_NAME. */
struct vm_area_struct___anon_name {
	struct anon_vma_name *anon_name;
} __attribute__((preserve_access_index));

/* The part of the iterator's state that says how it was attached. */
struct bpf_iter_seq_task_common___type {
	enum bpf_iter_task_type type;
} __attribute__((preserve_access_index));

/* The mm the walk printed last, and whether /proc ends it with the gate VMA. */
struct mm_mark {
	__u64 mm;		/* 0: nothing printed yet */
	__u32 pid;		/* the task walked, a thread in a walk of one thread */
	__u32 tgid;
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

/* A reader that closes before the end leaves its entry behind: LRU bounds that. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct walk);
} walks SEC(".maps");

struct scratch {
	char line[LINE_SIZE];
	char name[NAME_SIZE];
	char path[PATH_SIZE];
	char escaped[PATH_SIZE * 4];
};

PER_THREAD_SCRATCH(struct scratch)

#include "paths.h"

/*
 * ALL, TID or TGID: how the iterator was attached. The program is not told,
 * but the seq_file it writes to is the iterator's, and its private data starts
 * with struct bpf_iter_seq_task_common (kernel/bpf/task_iter.c relies on that).
 */
static __always_inline int iterator_type(struct seq_file *seq)
{
	struct bpf_iter_seq_task_common___type *common;

	if (!bpf_core_field_exists(struct bpf_iter_seq_task_common___type, type))
		return BPF_TASK_ITER_ALL;	/* before 6.1: no linfo, always all */
	common = BPF_CORE_READ(seq, private);
	return BPF_CORE_READ(common, type);
}

static __always_inline struct walk *walk_get(struct bpf_iter_meta *meta)
{
	__u64 id = meta->session_id;
	struct walk *w = bpf_map_lookup_elem(&walks, &id);

	if (w)
		return w;
	struct walk fresh = { .type = iterator_type(meta->seq) };
	bpf_map_update_elem(&walks, &id, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&walks, &id);
}

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

/*
 * Puts `value` at line[at] in hexadecimal (base 16) or decimal, with at least
 * `width` digits (zeros before); returns where the line goes on. A function of
 * its own, verified once: inlined, its loops multiply.
 */
__noinline __u32 put_number(struct scratch *s, __u32 at, __u64 value, __u32 base, __u32 width)
{
	char digits[32];
	__u32 n = 0;

	if (!s)
		return at;
	if (base == 16) {
		for (int i = 0; i < 16; i++) {
			__u32 digit = value & 15;

			digits[n++ & 31] = digit < 10 ? '0' + digit : 'a' + digit - 10;
			value >>= 4;
			if (!value)
				break;
		}
	} else {
		for (int i = 0; i < 20; i++) {
			digits[n++ & 31] = '0' + value % 10;
			value /= 10;
			if (!value)
				break;
		}
	}
	for (int i = 0; i < 16 && n < width; i++)
		digits[n++ & 31] = '0';
	for (int i = 0; i < 32 && n > 0; i++)
		s->line[at++ & (LINE_SIZE - 1)] = digits[--n & 31];
	return at;
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

/*
 * The line up to where the name goes: the tgid in a walk of all, then the
 * header; with a name, the padding to NAME_COLUMN and a space (seq_pad).
 * Written to the seq_file; returns what bpf_seq_write() returned.
 */
static __always_inline long write_header(struct seq_file *seq, struct scratch *s, int type,
					 __u32 tgid, struct vma_header *h, bool named)
{
	__u32 at = 0, column;

	if (type == BPF_TASK_ITER_ALL) {
		at = put_number(s, at, tgid, 10, 1);
		s->line[at++ & (LINE_SIZE - 1)] = ' ';
	}
	column = at + NAME_COLUMN;
	at = put_number(s, at, h->start, 16, 8);
	s->line[at++ & (LINE_SIZE - 1)] = '-';
	at = put_number(s, at, h->end, 16, 8);
	s->line[at++ & (LINE_SIZE - 1)] = ' ';
	s->line[at++ & (LINE_SIZE - 1)] = h->flags & VM_READ ? 'r' : '-';
	s->line[at++ & (LINE_SIZE - 1)] = h->flags & VM_WRITE ? 'w' : '-';
	s->line[at++ & (LINE_SIZE - 1)] = h->flags & VM_EXEC ? 'x' : '-';
	s->line[at++ & (LINE_SIZE - 1)] = h->flags & VM_MAYSHARE ? 's' : 'p';
	s->line[at++ & (LINE_SIZE - 1)] = ' ';
	at = put_number(s, at, h->pgoff, 16, 8);
	s->line[at++ & (LINE_SIZE - 1)] = ' ';
	at = put_number(s, at, h->dev >> MINORBITS, 16, 2);
	s->line[at++ & (LINE_SIZE - 1)] = ':';
	at = put_number(s, at, h->dev & ((1U << MINORBITS) - 1), 16, 2);
	s->line[at++ & (LINE_SIZE - 1)] = ' ';
	at = put_number(s, at, h->ino, 10, 1);
	s->line[at++ & (LINE_SIZE - 1)] = ' ';
	if (!named) {
		s->line[at++ & (LINE_SIZE - 1)] = '\n';
	} else {
		for (int i = 0; i < NAME_COLUMN && at < column; i++)
			s->line[at++ & (LINE_SIZE - 1)] = ' ';
		s->line[at++ & (LINE_SIZE - 1)] = ' ';
	}
	return bpf_seq_write(seq, s->line, at & (LINE_SIZE - 1));
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

/* The path in s->path, `length` bytes, as seq_file_path(m, file, "\n") writes it. */
static __always_inline void write_path_bytes(struct seq_file *seq, struct scratch *s, long length)
{
	if (!has_newline(s, length)) {
		s->path[length & (PATH_SIZE - 1)] = '\n';
		bpf_seq_write(seq, s->path, (length & (PATH_SIZE - 1)) + 1);
		return;
	}
	bpf_seq_write(seq, s->escaped, escape_path(length) & (sizeof(s->escaped) - 1));
	bpf_seq_write(seq, "\n", 1);
}

/* A file's path as d_path() gives it, and the newline. */
static __always_inline void write_path(struct seq_file *seq, struct scratch *s,
				       struct path *path)
{
	long length = bpf_d_path(path, s->path, sizeof(s->path));

	if (length <= 0) {
		bpf_seq_write(seq, "?\n", 2);	/* longer than PATH_MAX */
		return;
	}
	write_path_bytes(seq, s, length - 1);	/* without the terminating NUL */
}

/*
 * A file mapped through overlayfs or a FUSE passthrough is a backing file: the
 * file of the filesystem below. /proc shows the file the process opened, its
 * user path (file_user_path(), file_user_inode()), which bpf_d_path() cannot
 * be given: the program walks that path to the reader's root as d_path() does
 * (fs/d_path.c: prepend_path()), building it from the end of s->escaped.
 */
static __always_inline bool is_backing_file(struct file *file)
{
	__u32 backing = LINUX_KERNEL_VERSION >= KERNEL_VERSION(6, 14, 0) ? 1 << 24 : 1 << 25;

	if (!bpf_core_type_exists(struct backing_file))
		return false;	/* before 6.5 */
	return file->f_mode & backing;
}

#define BUILT_END (2 * PATH_SIZE)	/* where the path being built ends in s->escaped */

struct path_walk {
	__u64 dentry;
	__u64 mount;
	__u64 root_dentry;
	__u64 root_mnt;
	__u32 start;		/* the path so far is s->escaped[start, BUILT_END) */
	bool escaped;		/* above its mount's root: d_path() gives "/" */
	bool too_long;
};

static long prepend_name(__u32 index, struct path_walk *w)
{
	struct dentry *dentry = (void *)w->dentry, *parent;
	struct mount *mount = (void *)w->mount, *parent_mount;
	struct scratch *s = scratch();
	struct qstr name;

	if (!s)
		return 1;
	if (w->dentry == w->root_dentry &&
	    w->mount + bpf_core_field_offset(struct mount, mnt) == w->root_mnt)
		return 1;	/* the reader's root */
	if (dentry == BPF_CORE_READ(mount, mnt.mnt_root)) {
		parent_mount = BPF_CORE_READ(mount, mnt_parent);
		if (parent_mount == mount)
			return 1;	/* the root of all */
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
	if (name.len > NAME_MAX || w->start < BUILT_END - PATH_SIZE + 2 + name.len) {
		w->too_long = true;
		return 1;
	}
	w->start -= name.len;
	bpf_probe_read_kernel(&s->escaped[w->start & (BUILT_END - 1)], name.len & NAME_MAX,
			      name.name);
	w->start--;
	s->escaped[w->start & (BUILT_END - 1)] = '/';
	w->dentry = (__u64)parent;
	return 0;
}

static __always_inline void write_user_path(struct seq_file *seq, struct scratch *s,
					    struct dentry *dentry, struct vfsmount *mnt)
{
	struct task_struct *reader = bpf_get_current_task_btf();
	struct path_walk w = {
		.dentry = (__u64)dentry,
		.mount = (__u64)mnt - bpf_core_field_offset(struct mount, mnt),
		.root_dentry = (__u64)reader->fs->root.dentry,
		.root_mnt = (__u64)reader->fs->root.mnt,
		.start = BUILT_END,
	};
	bool deleted = !BPF_CORE_READ(dentry, d_hash.pprev) &&
		       BPF_CORE_READ(dentry, d_parent) != dentry;	/* d_unlinked() */
	__u32 length;

	bpf_loop(PATH_SIZE / 2, prepend_name, &w, 0);
	if (w.too_long) {
		bpf_seq_write(seq, "?\n", 2);
		return;
	}
	if (w.escaped || w.start == BUILT_END) {
		w.start = BUILT_END - 1;
		s->escaped[w.start & (BUILT_END - 1)] = '/';
	}
	length = BUILT_END - w.start;
	bpf_probe_read_kernel(s->path, length & (PATH_SIZE - 1),
			      &s->escaped[w.start & (BUILT_END - 1)]);
	if (deleted && length + 10 < PATH_SIZE) {
		__builtin_memcpy(&s->path[length & (PATH_SIZE - 1)], " (deleted)", 10);
		length += 10;
	}
	write_path_bytes(seq, s, length);
}

/* A kernel string and the newline, as one write. */
static __always_inline void write_kernel_string(struct seq_file *seq, struct scratch *s,
						const char *string)
{
	long length = bpf_probe_read_kernel_str(s->name, sizeof(s->name) - 1, string);

	if (length <= 0)
		length = 1;
	s->name[(length - 1) & (NAME_SIZE - 1)] = '\n';
	bpf_seq_write(seq, s->name, length & (NAME_SIZE - 1));
}

/* What bpf_snprintf() put in s->name, without its NUL. */
static __always_inline void write_formatted(struct seq_file *seq, struct scratch *s, long length)
{
	if (length > 1)
		bpf_seq_write(seq, s->name, (length - 1) & (NAME_SIZE - 1));
}

/* A prctl(PR_SET_VMA_ANON_NAME) name, NULL without CONFIG_ANON_VMA_NAME. */
static __always_inline const char *anon_name(struct vm_area_struct *vma)
{
	struct vm_area_struct___anon_name *named = (void *)vma;
	struct anon_vma_name *anon_name;

	if (!bpf_core_field_exists(struct vm_area_struct___anon_name, anon_name))
		return NULL;
	anon_name = BPF_CORE_READ(named, anon_name);
	if (!anon_name)
		return NULL;
	return (const char *)anon_name + bpf_core_field_offset(struct anon_vma_name, name);
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
	const char *name = anon_name(vma);

	if (file) {
		bool backing = is_backing_file(file);
		struct backing_file *backing_file = (void *)file;
		struct dentry *user_dentry = NULL;
		struct vfsmount *user_mnt = NULL;
		struct inode *inode = file->f_inode;

		if (backing) {
			user_dentry = BPF_CORE_READ(backing_file, user_path.dentry);
			user_mnt = BPF_CORE_READ(backing_file, user_path.mnt);
			inode = BPF_CORE_READ(user_dentry, d_inode);
		}
		h.dev = BPF_CORE_READ(inode, i_sb, s_dev);
		h.ino = BPF_CORE_READ(inode, i_ino);
		h.pgoff = (__u64)vma->vm_pgoff << page_shift;
		write_header(seq, s, type, tgid, &h, true);
		if (name) {
			write_formatted(seq, s, BPF_SNPRINTF(s->name, sizeof(s->name),
							     "[anon_shmem:%s]\n", name));
			return;
		}
		if (backing)
			write_user_path(seq, s, user_dentry, user_mnt);
		else
			write_path(seq, s, (struct path *)&file->f_path);
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
	if (vma->vm_start < mm->brk && vma->vm_end > mm->start_brk) {
		write_header(seq, s, type, tgid, &h, true);
		bpf_seq_write(seq, "[heap]\n", 7);
		return;
	}
	if (vma->vm_start <= mm->start_stack && vma->vm_end >= mm->start_stack) {
		write_header(seq, s, type, tgid, &h, true);
		bpf_seq_write(seq, "[stack]\n", 8);
		return;
	}
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
	struct scratch *s;
	struct walk *w;
	int type;

	w = walk_get(meta);
	if (!w)
		return 0;
	type = w->type;
	if (!vma) {
		/* The final call. Kept if its line did not fit: it is called again. */
		before = w->after_last;
		if (!write_gate(seq, type, &before)) {
			__u64 id = meta->session_id;

			bpf_map_delete_elem(&walks, &id);
		}
		return 0;
	}
	if (!task || (type != BPF_TASK_ITER_TID && task->pid != task->tgid))
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
	here.tgid = task->tgid;
	here.has_gate = mm_has_gate(vma->vm_mm);
	w->after_last = here;

	if (before.tgid != here.tgid)
		write_gate(seq, type, &before);
	write_vma(seq, s, type, here.tgid, vma);
	return 0;
}
