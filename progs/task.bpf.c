// SPDX-License-Identifier: GPL-2.0
/*
 * task: one line per thread, with the values /proc/<tgid>/task/<tid>/stat and
 * status show for it: tgid, tid, ppid, real uid, state letter, priority, nice,
 * threads, processor, utime and stime, start time, rss, and comm last.
 *
 * Numbers are as the daemon sees them: pids in its pid namespace, the uid in the
 * user namespace of whoever created the iterator (the daemon), the start time
 * with its time namespace's boot offset, as /proc applies the reader's.
 *
 * comm is what /proc/<pid>/status prints after "Name:": a newline is written \n
 * and a backslash \\, nothing else is escaped, so every line is one thread. It
 * follows the column before it after exactly one space, and may itself hold
 * spaces, parentheses, or begin with a space.
 */
#include "iterfs.h"
#include "text.h"
#include "bytes.h"
#include "scratch.h"
#include "pid.h"
#include "namespaces.h"
#include "compat.h"
#include "task_state.h"

char LICENSE[] SEC("license") = "GPL";

#define TASK_NAME_SIZE 64			/* proc_task_name()'s buffer */
#define NSEC_PER_CLOCK_TICK (NSEC_PER_SEC / USER_HZ)

/* include/linux/sched.h; constants, not in BTF */
#define PF_WQ_WORKER		0x00000020
#define PF_KTHREAD		0x00200000
#define MAX_RT_PRIO		100
#define DEFAULT_PRIO		120	/* nice 0 */

/*
 * What depends only on the reader, worked out once per iterator session rather
 * than for every thread shown (each is several probe reads).
 */
struct reader {
	__u64 session_id;
	__u64 pid_ns;		/* struct pid_namespace * */
	__u32 pid_ns_level;	/* 0: the initial namespace, whose numbers the task holds */
	__u64 user_ns;		/* struct user_namespace * */
	__s64 boottime_offset;
	__u32 uid;		/* the last uid mapped, and what it maps to */
	__u32 mapped_uid;
	bool have_uid;
	/* Counts the buffers of the walk (seq_file's, filled once per read(2)):
	 * what a process's threads share is kept for one buffer only. */
	__u64 buffer;
};

/*
 * What the threads of a process share (its tgid, ppid, thread count and rss),
 * kept as the text its first thread shown got, for the others. The task
 * iterator goes by thread id, and the threads of processes that start them at
 * once interleave: PROCESS_SLOTS processes are kept, each in the slot its
 * tgid picks. Valid within one buffer of the walk (never older than the lines
 * around it, however long a reader pauses between reads), for the session,
 * thread group (signal), address space (mm), parent and kthread flag it was
 * made for; a thread whose uid is the one kept there reuses its column too.
 */
#define PROCESS_SLOTS 64
#define COLUMN_SIZE 24			/* the widest number and its space */

struct column {
	__u32 length;
	char text[COLUMN_SIZE];		/* spaces after length */
};

struct process_columns {
	__u64 session_id;
	__u64 buffer;			/* reader.buffer it was made in */
	__u64 signal, mm, real_parent;
	__u32 flags;
	struct column tgid, ppid, threads, rss;
	__u32 uid;			/* the uid column's, valid with uid_valid */
	bool uid_valid;
	struct column uid_text;
};

struct scratch {
	struct reader reader;
	struct process_columns processes[PROCESS_SLOTS];
	struct line line;
	char line_end[TASK_NAME_SIZE + 1];	/* the name and newline, after the longest line */
	char name[TASK_NAME_SIZE];
	char escaped[TASK_NAME_SIZE * 2];
};

PER_THREAD_SCRATCH(struct scratch)

/* --- host-testable arithmetic: tests/test_task.py compiles this block with gcc --- */

/*
 * (high:low) / divisor where high < divisor, so that the quotient fits in 64 bits:
 * Knuth's algorithm D on 32-bit digits, as in Hacker's Delight (divlu). Each
 * quotient digit needs at most two corrections; both are written out, so the
 * verifier sees straight-line code.
 */
