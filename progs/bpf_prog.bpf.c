// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_prog: one line per BPF program loaded, with the fields `bpftool prog show`
 * shows, taken where bpf_prog_get_info_by_fd() (kernel/bpf/syscall.c) takes them:
 *
 *   id type name tag maps loaded uid xlated jited
 *
 * type is libbpf's name for it (libbpf_bpf_prog_type_str), or the number when
 * the name is not known; name is "-" when the program has none; loaded is
 * CLOCK_BOOTTIME in seconds, as the kernel records it (prog->aux->load_time);
 * uid is the kernel's uid of the loader (the initial user namespace's).
 */
#include "iterfs.h"

char LICENSE[] SEC("license") = "GPL";

#define TYPE_NAME_SIZE 24
#define MAX_FUNCTIONS 256		/* BPF_MAX_SUBPROGS */
#define BPF_INSN_SIZE 8			/* sizeof(struct bpf_insn) */

/*
 * libbpf's prog_type_name[], indexed by enum bpf_prog_type. UAPI values never
 * change, so the table is written by value rather than with vmlinux.h's names,
 * which the vmlinux.h of an older kernel lacks; tests/test_bpf_objects.py checks
 * every entry against the running kernel's BTF.
 */
static const char prog_type_names[][TYPE_NAME_SIZE] = {
	[0] = "unspec",
	[1] = "socket_filter",
	[2] = "kprobe",
	[3] = "sched_cls",
	[4] = "sched_act",
	[5] = "tracepoint",
	[6] = "xdp",
	[7] = "perf_event",
	[8] = "cgroup_skb",
	[9] = "cgroup_sock",
	[10] = "lwt_in",
	[11] = "lwt_out",
	[12] = "lwt_xmit",
	[13] = "sock_ops",
	[14] = "sk_skb",
	[15] = "cgroup_device",
	[16] = "sk_msg",
	[17] = "raw_tracepoint",
	[18] = "cgroup_sock_addr",
	[19] = "lwt_seg6local",
	[20] = "lirc_mode2",
	[21] = "sk_reuseport",
	[22] = "flow_dissector",
	[23] = "cgroup_sysctl",
	[24] = "raw_tracepoint_writable",
	[25] = "cgroup_sockopt",
	[26] = "tracing",
	[27] = "struct_ops",
	[28] = "ext",
	[29] = "lsm",
	[30] = "sk_lookup",
	[31] = "syscall",
	[32] = "netfilter",
};

#define PROG_TYPES (sizeof(prog_type_names) / sizeof(prog_type_names[0]))

/* The JIT's size of the whole program: with BPF-to-BPF calls, every function's. */
static __always_inline __u32 jited_size(struct bpf_prog *prog)
{
	struct bpf_prog_aux *aux = prog->aux;
	__u32 functions = BPF_CORE_READ(aux, func_cnt);
	struct bpf_prog **func = BPF_CORE_READ(aux, func);
	__u32 size = 0;

	if (!functions)
		return BPF_CORE_READ(prog, jited_len);
	for (__u32 i = 0; i < MAX_FUNCTIONS && i < functions; i++) {
		struct bpf_prog *function = NULL;

		bpf_probe_read_kernel(&function, sizeof(function), func + i);
		size += BPF_CORE_READ(function, jited_len);
	}
	return size;
}

SEC("iter/bpf_prog")
int bpf_prog(struct bpf_iter__bpf_prog *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct seq_file *seq = meta->seq;
	struct bpf_prog *prog = ctx->prog;
	struct session *session = session_get(meta);
	char unknown_type[TYPE_NAME_SIZE], tag[17];
	__u8 tag_bytes[8];
	const char *type_name = unknown_type;
	const char *name;
	struct bpf_prog_aux *aux;
	__u64 load_time;
	__u32 type;

	if (!session)
		return 0;
	if (session_wants_header(session, meta, prog))
		BPF_SEQ_PRINTF(seq, "%6s %-16s %-16s %-16s %4s %20s %5s %8s %8s\n", "id",
			       "type", "name", "tag", "maps", "loaded", "uid", "xlated",
			       "jited");
	if (!prog) {
		session_end(meta);
		return 0;
	}

	aux = prog->aux;
	type = BPF_CORE_READ(prog, type);
	if (type < PROG_TYPES && prog_type_names[type][0])
		type_name = prog_type_names[type];
	else
		BPF_SNPRINTF(unknown_type, sizeof(unknown_type), "%u", type);

	bpf_core_read(tag_bytes, sizeof(tag_bytes), &prog->tag);
	for (int i = 0; i < 8; i++) {
		__u8 high = tag_bytes[i] >> 4, low = tag_bytes[i] & 0xf;

		tag[2 * i] = high < 10 ? '0' + high : 'a' + high - 10;
		tag[2 * i + 1] = low < 10 ? '0' + low : 'a' + low - 10;
	}
	tag[16] = 0;

	name = BPF_CORE_READ(aux, name[0]) ? (const char *)aux->name : "-";
	load_time = BPF_CORE_READ(aux, load_time);
	BPF_SEQ_PRINTF(seq, "%6u %-16s %-16s %s %4u %10llu.%09llu %5u %8u %8u\n",
		       BPF_CORE_READ(aux, id), type_name, name, tag,
		       BPF_CORE_READ(aux, used_map_cnt),
		       load_time / NSEC_PER_SEC, load_time % NSEC_PER_SEC,
		       BPF_CORE_READ(aux, user, uid.val),
		       BPF_CORE_READ(prog, len) * BPF_INSN_SIZE, jited_size(prog));
	return 0;
}
