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
 * The text format wants each metric's samples together. The runs are printed
 * as the walk goes, each program's run time kept under the walk's session id
 * and its place in the walk, and printed in the final call. That call prints
 * one seq_file buffer (32 KiB) at most: the run times of about 400 programs;
 * past that the read fails with E2BIG.
 */
#include "metrics.h"

char LICENSE[] SEC("license") = "GPL";

#define NAME_SIZE 16			/* BPF_OBJ_NAME_LEN */
#define MAX_CPUS 8192			/* NR_CPUS at most */
#define MAX_PROGRAMS 8192		/* a bound for the final call's loop */
#define NSEC_PER_SEC 1000000000ULL

/* A program's run time, kept from its place in the walk to the final call. */
struct record_key {
	__u64 session_id;
	__u64 index;			/* the program's seq_num */
};

struct record {
	__u32 id;
	char name[NAME_SIZE];
	__u64 nsecs;
};

/* Least recently used first: what a walk given up midway left goes first. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct record_key);
	__type(value, struct record);
} records SEC(".maps");

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

static __always_inline void print_runs_header(struct seq_file *seq)
{
	BPF_SEQ_PRINTF(seq, "# HELP iterfs_bpf_program_runs_total Runs of each loaded BPF "
		       "program while kernel.bpf_stats_enabled (bpftool's run_cnt).\n"
		       "# TYPE iterfs_bpf_program_runs_total counter\n");
}

struct final_print {
	struct seq_file *seq;
	__u64 session_id;
	long error;			/* a print that did not fit */
};

static long print_run_time(__u32 index, struct final_print *final)
{
	struct record_key key = { .session_id = final->session_id, .index = index };
	struct record *record = bpf_map_lookup_elem(&records, &key);
	long error;

	if (!record)
		return 0;
	error = BPF_SEQ_PRINTF(final->seq, "iterfs_bpf_program_run_seconds_total{id=\"%u\","
			       "name=\"%s\"} %llu.%09llu\n", record->id, record->name,
			       record->nsecs / NSEC_PER_SEC, record->nsecs % NSEC_PER_SEC);
	if (error)
		final->error = error;
	return 0;
}

static long forget(__u32 index, struct final_print *final)
{
	struct record_key key = { .session_id = final->session_id, .index = index };

	bpf_map_delete_elem(&records, &key);
	return 0;
}

SEC("iter/bpf_prog")
int bpf_programs_metrics(struct bpf_iter__bpf_prog *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	struct seq_file *seq = meta->seq;
	struct bpf_prog *prog = ctx->prog;
	struct record_key key = { .session_id = meta->session_id, .index = meta->seq_num };
	struct final_print final = { .seq = seq, .session_id = meta->session_id };
	struct stats_sum sum = {};
	struct record record = {};
	/* The final call's seq_num is the last program's: the kernel counts a
	 * call only once it has the next object. */
	__u64 programs = meta->seq_num + 1;

	if (!prog) {
		key.index = 0;
		if (!bpf_map_lookup_elem(&records, &key))	/* no program at all */
			print_runs_header(seq);
		BPF_SEQ_PRINTF(seq, "# HELP iterfs_bpf_program_run_seconds_total Time each loaded "
			       "BPF program ran while kernel.bpf_stats_enabled (bpftool's "
			       "run_time_ns).\n"
			       "# TYPE iterfs_bpf_program_run_seconds_total counter\n");
		if (programs > MAX_PROGRAMS)
			programs = MAX_PROGRAMS;
		bpf_loop(programs, print_run_time, &final, 0);
		/* Not all of it fit: the kernel calls again with an empty buffer. */
		if (!final.error)
			bpf_loop(programs, forget, &final, 0);
		return 0;
	}
	if (meta->seq_num == 0)
		print_runs_header(seq);
	program_stats(prog, &sum);
	record.id = BPF_CORE_READ(prog, aux, id);
	bpf_probe_read_kernel_str(record.name, sizeof(record.name), prog->aux->name);
	record.nsecs = sum.nsecs;
	if (bpf_map_update_elem(&records, &key, &record, BPF_ANY))
		return METRIC_NO_ROOM;
	BPF_SEQ_PRINTF(seq, "iterfs_bpf_program_runs_total{id=\"%u\",name=\"%s\"} %llu\n",
		       record.id, record.name, sum.cnt);
	return 0;
}
