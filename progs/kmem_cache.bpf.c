// SPDX-License-Identifier: GPL-2.0
/*
 * kmem_cache: /proc/slabinfo's format (mm/slab_common.c, cache_show; SLUB's
 * get_slabinfo in mm/slub.c), one line per cache of the slab_caches list, in
 * that list's order, as /proc walks it.
 *
 * active_objs is "?": SLUB counts it as total_objects less the free objects of
 * every node's partial slabs, which it counts walking the partial lists under
 * the node's list_lock, a spinlock a BPF program cannot take. Walked without
 * it, the list can change under the walk, and a number computed so could be
 * wrong without saying so. Every other column is what /proc computes:
 * num_objs and num_slabs are the sums of the nodes' total_objects and nr_slabs
 * counters, and active_slabs is num_slabs, as SLUB defines it. Those counters
 * exist with CONFIG_SLUB_DEBUG only (without it there is no /proc/slabinfo);
 * a kernel without them, or a node count the program cannot find, shows "?"
 * for them too.
 */
#include "iterfs.h"

char LICENSE[] SEC("license") = "GPL";

#define OO_SHIFT 16			/* mm/slub.c: kmem_cache_order_objects */
#define OO_MASK ((1U << OO_SHIFT) - 1)
#define MAX_NUMNODES 1024		/* 1 << CONFIG_NODES_SHIFT, at most 10 */
#define MAX_CACHES 65536		/* a bound for walking slab_caches */
#define UNKNOWN "?"

/* The two header lines of print_slabinfo_header(). */
#define HEADER "slabinfo - version: 2.1\n"						\
	"# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"\
	" : tunables <limit> <batchcount> <sharedfactor>"				\
	" : slabdata <active_slabs> <num_slabs> <sharedavail>\n"

/*
 * nr_node_ids: how many entries of kmem_cache.node[] exist, the bound of
 * for_each_kmem_cache_node(). The array is declared MAX_NUMNODES long but each
 * kmem_cache is allocated with only nr_node_ids of them, and nr_node_ids is in
 * neither BTF nor (without CONFIG_KALLSYMS_ALL) kallsyms. The boot cache named
 * "kmem_cache", of which every kmem_cache is an object, has
 * object_size = offsetof(struct kmem_cache, node) + nr_node_ids * sizeof(pointer)
 * (kmem_cache_init). It is fixed at boot, so found once: 0 until then.
 */
static __u32 node_ids;

struct cache_walk {
	unsigned long list;	/* &kmem_cache.list of the cache to look at */
	unsigned long first;
	__u32 node_ids;
};

static __always_inline bool is_kmem_cache(const char *name)
{
	const char wanted[] = "kmem_cache";

#pragma unroll
	for (int i = 0; i < sizeof(wanted); i++)
		if (name[i] != wanted[i])
			return false;
	return true;
}

static long look_at_cache(__u32 index, struct cache_walk *walk)
{
	struct kmem_cache *cache = (void *)(walk->list -
					    bpf_core_field_offset(struct kmem_cache, list));
	unsigned long node_offset = bpf_core_field_offset(struct kmem_cache, node);
	unsigned long next = 0;
	char name[sizeof("kmem_cache") + 1] = {};
	unsigned int object_size;

	if (bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(cache, name)) ==
	    sizeof("kmem_cache") && is_kmem_cache(name)) {
		object_size = BPF_CORE_READ(cache, object_size);
		if (object_size > node_offset &&
		    (object_size - node_offset) % sizeof(void *) == 0 &&
		    (object_size - node_offset) / sizeof(void *) <= MAX_NUMNODES)
			walk->node_ids = (object_size - node_offset) / sizeof(void *);
		return 1;
	}
	/*
	 * Without slab_mutex: a cache destroyed meanwhile has a poisoned next,
	 * which cannot be read; the walk then ends and is tried again later.
	 */
	if (bpf_probe_read_kernel(&next, sizeof(next), &cache->list.next) || !next ||
	    next == walk->first)
		return 1;
	walk->list = next;
	return 0;
}

/*
 * "kmem_cache" is the oldest cache, last in slab_caches, so it is ahead of any
 * cache the iterator shows.
 */
static __u32 find_node_ids(struct kmem_cache *s)
{
	struct cache_walk walk = {};

	walk.list = walk.first = (unsigned long)s + bpf_core_field_offset(struct kmem_cache, list);
	bpf_loop(MAX_CACHES, look_at_cache, &walk, 0);
	return walk.node_ids;
}

struct counters {
	unsigned long slabs;
	unsigned long objects;
};

/* SLUB's get_slabinfo(): the sums over the nodes of nr_slabs and total_objects. */
static bool count(struct kmem_cache *s, struct counters *sum)
{
	unsigned long nodes = (unsigned long)s + bpf_core_field_offset(struct kmem_cache, node);
	struct kmem_cache_node *n;

	if (!bpf_core_field_exists(struct kmem_cache_node, nr_slabs) ||
	    !bpf_core_field_exists(struct kmem_cache_node, total_objects))
		return false;
	if (!node_ids)
		node_ids = find_node_ids(s);
	if (!node_ids)
		return false;
	for (__u32 node = 0; node < MAX_NUMNODES && node < node_ids; node++) {
		n = NULL;
		bpf_probe_read_kernel(&n, sizeof(n), (void *)(nodes + node * sizeof(n)));
		if (!n)
			continue;
		sum->slabs += BPF_CORE_READ(n, nr_slabs.counter);
		sum->objects += BPF_CORE_READ(n, total_objects.counter);
	}
	return true;
}

SEC("iter/kmem_cache")
int kmem_cache(struct bpf_iter__kmem_cache *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct seq_file *seq = meta->seq;
	struct kmem_cache *s = ctx->s;
	struct counters sum = {};
	struct session *session;
	unsigned int order;

	/* Only the header needs the session. */
	if (meta->seq_num == 0 || !s) {
		session = session_get(meta);
		if (session && session_wants_header(session, meta, s))
			BPF_SEQ_PRINTF(seq, HEADER);
		if (!s) {
			session_end(meta);
			return 0;
		}
	}

	order = s->oo.x >> OO_SHIFT;
	if (count(s, &sum))
		BPF_SEQ_PRINTF(seq, "%-17s %6s %6lu %6u %4u %4d : tunables %4u %4u %4u"
			       " : slabdata %6lu %6lu %6lu\n",
			       s->name, UNKNOWN, sum.objects, s->size, s->oo.x & OO_MASK,
			       1 << order, 0, 0, 0, sum.slabs, sum.slabs, 0);
	else
		BPF_SEQ_PRINTF(seq, "%-17s %6s %6s %6u %4u %4d : tunables %4u %4u %4u"
			       " : slabdata %6s %6s %6lu\n",
			       s->name, UNKNOWN, UNKNOWN, s->size, s->oo.x & OO_MASK,
			       1 << order, 0, 0, 0, UNKNOWN, UNKNOWN, 0);
	return 0;
}
