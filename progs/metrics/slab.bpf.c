// SPDX-License-Identifier: GPL-2.0
/*
 * metrics/slab.prom: every slab cache /proc/slabinfo lists, by name: its
 * objects in use (active_objs), its object size (objsize, s->size) and the
 * memory its slabs take (num_slabs x pages per slab x page size), counted as
 * the kmem_cache view counts them (progs/slabinfo.h). One series per cache
 * and metric: a few hundred caches, so a few hundred series each.
 *
 * Three programs, one metric each, printing a cache's sample at each cache:
 * the file is their three walks one after another (metrics.py), so each
 * metric's samples are together, whatever the number of caches. The three
 * walks are three moments: a cache created or destroyed between them is in
 * some metrics and not the others.
 *
 * Cache names are label values, escaped as the format requires
 * (metric_label() in metrics.h) and cut at METRIC_LABEL_SIZE - 1 bytes.
 */
#include "metrics.h"
#include "slabinfo.h"

char LICENSE[] SEC("license") = "GPL";

extern int CONFIG_PAGE_SHIFT __kconfig __weak;

enum slab_metric { OBJECTS, OBJECT_SIZE, BYTES };

static __always_inline void print_header(struct seq_file *seq, enum slab_metric metric)
{
	if (metric == OBJECTS)
		BPF_SEQ_PRINTF(seq, "# HELP iterfs_slab_objects Objects in use in each slab cache "
			       "(/proc/slabinfo's active_objs).\n"
			       "# TYPE iterfs_slab_objects gauge\n");
	else if (metric == OBJECT_SIZE)
		BPF_SEQ_PRINTF(seq, "# HELP iterfs_slab_object_size_bytes The size of each slab "
			       "cache's objects, with their metadata (/proc/slabinfo's objsize).\n"
			       "# TYPE iterfs_slab_object_size_bytes gauge\n");
	else
		BPF_SEQ_PRINTF(seq, "# HELP iterfs_slab_bytes Memory the slabs of each slab cache "
			       "take (/proc/slabinfo's num_slabs x pagesperslab pages).\n"
			       "# TYPE iterfs_slab_bytes gauge\n");
}

/* One cache's sample of `metric`, after the header at the first cache. A
 * cache whose counters the kernel lacks has only its object size. */
static __always_inline int print_sample(struct bpf_iter__kmem_cache *ctx, enum slab_metric metric)
{
	struct seq_file *seq = ctx->meta->seq;
	struct kmem_cache *s = ctx->s;
	struct metric_label label;
	struct counters sum;

	if (!s)
		return 0;
	if (ctx->meta->seq_num == 0)
		print_header(seq, metric);
	if (metric != OBJECT_SIZE && !count(s, &sum))
		return 0;
	metric_label(&label, s->name);
	if (metric == OBJECTS)
		BPF_SEQ_PRINTF(seq, "iterfs_slab_objects{cache=\"%s\"} %lu\n", label.escaped,
			       sum.objects - sum.free);
	else if (metric == OBJECT_SIZE)
		BPF_SEQ_PRINTF(seq, "iterfs_slab_object_size_bytes{cache=\"%s\"} %u\n",
			       label.escaped, s->size);
	else
		BPF_SEQ_PRINTF(seq, "iterfs_slab_bytes{cache=\"%s\"} %lu\n", label.escaped,
			       sum.slabs << ((s->oo.x >> OO_SHIFT) + CONFIG_PAGE_SHIFT));
	return 0;
}

SEC("iter/kmem_cache")
int slab_objects(struct bpf_iter__kmem_cache *ctx)
{
	return print_sample(ctx, OBJECTS);
}

SEC("iter/kmem_cache")
int slab_object_size(struct bpf_iter__kmem_cache *ctx)
{
	return print_sample(ctx, OBJECT_SIZE);
}

SEC("iter/kmem_cache")
int slab_bytes(struct bpf_iter__kmem_cache *ctx)
{
	return print_sample(ctx, BYTES);
}