static __always_inline __u64 div_u128_u64(__u64 high, __u64 low, __u64 divisor)
{
	const __u64 base = 1ULL << 32;
	__u64 divisor_high, divisor_low, numerator_32, numerator_21, numerator_10;
	__u64 low_high, low_low, quotient_high, quotient_low, remainder;
	unsigned int shift = 0;

	/* Normalise: shift the divisor until its top bit is set. */
	if (!(divisor >> 32)) { shift += 32; divisor <<= 32; }
	if (!(divisor >> 48)) { shift += 16; divisor <<= 16; }
	if (!(divisor >> 56)) { shift += 8; divisor <<= 8; }
	if (!(divisor >> 60)) { shift += 4; divisor <<= 4; }
	if (!(divisor >> 62)) { shift += 2; divisor <<= 2; }
	if (!(divisor >> 63)) { shift += 1; divisor <<= 1; }
	divisor_high = divisor >> 32;
	divisor_low = divisor & 0xffffffffULL;

	numerator_32 = shift ? high << shift | low >> (64 - shift) : high;
	numerator_10 = low << shift;
	low_high = numerator_10 >> 32;
	low_low = numerator_10 & 0xffffffffULL;

	quotient_high = numerator_32 / divisor_high;
	remainder = numerator_32 - quotient_high * divisor_high;
	if (quotient_high >= base ||
	    quotient_high * divisor_low > remainder * base + low_high) {
		quotient_high--;
		remainder += divisor_high;
		if (remainder < base &&
		    (quotient_high >= base ||
		     quotient_high * divisor_low > remainder * base + low_high))
			quotient_high--;
	}

	numerator_21 = numerator_32 * base + low_high - quotient_high * divisor;
	quotient_low = numerator_21 / divisor_high;
	remainder = numerator_21 - quotient_low * divisor_high;
	if (quotient_low >= base ||
	    quotient_low * divisor_low > remainder * base + low_low) {
		quotient_low--;
		remainder += divisor_high;
		if (remainder < base &&
		    (quotient_low >= base ||
		     quotient_low * divisor_low > remainder * base + low_low))
			quotient_low--;
	}
	return quotient_high * base + quotient_low;
}

/*
 * a * b / c rounded down, exactly, as x86-64's mul_u64_u64_div_u64() (mulq;
 * divq) computes it. Needs a <= c, which cputime_adjust() guarantees (stime <=
 * stime + utime), so that the quotient fits in 64 bits.
 */
static __always_inline __u64 mul_u64_u64_div_u64(__u64 a, __u64 b, __u64 c)
{
	__u64 a_low = a & 0xffffffffULL, a_high = a >> 32;
	__u64 b_low = b & 0xffffffffULL, b_high = b >> 32;
	__u64 low_low = a_low * b_low, low_high = a_low * b_high;
	__u64 high_low = a_high * b_low, high_high = a_high * b_high;
	__u64 middle = (low_low >> 32) + (low_high & 0xffffffffULL) +
		       (high_low & 0xffffffffULL);
	__u64 low = middle << 32 | (low_low & 0xffffffffULL);
	__u64 high = high_high + (low_high >> 32) + (high_low >> 32) + (middle >> 32);

	if (!high)
		return low / c;
	return div_u128_u64(high, low, c);
}

/*
 * cputime_adjust() (kernel/sched/cputime.c): scale the tick samples to the
 * runtime, and never go back from what was last reported (prev). The kernel
 * stores its answer in prev under a lock; this only reads prev, so it prints
 * what a /proc read at this moment prints and stores, and a later /proc read
 * with the same inputs prints the same.
 */
static __always_inline void cputime_adjust(__u64 runtime, __u64 utime, __u64 stime,
					   __u64 prev_utime, __u64 prev_stime,
					   __u64 *user, __u64 *system)
{
	if (prev_stime + prev_utime >= runtime) {
		*user = prev_utime;
		*system = prev_stime;
		return;
	}
	if (stime == 0) {
		utime = runtime;
	} else if (utime == 0) {
		stime = runtime;
	} else {
		stime = mul_u64_u64_div_u64(stime, runtime, stime + utime);
		if (stime > runtime)
			stime = runtime;
	}
	if (stime < prev_stime)
		stime = prev_stime;
	utime = runtime - stime;
	if (utime < prev_utime) {
		utime = prev_utime;
		stime = runtime - utime;
	}
	*user = utime;
	*system = stime;
}

