// SPDX-License-Identifier: GPL-2.0
/*
 * metrics/bpf_programs.prom: every loaded BPF program's runs and run time, as
 * `bpftool prog show` gives them (run_cnt, run_time_ns): the sums over the
 * CPUs of prog->stats, which the kernel counts only while
 * kernel.bpf_stats_enabled is 1 (or a BPF_ENABLE_STATS fd is open), and keeps
 * when it goes back to 0. Labelled by program id and name: one series per
 * loaded program and metric. A program's name is made of letters, digits, `_`
 * and `.` (the kernel refuses others: bpf_obj_name_cpy()), so no label value
 * needs escaping.
 *
 * prog->stats is a per-CPU pointer. Where the kernel's BTF carries no per-CPU
 * type tag (this machine's 6.18 has none) the verifier does not let
 * bpf_per_cpu_ptr() take it, and without
 * CONFIG_KALLSYMS_ALL no per-CPU variable can be named either. A CPU's
 * per-CPU offset is found instead from a per-CPU array of this program's own:
 * bpf_map_lookup_percpu_elem() gives the CPU's copy of its one value, and that
 * address less the array's per-CPU pointer is the offset (per_cpu_ptr()'s
 * sum). The CPUs summed are 0 to nr_cpu_ids - 1, where that lookup ends, as
 * for_each_possible_cpu() goes where the possible CPUs have no gap.
 *
 * Two programs, one metric each, printing a program's sample at each
 * program: the file is their two walks one after another (metrics.py), so each
 * metric's samples are together, whatever the number of programs. The walks
 * are two moments: a program loaded or freed between them is in one metric
 * and not the other.
 */
#include "metrics.h"

char LICENSE[] SEC("license") = "GPL";

#define NAME_SIZE 16			/* BPF_OBJ_NAME_LEN */
#define MAX_CPUS 8192			/* NR_CPUS at most */
#define NSEC_PER_SEC 1000000000ULL

/* A per-CPU value of our own, whose addresses give each CPU's offset. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} cpu_offsets SEC(".maps");

/* A pointer's value as a number: copied, so the verifier sees a scalar. */
static __always_inline unsigned long address_of(void *pointer)
{
	unsigned long address = 0;

	bpf_probe_read_kernel(&address, sizeof(address), &pointer);
	return address;
}

struct stats_sum {
	unsigned long stats;		/* prog->stats, a per-CPU pointer */
	unsigned long base;		/* cpu_offsets's per-CPU pointer */
	__u64 cnt;
	__u64 nsecs;
};

static long add_cpu(__u32 cpu, struct stats_sum *sum)
{
	__u32 key = 0;
	void *copy = bpf_map_lookup_percpu_elem(&cpu_offsets, &key, cpu);
	unsigned long at;
	__u64 value = 0;

	if (!copy)			/* cpu >= nr_cpu_ids */
		return 1;
	at = sum->stats + (address_of(copy) - sum->base);
	bpf_probe_read_kernel(&value, sizeof(value),
			      (void *)(at + bpf_core_field_offset(struct bpf_prog_stats, cnt)));
	sum->cnt += value;
	value = 0;
	bpf_probe_read_kernel(&value, sizeof(value),
			      (void *)(at + bpf_core_field_offset(struct bpf_prog_stats, nsecs)));
	sum->nsecs += value;
	return 0;
}

/* bpf_prog_get_stats(): cnt and nsecs, summed over the CPUs. */
static __always_inline void program_stats(struct bpf_prog *prog, struct stats_sum *sum)
{
	unsigned long array = address_of(&cpu_offsets);

	sum->stats = (unsigned long)BPF_CORE_READ(prog, stats);
	bpf_probe_read_kernel(&sum->base, sizeof(sum->base),
			      (void *)(array + bpf_core_field_offset(struct bpf_array, pptrs)));
	if (sum->stats && sum->base)
		bpf_loop(MAX_CPUS, add_cpu, sum, 0);
}

enum program_metric { RUNS, RUN_TIME };

/* One program's sample of `metric`, after the header at the first program. */
static __always_inline int print_sample(struct bpf_iter__bpf_prog *ctx,
					enum program_metric metric)
{
	struct seq_file *seq = ctx->meta->seq;
	struct bpf_prog *prog = ctx->prog;
	struct stats_sum sum = {};
	char name[NAME_SIZE];
	__u32 id;

	if (!prog)
		return 0;
	if (ctx->meta->seq_num == 0 && metric == RUNS)
		BPF_SEQ_PRINTF(seq, "# HELP iterfs_bpf_program_runs_total Runs of each loaded BPF "
			       "program while kernel.bpf_stats_enabled (bpftool's run_cnt).\n"
			       "# TYPE iterfs_bpf_program_runs_total counter\n");
	else if (ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(seq, "# HELP iterfs_bpf_program_run_seconds_total Time each loaded "
			       "BPF program ran while kernel.bpf_stats_enabled (bpftool's "
			       "run_time_ns).\n"
			       "# TYPE iterfs_bpf_program_run_seconds_total counter\n");
	program_stats(prog, &sum);
	bpf_probe_read_kernel_str(name, sizeof(name), prog->aux->name);
	id = BPF_CORE_READ(prog, aux, id);
	if (metric == RUNS)
		BPF_SEQ_PRINTF(seq, "iterfs_bpf_program_runs_total{id=\"%u\",name=\"%s\"} %llu\n",
			       id, name, sum.cnt);
	else
		BPF_SEQ_PRINTF(seq, "iterfs_bpf_program_run_seconds_total{id=\"%u\",name=\"%s\"} "
			       "%llu.%09llu\n", id, name, sum.nsecs / NSEC_PER_SEC,
			       sum.nsecs % NSEC_PER_SEC);
	return 0;
}

SEC("iter/bpf_prog")
int bpf_program_runs(struct bpf_iter__bpf_prog *ctx)
{
	return print_sample(ctx, RUNS);
}

SEC("iter/bpf_prog")
int bpf_program_run_time(struct bpf_iter__bpf_prog *ctx)
{
	return print_sample(ctx, RUN_TIME);
}
