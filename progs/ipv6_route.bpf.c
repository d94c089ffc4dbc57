// SPDX-License-Identifier: GPL-2.0
/*
 * ipv6_route: /proc/net/ipv6_route, line for line
 * (net/ipv6/ip6_fib.c, ipv6_route_native_seq_show).
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "constants.h"

/* No header and no numbering, so no session state: iterfs.h would only add its map. */

char LICENSE[] SEC("license") = "GPL";

#define RTF_GATEWAY	0x0002

/*
 * A route that uses a nexthop object takes the object's fib6_nh, or that of the
 * first member of a group; NULL where there is none. Read with CO-RE probes: the
 * verifier sees nh_grp as its union twin nh_info.
 */
static __always_inline struct fib6_nh *nexthop_fib6_nh(struct nexthop *nh)
{
	struct nh_group *nh_grp;
	struct nh_info *nhi;

	if (BPF_CORE_READ(nh, is_group)) {
		nh_grp = BPF_CORE_READ(nh, nh_grp);
		if (!nh_grp || BPF_CORE_READ(nh_grp, num_nh) == 0)
			return NULL;
		nh = BPF_CORE_READ(nh_grp, nh_entries[0].nh);
		if (!nh)
			return NULL;
	}
	nhi = BPF_CORE_READ(nh, nh_info);
	if (!nhi || BPF_CORE_READ(nhi, family) != AF_INET6)
		return NULL;
	return &nhi->fib6_nh;
}

SEC("iter/ipv6_route")
int ipv6_route(struct bpf_iter__ipv6_route *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct fib6_info *rt = ctx->rt;
	struct fib6_nh *fib6_nh;
	struct net_device *dev;
	unsigned int flags;

	if (!rt)
		return 0;

	fib6_nh = &rt->fib6_nh[0];
	if (rt->nh)
		fib6_nh = nexthop_fib6_nh(rt->nh);
	/* /proc adds RTF_GATEWAY from the nexthop's gateway, not from the route's flags. */
	flags = rt->fib6_flags;

	BPF_SEQ_PRINTF(seq, "%pi6 %02x ", &rt->fib6_dst.addr, rt->fib6_dst.plen);
	if (bpf_core_field_exists(rt->fib6_src))	/* CONFIG_IPV6_SUBTREES */
		BPF_SEQ_PRINTF(seq, "%pi6 %02x ", &rt->fib6_src.addr, rt->fib6_src.plen);
	else
		BPF_SEQ_PRINTF(seq, "00000000000000000000000000000000 00 ");
	if (fib6_nh && BPF_CORE_READ(fib6_nh, nh_common.nhc_gw_family)) {
		flags |= RTF_GATEWAY;
		BPF_SEQ_PRINTF(seq, "%pi6", &fib6_nh->nh_common.nhc_gw.ipv6);
	} else {
		BPF_SEQ_PRINTF(seq, "00000000000000000000000000000000");
	}

	dev = fib6_nh ? BPF_CORE_READ(fib6_nh, nh_common.nhc_dev) : NULL;
	/* Where /proc once printed the route's use count it now prints 0. */
	BPF_SEQ_PRINTF(seq, " %08x %08x %08x %08x %8s\n",
		       rt->fib6_metric, rt->fib6_ref.refs.counter, 0, flags,
		       dev ? dev->name : "");
	return 0;
}
