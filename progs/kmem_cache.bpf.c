// SPDX-License-Identifier: GPL-2.0
/*
 * kmem_cache: /proc/slabinfo's format (mm/slab_common.c, cache_show; SLUB's
 * get_slabinfo in mm/slub.c), one line per cache of the slab_caches list, in
 * that list's order, as /proc walks it.
 *
 * active_objs is num_objs less the free objects of every node's partial slabs,
 * as SLUB's get_slabinfo() computes it, counted without the node's list_lock
 * (progs/slabinfo.h, which metrics/slab.prom shares). num_objs and num_slabs
 * are the sums of the nodes' total_objects and nr_slabs counters, and
 * active_slabs is num_slabs, as SLUB defines it. Those counters exist with
 * CONFIG_SLUB_DEBUG only (without it there is no /proc/slabinfo); a kernel
 * without them, or a node count the program cannot find, shows "?" for every
 * counted column.
 */
#include "iterfs.h"
#include "slabinfo.h"

char LICENSE[] SEC("license") = "GPL";

#define UNKNOWN "?"

/* The two header lines of print_slabinfo_header(). */
#define HEADER "slabinfo - version: 2.1\n"						\
	"# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"\
	" : tunables <limit> <batchcount> <sharedfactor>"				\
	" : slabdata <active_slabs> <num_slabs> <sharedavail>\n"

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
		BPF_SEQ_PRINTF(seq, "%-17s %6lu %6lu %6u %4u %4d : tunables %4u %4u %4u"
			       " : slabdata %6lu %6lu %6lu\n",
			       s->name, sum.objects - sum.free, sum.objects, s->size, s->oo.x & OO_MASK,
			       1 << order, 0, 0, 0, sum.slabs, sum.slabs, 0);
	else
		BPF_SEQ_PRINTF(seq, "%-17s %6s %6s %6u %4u %4d : tunables %4u %4u %4u"
			       " : slabdata %6s %6s %6lu\n",
			       s->name, UNKNOWN, UNKNOWN, s->size, s->oo.x & OO_MASK,
			       1 << order, 0, 0, 0, UNKNOWN, UNKNOWN, 0);
	return 0;
}
