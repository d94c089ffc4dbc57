// SPDX-License-Identifier: GPL-2.0
/*
 * metrics/slab.prom: every slab cache /proc/slabinfo lists, by name: its
 * objects in use (active_objs), its object size (objsize, s->size) and the
 * memory its slabs take (num_slabs x pages per slab x page size), counted as
 * the kmem_cache view counts them (progs/slabinfo.h). One series per cache
 * and metric: a few hundred caches, so a few hundred series each.
 *
 * The text format wants each metric's samples together, and one call of an
 * iterator program may print one seq_file buffer (32 KiB) at most. So the
 * program prints one metric in each of its first three calls, each a walk of
 * every cache with the open-coded kmem_cache iterator (which takes slab_mutex:
 * a sleepable program), and nothing in the others. The three walks are three
 * moments: a cache created or destroyed between them is in some and not the
 * others. A metric of more than about 500 caches outgrows the buffer and the
 * read fails with E2BIG.
 *
 * Cache names are label values: `\`, `"` and a newline are escaped as the
 * format requires, and a name is cut at NAME_SIZE - 1 bytes.
 */
#include "metrics.h"
#include "slabinfo.h"

char LICENSE[] SEC("license") = "GPL";

#define NAME_SIZE 64
#define METRICS 3

extern int CONFIG_PAGE_SHIFT __kconfig __weak;
extern int bpf_iter_kmem_cache_new(struct bpf_iter_kmem_cache *it) __ksym __weak;
extern struct kmem_cache *bpf_iter_kmem_cache_next(struct bpf_iter_kmem_cache *it) __ksym __weak;
extern void bpf_iter_kmem_cache_destroy(struct bpf_iter_kmem_cache *it) __ksym __weak;

/* A cache's name as a label value: `\` `"` and a newline escaped. */
struct label {
	char name[NAME_SIZE];
	char escaped[2 * NAME_SIZE];
	__u32 out;
};

/* One byte of the name, a bpf_loop() callback: verified once, not per byte. */
static long escape_byte(__u32 i, struct label *label)
{
	char c = label->name[i & (NAME_SIZE - 1)];
	__u32 out = label->out;

	if (!c)
		return 1;
	if (c == '\\' || c == '"' || c == '\n') {
		label->escaped[out++ & (2 * NAME_SIZE - 1)] = '\\';
		c = c == '\n' ? 'n' : c;
	}
	label->escaped[out++ & (2 * NAME_SIZE - 1)] = c;
	label->out = out;
	return 0;
}

static __always_inline void escape(struct label *label, const char *name)
{
	if (bpf_probe_read_kernel_str(label->name, sizeof(label->name), name) < 0)
		label->name[0] = 0;
	label->out = zero;		/* unknown to the verifier: see slabinfo.h */
	bpf_loop(NAME_SIZE, escape_byte, label, 0);
	label->escaped[label->out & (2 * NAME_SIZE - 1)] = 0;
}

static void print_header(struct seq_file *seq, int metric)
{
	if (metric == 0)
		BPF_SEQ_PRINTF(seq, "# HELP iterfs_slab_objects Objects in use in each slab cache "
			       "(/proc/slabinfo's active_objs).\n"
			       "# TYPE iterfs_slab_objects gauge\n");
	else if (metric == 1)
		BPF_SEQ_PRINTF(seq, "# HELP iterfs_slab_object_size_bytes The size of each slab "
			       "cache's objects, with their metadata (/proc/slabinfo's objsize).\n"
			       "# TYPE iterfs_slab_object_size_bytes gauge\n");
	else
		BPF_SEQ_PRINTF(seq, "# HELP iterfs_slab_bytes Memory the slabs of each slab cache "
			       "take (/proc/slabinfo's num_slabs x pagesperslab pages).\n"
			       "# TYPE iterfs_slab_bytes gauge\n");
}

/* One metric, a sample for every cache (of the counted ones, every cache
 * whose counters the kernel has). */
static void print_metric(struct seq_file *seq, int metric)
{
	struct bpf_iter_kmem_cache it;
	struct counters sum;
	struct kmem_cache *s;
	struct label label;

	print_header(seq, metric);
	bpf_iter_kmem_cache_new(&it);
	while ((s = bpf_iter_kmem_cache_next(&it))) {
		escape(&label, s->name);
		if (metric == 1) {
			BPF_SEQ_PRINTF(seq, "iterfs_slab_object_size_bytes{cache=\"%s\"} %u\n",
				       label.escaped, s->size);
			continue;
		}
		if (!count(s, &sum))
			continue;
		if (metric == 0)
			BPF_SEQ_PRINTF(seq, "iterfs_slab_objects{cache=\"%s\"} %lu\n",
				       label.escaped, sum.objects - sum.free);
		else
			BPF_SEQ_PRINTF(seq, "iterfs_slab_bytes{cache=\"%s\"} %lu\n", label.escaped,
				       sum.slabs << ((s->oo.x >> OO_SHIFT) + CONFIG_PAGE_SHIFT));
	}
	bpf_iter_kmem_cache_destroy(&it);
}

SEC("iter.s/kmem_cache")
int slab_metrics(struct bpf_iter__kmem_cache *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	__u64 call = ctx->meta->seq_num;

	if (ctx->s) {
		if (call < METRICS)
			print_metric(seq, call);
		return 0;
	}
	/*
	 * The final call, whose seq_num is the last cache's (the kernel counts
	 * a call only once it has the next object): the metrics fewer caches
	 * than METRICS left unprinted. There is always a cache: kmem_cache's.
	 */
#pragma unroll
	for (int metric = 0; metric < METRICS; metric++)
		if (call < metric)
			print_metric(seq, metric);
	return 0;
}