/* --- end of host-testable arithmetic --- */

extern bool CONFIG_VIRT_CPU_ACCOUNTING_NATIVE __kconfig __weak;

/*
 * task_cputime_adjusted(). With tick-based accounting (TICK_CPU_ACCOUNTING, as
 * here) the tick samples utime and stime are scaled to the runtime the scheduler
 * measured. VIRT_CPU_ACCOUNTING_GEN does the same, and where vtime runs (nohz_full
 * CPUs) adds to a running thread the slice it is in: that slice is missing here.
 * VIRT_CPU_ACCOUNTING_NATIVE times each mode exactly and prints it as it is.
 */
static __always_inline void task_cputime_adjusted(struct task_struct *task,
						  __u64 *user, __u64 *system)
{
	if (CONFIG_VIRT_CPU_ACCOUNTING_NATIVE) {
		*user = task->utime;
		*system = task->stime;
		return;
	}
	cputime_adjust(task->se.sum_exec_runtime, task->utime, task->stime,
		       task->prev_cputime.utime, task->prev_cputime.stime, user, system);
}

/* The letter get_task_state() prints (task_state.h). */
static __always_inline char task_state_letter(struct task_struct *task)
{
	unsigned int index = task_state_index(task);

	return index < TASK_STATES ? task_state_letters[index] : '?';
}

/* timens_add_boottime_ns(): the boot time offset of the reader's time namespace. */
static __always_inline __s64 boottime_offset_ns(void)
{
	struct time_namespace *time_ns = BPF_CORE_READ(bpf_get_current_task_btf(), nsproxy, time_ns);
	struct timespec64 offset = {};

	if (!time_ns || bpf_core_read(&offset, sizeof(offset), &time_ns->offsets.boottime))
		return 0;
	return offset.tv_sec * (__s64)NSEC_PER_SEC + offset.tv_nsec;
}

/* get_mm_rss() of get_task_mm(task): none for kernel threads and exited tasks. */
static __always_inline __u64 task_rss(struct task_struct *task)
{
	struct mm_struct *mm = task->mm;

	if (!mm || task->flags & PF_KTHREAD)
		return 0;
	return mm_rss(mm);
}

static const char no_text[] = "";
static const char current_work[] = "+";
static const char last_work[] = "-";
static const char high_priority[] = "H";

/*
 * wq_worker_comm(): the id format_worker_id() gives the worker, then '+' and the
 * description of the work it runs, or '-' and that of the last one. Returns the
 * length written into name.
 */
static __always_inline long worker_name(char *name, struct task_struct *task)
{
	struct kthread *kthread = kthread_of(task);
	struct worker *worker = BPF_CORE_READ(kthread, data);
	struct worker_pool *pool = BPF_CORE_READ(worker, pool);
	struct workqueue_struct *rescue_wq = BPF_CORE_READ(worker, rescue_wq);
	const char *sign = no_text, *description = no_text;
	char first;
	long length;

	if (!worker)
		return bpf_probe_read_kernel_str(name, sizeof(task->comm), task->comm);
	if (pool && !bpf_probe_read_kernel(&first, 1, &worker->desc) && first) {
		sign = BPF_CORE_READ(worker, current_work) ? current_work : last_work;
		description = worker->desc;
	}
	if (rescue_wq) {
		length = BPF_SNPRINTF(name, TASK_NAME_SIZE, "kworker/R-%s%s%s", rescue_wq->name,
				      sign, description);
	} else if (!pool) {
		length = BPF_SNPRINTF(name, TASK_NAME_SIZE, "kworker/dying");
	} else if (BPF_CORE_READ(pool, cpu) >= 0) {
		length = BPF_SNPRINTF(name, TASK_NAME_SIZE, "kworker/%d:%d%s%s%s",
				      BPF_CORE_READ(pool, cpu), BPF_CORE_READ(worker, id),
				      BPF_CORE_READ(pool, attrs, nice) < 0 ? high_priority : no_text,
				      sign, description);
	} else {
		length = BPF_SNPRINTF(name, TASK_NAME_SIZE, "kworker/u%d:%d%s%s",
				      BPF_CORE_READ(pool, id), BPF_CORE_READ(worker, id),
				      sign, description);
	}
	return length > TASK_NAME_SIZE ? TASK_NAME_SIZE : length;
}

