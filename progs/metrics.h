/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What metric programs (metrics/<name>.prom: progs/metrics/, and drop-ins named
 * <name>.prom.bpf.c) share: a walk's counts, kept until its final call.
 *
 * A metric program counts at every object and prints only in the final call
 * (no object), once the walk is over. Since nothing is printed before, the
 * kernel's bpf_seq_read() runs the whole walk within one read(2): it returns
 * to the reader only with text, or with EAGAIN after a million objects that
 * printed nothing, which the reading thread reads again at once (iterfs's
 * binding does). So the counts are kept under the reading thread's id, which
 * no other walk can use while this one runs, and marked with the walk's
 * session id (unique per iterator), so that what a walk given up midway left
 * behind is never added to the next. The final call prints and deletes them.
 */
#ifndef ITERFS_METRICS_H
#define ITERFS_METRICS_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

/* A drop-in metric readable by every user (node_exporter runs as `prometheus`):
 * iterfs.h's ITERFS_WORLD_READABLE, for programs that include only this. */
#define ITERFS_METRIC_WORLD_READABLE \
	static const char iterfs_access[] \
		__attribute__((section(".iterfs.access"), used)) = "world-readable"

/* Threads that may read a metric at once, with room to spare. */
#define METRIC_WALKS	4096

/* The map of walks, by reading thread, of values of type `counts`, whose
 * first member is `__u64 session_id`. */
#define METRIC_WALKS_MAP(counts)				\
	struct {						\
		__uint(type, BPF_MAP_TYPE_HASH);		\
		__uint(max_entries, METRIC_WALKS);		\
		__type(key, __u32);				\
		__type(value, counts);				\
	} metric_walks SEC(".maps")

static __always_inline __u32 reading_thread(void)
{
	return (__u32)bpf_get_current_pid_tgid();
}

/* This walk's counts, zero at its first object; NULL if the map is full. */
#define metric_walk(meta, counts)					\
	({								\
		__u32 ___tid = reading_thread();			\
		counts *___walk = bpf_map_lookup_elem(&metric_walks, &___tid); \
		if (!___walk || ___walk->session_id != (meta)->session_id) { \
			counts ___fresh = { .session_id = (meta)->session_id }; \
			bpf_map_update_elem(&metric_walks, &___tid, &___fresh, BPF_ANY); \
			___walk = bpf_map_lookup_elem(&metric_walks, &___tid); \
		}							\
		___walk;						\
	})

/* The walk is over: its counts go. */
#define metric_walk_end()						\
	({								\
		__u32 ___tid = reading_thread();			\
		bpf_map_delete_elem(&metric_walks, &___tid);		\
	})

/* What a program returns where it could not keep its counts (the map full):
 * the kernel makes the read fail with EAGAIN, rather than print wrong numbers. */
#define METRIC_NO_ROOM	1

/* The longest kernel string metric_label() takes, with its NUL: longer ones are cut. */
#define METRIC_LABEL_SIZE	64

/* A kernel string (a cache's name, a task's comm) as a label value: `\`, `"`
 * and a newline escaped as `\\`, `\"` and `\n`, as the text format requires. */
struct metric_label {
	char raw[METRIC_LABEL_SIZE];
	char escaped[2 * METRIC_LABEL_SIZE];
	__u32 length;
};

/*
 * 0, read from memory where the verifier cannot see the value: a length that
 * starts at a constant 0 is known to the verifier after the loop, which then
 * verifies the loop once for every length it can reach; started from this,
 * the callback is verified once.
 */
static volatile __u32 metric_label_start __attribute__((unused));

/* One byte of the string, a bpf_loop() callback. */
static __attribute__((unused)) long metric_label_byte(__u32 i, struct metric_label *label)
{
	char c = label->raw[i & (METRIC_LABEL_SIZE - 1)];
	__u32 length = label->length;

	if (!c)
		return 1;
	if (c == '\\' || c == '"' || c == '\n') {
		label->escaped[length++ & (2 * METRIC_LABEL_SIZE - 1)] = '\\';
		c = c == '\n' ? 'n' : c;
	}
	label->escaped[length++ & (2 * METRIC_LABEL_SIZE - 1)] = c;
	label->length = length;
	return 0;
}

/* label->escaped: the kernel string at `string`, escaped ("" if unreadable). */
static __always_inline void metric_label(struct metric_label *label, const char *string)
{
	if (bpf_probe_read_kernel_str(label->raw, sizeof(label->raw), string) < 0)
		label->raw[0] = 0;
	label->length = metric_label_start;
	bpf_loop(METRIC_LABEL_SIZE, metric_label_byte, label, 0);
	label->escaped[label->length & (2 * METRIC_LABEL_SIZE - 1)] = 0;
}

#endif /* ITERFS_METRICS_H */
