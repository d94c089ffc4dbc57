/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A slab cache's counters as SLUB's get_slabinfo() (mm/slub.c) adds them up
 * for /proc/slabinfo: what the kmem_cache view and metrics/slab.prom share.
 *
 * count() gives num_objs and num_slabs, the sums of the nodes' total_objects
 * and nr_slabs counters, and the free objects of every node's partial slabs,
 * which SLUB counts walking each node's partial list under the node's
 * list_lock (count_partial_free_approx()), a spinlock a BPF program cannot
 * take; here the list is walked without it, as far as the kernel's own walk
 * goes (all of it up to MAX_PARTIAL_TO_SCAN slabs; past that, half that from
 * each end, scaled to the list's length, as the kernel does). A slab that
 * leaves the list during the walk (its next pointer poisoned, or the slab now
 * another cache's) ends the walk, and what was counted until then is scaled
 * to the list's length in the same way. Each node's free count is at most its
 * total_objects, so num_objs - free is never negative and never above
 * num_objs. The counters exist with CONFIG_SLUB_DEBUG only (without it there
 * is no /proc/slabinfo): count() is false without them, or where the program
 * cannot find the node count.
 */
#ifndef ITERFS_SLABINFO_H
#define ITERFS_SLABINFO_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#define OO_SHIFT 16			/* mm/slub.c: kmem_cache_order_objects */
#define OO_MASK ((1U << OO_SHIFT) - 1)
#define MAX_NUMNODES 1024		/* 1 << CONFIG_NODES_SHIFT, at most 10 */
#define MAX_CACHES 65536		/* a bound for walking slab_caches */
#define MAX_PARTIAL_TO_SCAN 10000	/* mm/slub.c: count_partial_free_approx() */
#define LIST_PREV offsetof(struct list_head, prev)

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
	unsigned long free;
};

/*
 * 0, read from memory where the verifier cannot see the value. A count a
 * bpf_loop callback adds to, started at a constant 0, is a known value when
 * the caller tests it after the loop: the verifier then tracks it exactly and
 * walks the loop once for every value it can take. Started from this, it is
 * any number to the verifier, and the loop is verified once.
 */
static volatile unsigned long zero;

/* One walk along a node's partial list, from its head, one way. */
struct partial_walk {
	unsigned long head;		/* &kmem_cache_node.partial */
	unsigned long at;		/* the list_head the walk stands on */
	struct kmem_cache *cache;
	unsigned long scanned;
	unsigned long free;
	bool backwards;
	bool whole;			/* back at the head: every slab counted */
	bool left;			/* a slab left the list under the walk */
};

static long partial_step(__u32 index, struct partial_walk *walk)
{
	unsigned long link = 0;
	unsigned int objects, inuse;
	struct slab *slab;

	/* A slab taken off the list meanwhile has a poisoned link: unreadable. */
	if (bpf_probe_read_kernel(&link, sizeof(link),
				  (void *)(walk->at + (walk->backwards ? LIST_PREV : 0))) || !link) {
		walk->left = true;
		return 1;
	}
	if (link == walk->head) {
		walk->whole = true;
		return 1;
	}
	slab = (void *)(link - bpf_core_field_offset(struct slab, slab_list));
	if (BPF_CORE_READ(slab, slab_cache) != walk->cache) {
		walk->left = true;	/* freed, and now on another cache's list */
		return 1;
	}
	objects = BPF_CORE_READ_BITFIELD_PROBED(slab, objects);
	inuse = BPF_CORE_READ_BITFIELD_PROBED(slab, inuse);
	if (inuse < objects)
		walk->free += objects - inuse;
	walk->scanned++;
	walk->at = link;
	return 0;
}

/*
 * The free objects on a node's partial slabs: count_partial_free_approx()
 * without the list_lock, bounded as it is, scaled from what was counted where
 * the walk could not count every slab.
 */
static unsigned long partial_free(struct kmem_cache *s, struct kmem_cache_node *n,
				  unsigned long total_objects)
{
	unsigned long nr_partial = BPF_CORE_READ(n, nr_partial);
	struct partial_walk walk = {
		.head = (unsigned long)n + bpf_core_field_offset(struct kmem_cache_node, partial),
		.cache = s,
		.scanned = zero,
		.free = zero,
		.whole = zero,
		.left = zero,
	};
	bool long_list = nr_partial > MAX_PARTIAL_TO_SCAN;
	unsigned long free;
	bool whole;

	if (!nr_partial)
		return 0;
	/*
	 * The whole list, up to MAX_PARTIAL_TO_SCAN slabs and one step more, back
	 * to the head. The slabs a walk may count are bpf_loop's bound, not a test
	 * in partial_step(), which the verifier would follow for every count.
	 */
	walk.at = walk.head;
	bpf_loop(long_list ? MAX_PARTIAL_TO_SCAN / 2 : MAX_PARTIAL_TO_SCAN + 1, partial_step,
		 &walk, 0);
	whole = walk.whole;
	if (long_list && !walk.whole && !walk.left) {	/* the other end too */
		walk.at = walk.head;
		walk.backwards = true;
		bpf_loop(MAX_PARTIAL_TO_SCAN / 2, partial_step, &walk, 0);
	}
	free = walk.free;
	if (!whole && walk.scanned)
		free = free * nr_partial / walk.scanned;
	return free < total_objects ? free : total_objects;
}

struct node_walk {
	struct kmem_cache *cache;
	unsigned long nodes;		/* &kmem_cache.node[0] */
	struct counters sum;
};

static long count_node(__u32 node, struct node_walk *walk)
{
	struct kmem_cache_node *n = NULL;
	unsigned long objects;

	bpf_probe_read_kernel(&n, sizeof(n), (void *)(walk->nodes + node * sizeof(n)));
	if (!n)
		return 0;
	objects = BPF_CORE_READ(n, total_objects.counter);
	walk->sum.slabs += BPF_CORE_READ(n, nr_slabs.counter);
	walk->sum.objects += objects;
	walk->sum.free += partial_free(walk->cache, n, objects);
	return 0;
}

/*
 * SLUB's get_slabinfo(): the sums over the nodes of nr_slabs and total_objects,
 * and of the free objects on their partial slabs.
 */
static bool count(struct kmem_cache *s, struct counters *sum)
{
	struct node_walk walk = {
		.cache = s,
		.nodes = (unsigned long)s + bpf_core_field_offset(struct kmem_cache, node),
	};

	if (!bpf_core_field_exists(struct kmem_cache_node, nr_slabs) ||
	    !bpf_core_field_exists(struct kmem_cache_node, total_objects))
		return false;
	if (!node_ids)
		node_ids = find_node_ids(s);
	if (!node_ids)
		return false;
	bpf_loop(node_ids < MAX_NUMNODES ? node_ids : MAX_NUMNODES, count_node, &walk, 0);
	*sum = walk.sum;
	return true;
}

#endif /* ITERFS_SLABINFO_H */
