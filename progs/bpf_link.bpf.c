// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_link: one line per BPF link, with what `bpftool link show` shows of it:
 *
 *   id type prog attach target
 *
 * type is libbpf's name for it (libbpf_bpf_link_type_str), or the number when
 * the name is not known; prog is the id of the program linked. attach and
 * target are what the kernel tells of each type's attachment, "-" where it
 * tells nothing or this program does not read it:
 *
 *   iter            attach -             target: the iterator's target, and
 *                                        for a map's elements ":<map id>"
 *   tracing         attach: attach type  target -
 *   raw_tracepoint  attach -             target: the tracepoint
 *   cgroup          attach: attach type  target: the cgroup's id
 *   netns           attach: attach type  target: the network namespace's inode
 *
 * Attach types are libbpf's names (libbpf_bpf_attach_type_str), or numbers.
 */
#include "iterfs.h"
#include "compat.h"

char LICENSE[] SEC("license") = "GPL";

#define TYPE_NAME_SIZE 32
#define TARGET_SIZE 64

/* include/uapi/linux/bpf.h: enum bpf_link_type; values never change. */
enum {
	LINK_RAW_TRACEPOINT = 1,
	LINK_TRACING = 2,
	LINK_CGROUP = 3,
	LINK_ITER = 4,
	LINK_NETNS = 5,
};

/*
 * libbpf's link_type_name[] and attach_type_name[], indexed by enum
 * bpf_link_type and enum bpf_attach_type. Written by value rather than with
 * vmlinux.h's names, which the vmlinux.h of an older kernel lacks;
 * tests/test_bpf_objects.py checks every entry against the running kernel's BTF.
 */
static const char link_type_names[][TYPE_NAME_SIZE] = {
	[0] = "unspec",
	[1] = "raw_tracepoint",
	[2] = "tracing",
	[3] = "cgroup",
	[4] = "iter",
	[5] = "netns",
	[6] = "xdp",
	[7] = "perf_event",
	[8] = "kprobe_multi",
	[9] = "struct_ops",
	[10] = "netfilter",
	[11] = "tcx",
	[12] = "uprobe_multi",
	[13] = "netkit",
	[14] = "sockmap",
};

static const char attach_type_names[][TYPE_NAME_SIZE] = {
	[0] = "cgroup_inet_ingress",
	[1] = "cgroup_inet_egress",
	[2] = "cgroup_inet_sock_create",
	[3] = "cgroup_sock_ops",
	[4] = "sk_skb_stream_parser",
	[5] = "sk_skb_stream_verdict",
	[6] = "cgroup_device",
	[7] = "sk_msg_verdict",
	[8] = "cgroup_inet4_bind",
	[9] = "cgroup_inet6_bind",
	[10] = "cgroup_inet4_connect",
	[11] = "cgroup_inet6_connect",
	[12] = "cgroup_inet4_post_bind",
	[13] = "cgroup_inet6_post_bind",
	[14] = "cgroup_udp4_sendmsg",
	[15] = "cgroup_udp6_sendmsg",
	[16] = "lirc_mode2",
	[17] = "flow_dissector",
	[18] = "cgroup_sysctl",
	[19] = "cgroup_udp4_recvmsg",
	[20] = "cgroup_udp6_recvmsg",
	[21] = "cgroup_getsockopt",
	[22] = "cgroup_setsockopt",
	[23] = "trace_raw_tp",
	[24] = "trace_fentry",
	[25] = "trace_fexit",
	[26] = "modify_return",
	[27] = "lsm_mac",
	[28] = "trace_iter",
	[29] = "cgroup_inet4_getpeername",
	[30] = "cgroup_inet6_getpeername",
	[31] = "cgroup_inet4_getsockname",
	[32] = "cgroup_inet6_getsockname",
	[33] = "xdp_devmap",
	[34] = "cgroup_inet_sock_release",
	[35] = "xdp_cpumap",
	[36] = "sk_lookup",
	[37] = "xdp",
	[38] = "sk_skb_verdict",
	[39] = "sk_reuseport_select",
	[40] = "sk_reuseport_select_or_migrate",
	[41] = "perf_event",
	[42] = "trace_kprobe_multi",
	[43] = "lsm_cgroup",
	[44] = "struct_ops",
	[45] = "netfilter",
	[46] = "tcx_ingress",
	[47] = "tcx_egress",
	[48] = "trace_uprobe_multi",
	[49] = "cgroup_unix_connect",
	[50] = "cgroup_unix_sendmsg",
	[51] = "cgroup_unix_recvmsg",
	[52] = "cgroup_unix_getpeername",
	[53] = "cgroup_unix_getsockname",
	[54] = "netkit_primary",
	[55] = "netkit_peer",
	[56] = "trace_kprobe_session",
	[57] = "trace_uprobe_session",
};