/*
 * task->comm, read as two words rather than by a helper call, which would cost
 * more than the rest of the name's work. Returns its length.
 */
static __always_inline __u32 comm_copy(char *name, struct task_struct *task)
{
	__u32 length;

	*(__u64 *)&name[0] = *(__u64 *)&task->comm[0];
	*(__u64 *)&name[8] = *(__u64 *)&task->comm[8];
	name[TASK_COMM_LEN - 1] = 0;
	for (length = 0; length < TASK_COMM_LEN - 1; length++)
		if (!name[length])
			break;
	return length;
}

/*
 * proc_task_name(): a workqueue worker's id and work, a kernel thread's full
 * name (longer than comm's 15 characters), else comm. Returns the length in
 * name, without the terminating NUL.
 */
static __always_inline __u32 task_name(char *name, struct task_struct *task)
{
	long length;
	const char *full_name = NULL;

	if (task->flags & PF_WQ_WORKER) {
		length = worker_name(name, task);
	} else {
		if (task->flags & PF_KTHREAD)
			full_name = kthread_full_name(kthread_of(task));
		if (full_name)
			length = bpf_probe_read_kernel_str(name, TASK_NAME_SIZE, full_name);
		else
			return comm_copy(name, task);
	}
	return length > 0 ? length - 1 : 0;
}

/* Whether any byte of name[offset, length) is a newline or a backslash. */
static __always_inline bool word_needs_escape(struct scratch *s, __u32 offset, __u32 length)
{
	__u64 word = *(__u64 *)&s->name[offset];
	__u64 newline = word ^ EVERY_BYTE('\n');
	__u64 backslash = word ^ EVERY_BYTE('\\');
	__u64 past_end = 0;

	if (offset >= length)
		return false;
	if (length - offset < 8)	/* bytes past the end never match */
		past_end = ~0ULL << ((length - offset) * 8);
	return has_zero_byte(newline | past_end) || has_zero_byte(backslash | past_end);
}

struct name_escape {
	__u32 length;
	__u32 written;
};

/* As status's seq_escape_str(..., ESCAPE_SPACE | ESCAPE_SPECIAL, "\n\\"). */
static long escape_name_char(__u32 index, struct name_escape *e)
{
	struct scratch *s = scratch();
	__u32 out = e->written;
	char c;

	if (!s || index >= e->length || out > sizeof(s->escaped) - 2)
		return 1;
	c = s->name[index & (TASK_NAME_SIZE - 1)];
	if (c == '\n' || c == '\\') {
		s->escaped[out] = '\\';
		s->escaped[out + 1] = c == '\n' ? 'n' : '\\';
		e->written = out + 2;
	} else {
		s->escaped[out] = c;
		e->written = out + 1;
	}
	return 0;
}

/* Keep line[start, end) as `column`, spaces after it. */
static __always_inline void column_keep(struct column *column, struct line *line,
					__u32 start, __u32 end)
{
	__u32 length = end - start;

	if (length > COLUMN_SIZE)
		length = COLUMN_SIZE + 1;	/* never used: too wide to keep */
	column->length = length;
	for (int i = 0; i < COLUMN_SIZE; i++)
		column->text[i] = i < length ? line->text[(start + i) & (LINE_SIZE - 1)] : ' ';
}

/* A kept column at line[at]; where the line goes on. */
static __always_inline __u32 column_put(struct line *line, __u32 at, struct column *column)
{
	at &= LINE_SIZE - 1;
	if (at > LINE_SIZE - COLUMN_SIZE)
		return at;
	*(__u64 *)&line->text[at] = *(__u64 *)&column->text[0];
	*(__u64 *)&line->text[at + 8] = *(__u64 *)&column->text[8];
	*(__u64 *)&line->text[at + 16] = *(__u64 *)&column->text[16];
	return at + column->length;
}