#define LINK_TYPES (sizeof(link_type_names) / sizeof(link_type_names[0]))
#define ATTACH_TYPES (sizeof(attach_type_names) / sizeof(attach_type_names[0]))

static __always_inline __u32 attach_type(struct bpf_link *link, __u32 type)
{
	if (link_has_attach_type())
		return link_attach_type(link);
	if (type == LINK_TRACING)
		return tracing_link_attach_type(link);
	if (type == LINK_CGROUP)
		return cgroup_link_attach_type(link);
	return netns_link_attach_type(link);
}

/* Points `name` at the table's name for `value`, or writes the number into `buffer`. */
static __always_inline const char *type_name(const char (*names)[TYPE_NAME_SIZE], __u32 count,
					     __u32 value, char *buffer)
{
	if (value < count && names[value][0])
		return names[value];
	BPF_SNPRINTF(buffer, TYPE_NAME_SIZE, "%u", value);
	return buffer;
}

/* The iterator's target, and for the elements of a map, which map. */
static __always_inline void iter_target(struct bpf_link *link, char *target)
{
	struct bpf_iter_link *iter_link = (void *)link;
	const char *name = BPF_CORE_READ(iter_link, tinfo, reg_info, target);
	struct bpf_map *map = BPF_CORE_READ(iter_link, aux.map);

	if (map)
		BPF_SNPRINTF(target, TARGET_SIZE, "%s:%u", name, BPF_CORE_READ(map, id));
	else
		BPF_SNPRINTF(target, TARGET_SIZE, "%s", name);
}

SEC("iter/bpf_link")
int bpf_link(struct bpf_iter__bpf_link *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct seq_file *seq = meta->seq;
	struct bpf_link *link = ctx->link;
	struct session *session = session_get(meta);
	char unknown_type[TYPE_NAME_SIZE], unknown_attach[TYPE_NAME_SIZE], target[TARGET_SIZE];
	const char *type_text, *attach = "-";
	__u32 type;

	if (!session)
		return 0;
	if (session_wants_header(session, meta, link))
		BPF_SEQ_PRINTF(seq, "%6s %-16s %6s %-24s %s\n", "id", "type", "prog", "attach",
			       "target");
	if (!link) {
		session_end(meta);
		return 0;
	}

	type = BPF_CORE_READ(link, type);
	type_text = type_name(link_type_names, LINK_TYPES, type, unknown_type);
	target[0] = '-';
	target[1] = 0;
	switch (type) {
	case LINK_ITER:
		iter_target(link, target);
		break;
	case LINK_TRACING:
		attach = type_name(attach_type_names, ATTACH_TYPES, attach_type(link, type),
				   unknown_attach);
		break;
	case LINK_RAW_TRACEPOINT:
		bpf_probe_read_kernel_str(target, TARGET_SIZE,
					  BPF_CORE_READ((struct bpf_raw_tp_link *)link,
							btp, tp, name));
		break;
	case LINK_CGROUP:
		attach = type_name(attach_type_names, ATTACH_TYPES, attach_type(link, type),
				   unknown_attach);
		/* 0 once the cgroup is gone, as the kernel tells it */
		BPF_SNPRINTF(target, TARGET_SIZE, "%llu",
			     BPF_CORE_READ((struct bpf_cgroup_link *)link, cgroup, kn, id));
		break;
	case LINK_NETNS:
		attach = type_name(attach_type_names, ATTACH_TYPES, attach_type(link, type),
				   unknown_attach);
		BPF_SNPRINTF(target, TARGET_SIZE, "%u",
			     BPF_CORE_READ((struct bpf_netns_link *)link, net, ns.inum));
		break;
	}
	if (!target[0]) {		/* a name the kernel left empty */
		target[0] = '-';
		target[1] = 0;
	}

	BPF_SEQ_PRINTF(seq, "%6u %-16s %6u %-24s %s\n", BPF_CORE_READ(link, id), type_text,
		       BPF_CORE_READ(link, prog, aux, id), attach, target);
	return 0;
}