static __always_inline bool column_usable(struct column *column)
{
	return column->length <= COLUMN_SIZE;
}

SEC("iter/task")
int task(struct bpf_iter__task *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct seq_file *seq = meta->seq;
	struct task_struct *task = ctx->task;
	struct session *session;
	struct pid_namespace *pid_ns;
	struct name_escape escape = {};
	struct scratch *s;
	__u64 utime, stime, start_time;
	int ppid = 0, threads = 0;
	__u32 length, offset, at, uid;
	__u32 tgid_end, ppid_start, uid_start, uid_end, threads_start, threads_end, rss_start;
	struct process_columns *p;
	bool escaping = false, same_process, same_uid;

	/* Only the header needs the session: skip the lookup on every other thread. */
	if (meta->seq_num == 0 || !task) {
		session = session_get(meta);
		if (session && session_wants_header(session, meta, task)) {
			BPF_SEQ_PRINTF(seq, "%7s %7s %7s %10s %5s %4s %4s %7s %3s ", "tgid", "tid",
				       "ppid", "uid", "state", "prio", "nice", "threads", "cpu");
			BPF_SEQ_PRINTF(seq, "%10s %10s %10s %9s %s\n",
				       "utime", "stime", "start", "rss", "comm");
		}
		if (!task) {
			session_end(meta);
			return 0;
		}
	}
	s = scratch();
	if (!s)
		return 0;
	if (!seq->count)	/* a new buffer: nothing kept from the last one is used */
		s->reader.buffer++;

	if (s->reader.session_id != meta->session_id) {
		session = session_get(meta);
		if (!session)
			return 0;
		s->reader.session_id = meta->session_id;
		pid_ns = walk_pid_ns(&session->opened);
		s->reader.pid_ns = (__u64)pid_ns;
		s->reader.pid_ns_level = pid_ns ? BPF_CORE_READ(pid_ns, level) : 0;
		s->reader.user_ns = walk_user_ns(&session->opened, seq);
		s->reader.boottime_offset = boottime_offset_ns();
		s->reader.have_uid = false;
	}
	pid_ns = (struct pid_namespace *)s->reader.pid_ns;
	/* A reader's pid namespace shows only the tasks it numbers, as its /proc. */
	if (s->reader.pid_ns_level && !pid_nr_ns(task->thread_pid, pid_ns))
		return 0;
	uid = task->real_cred->uid.val;
	/* The process's columns, kept from its previous thread shown or made now. */
	p = &s->processes[task->tgid & (PROCESS_SLOTS - 1)];
	same_process = p->session_id == meta->session_id && p->buffer == s->reader.buffer &&
		       task->sighand &&
		       p->signal == (__u64)task->signal && p->mm == (__u64)task->mm &&
		       p->real_parent == (__u64)task->real_parent &&
		       p->flags == (task->flags & PF_KTHREAD) &&
		       column_usable(&p->tgid) && column_usable(&p->ppid) &&
		       column_usable(&p->threads) && column_usable(&p->rss);
	same_uid = same_process && p->uid_valid && p->uid == uid && column_usable(&p->uid_text);
	if (!same_uid && (!s->reader.have_uid || s->reader.uid != uid)) {
		s->reader.mapped_uid = from_kuid_munged(s->reader.user_ns, uid);
		s->reader.uid = uid;
		s->reader.have_uid = true;
	}
	task_cputime_adjusted(task, &utime, &stime);
	start_time = task->start_boottime + s->reader.boottime_offset;

	line_clear(&s->line);
	if (same_process) {
		at = column_put(&s->line, 0, &p->tgid);
	} else if (s->reader.pid_ns && s->reader.pid_ns_level == 0) {
		/* The numbers a task holds are those of the initial namespace. */
		at = put_signed(&s->line, 0, task->tgid, 7);
	} else {
		at = put_signed(&s->line, 0,
				pid_nr_ns(BPF_CORE_READ(task, signal, pids[PIDTYPE_TGID]), pid_ns), 7);
	}
	tgid_end = at;
	if (s->reader.pid_ns && s->reader.pid_ns_level == 0)
		at = put_signed(&s->line, at, task->pid, 7);
	else
		at = put_signed(&s->line, at, pid_nr_ns(task->thread_pid, pid_ns), 7);
	ppid_start = at;
	if (same_process) {
		at = column_put(&s->line, at, &p->ppid);
	} else {
		/* do_task_stat() reads these under lock_task_sighand(): 0 once it fails. */
		if (task->sighand) {
			if (s->reader.pid_ns && s->reader.pid_ns_level == 0)
				ppid = task->real_parent->tgid;
			else
				ppid = pid_nr_ns(BPF_CORE_READ(task, real_parent, signal,
							       pids[PIDTYPE_TGID]), pid_ns);
			threads = task->signal->nr_threads;
		}
		at = put_signed(&s->line, at, ppid, 7);
	}
	uid_start = at;
	if (same_uid)
		at = column_put(&s->line, at, &p->uid_text);
	else
		at = put_number(&s->line, at, s->reader.mapped_uid, NUMBER(10, 10, 0));
	uid_end = at;
	at = put_char(&s->line, at, task_state_letter(task), 5);
	at = put_signed(&s->line, at, task->prio - MAX_RT_PRIO, 4);
	at = put_signed(&s->line, at, task->static_prio - DEFAULT_PRIO, 4);
	threads_start = at;
	if (same_process)
		at = column_put(&s->line, at, &p->threads);
	else
		at = put_signed(&s->line, at, threads, 7);
	threads_end = at;
	at = put_signed(&s->line, at, task_cpu(task), 3);
	at = put_number(&s->line, at, utime / NSEC_PER_CLOCK_TICK, NUMBER(10, 10, 0));
	at = put_number(&s->line, at, stime / NSEC_PER_CLOCK_TICK, NUMBER(10, 10, 0));
	at = put_number(&s->line, at, start_time / NSEC_PER_CLOCK_TICK, NUMBER(10, 10, 0));
	rss_start = at;
	if (same_process)
		at = column_put(&s->line, at, &p->rss);
	else
		at = put_number(&s->line, at, task_rss(task), NUMBER(9, 10, 0));
	at &= LINE_SIZE - 1;

	if (!same_process && task->sighand) {
		p->session_id = meta->session_id;
		p->buffer = s->reader.buffer;
		p->signal = (__u64)task->signal;
		p->mm = (__u64)task->mm;
		p->real_parent = (__u64)task->real_parent;
		p->flags = task->flags & PF_KTHREAD;
		column_keep(&p->tgid, &s->line, 0, tgid_end);
		column_keep(&p->ppid, &s->line, ppid_start, uid_start);
		column_keep(&p->threads, &s->line, threads_start, threads_end);
		column_keep(&p->rss, &s->line, rss_start, at);
		p->uid_valid = false;
	}
	if (!same_uid && p->session_id == meta->session_id) {
		p->uid = uid;
		p->uid_valid = true;
		column_keep(&p->uid_text, &s->line, uid_start, uid_end);
	}

	length = task_name(s->name, task);
	for (offset = 0; offset < TASK_NAME_SIZE; offset += 8)
		escaping |= word_needs_escape(s, offset, length);
	if (!escaping) {
		/* The usual case: the whole line goes out in one write. */
		for (offset = 0; offset < length && offset < TASK_NAME_SIZE; offset += 8) {
			*(__u64 *)&s->line.text[at + offset] = *(__u64 *)&s->name[offset];
			asm volatile("" ::: "memory");	/* a loop, not a memmove() call */
		}
		length &= TASK_NAME_SIZE - 1;
		s->line.text[at + length] = '\n';
		bpf_seq_write(seq, s->line.text, at + length + 1);
		return 0;
	}
	bpf_seq_write(seq, s->line.text, at);
	escape.length = length;
	bpf_loop(TASK_NAME_SIZE, escape_name_char, &escape, 0);
	bpf_seq_write(seq, s->escaped, escape.written & (sizeof(s->escaped) - 1));
	bpf_seq_write(seq, "\n", 1);
	return 0;
}
