"""What every benchmark case shares: interleaved rounds, medians and percentiles,
one result per case with its target, and the report (table, JSON, PNG chart).

A case compares commands. Each round runs every command once, the order rotating
from round to round (for two commands: alternating), so that a drift of the
machine (another job starting, caches warming) falls on all of them alike. What a
case reports is a median, or a percentile, over the rounds.
"""

import dataclasses
import json
import os
import statistics
import time

READ_SIZE = 128 * 1024      # what cat asks for per read(2)


def read_all(path, read_size=READ_SIZE):
    """Open, read to EOF in read(2)s of `read_size`, close: the bytes read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = 0
        while chunk := os.read(fd, read_size):
            size += len(chunk)
        return size
    finally:
        os.close(fd)


def interleave(commands, rounds):
    """{name: [what the command returned in each round]}, the order of the
    commands rotating every round."""
    names = list(commands)
    results = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(commands[name]())
    return results


def timed(work):
    """A command that runs `work` and returns its wall time in seconds."""
    def command():
        start = time.perf_counter()
        work()
        return time.perf_counter() - start
    return command


def median_times(commands, rounds):
    """{name: median wall seconds} over interleaved rounds."""
    times = interleave({name: timed(work) for name, work in commands.items()}, rounds)
    return {name: statistics.median(samples) for name, samples in times.items()}


def latencies(work, count):
    """The wall seconds of `count` runs of `work`, one after the other."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        work()
        samples.append(time.perf_counter() - start)
    return samples


def percentile(samples, percent):
    """The `percent`th percentile (linear between the closest ranks)."""
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * percent / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def scheduler_times(pid, tid=None):
    """(seconds on a CPU, seconds runnable but waiting for one) of a thread
    (the main thread by default), from /proc/<pid>/task/<tid>/schedstat."""
    with open(f"/proc/{pid}/task/{tid or pid}/schedstat") as f:
        on_cpu, waiting, _ = map(int, f.read().split())
    return on_cpu / 1e9, waiting / 1e9


@dataclasses.dataclass
class Result:
    """One case: what was measured, the ratio it is judged by, its target."""
    case: str                 # short key: streaming, per_open...
    title: str                # what was measured, under which load
    figures: dict             # label -> value in `unit`, the numbers compared
    unit: str                 # "s" or "MiB"
    metric: str               # how `value` is computed, e.g. "iterfs / pinned"
    value: float
    target: float
    higher_is_better: bool = False
    details: dict = dataclasses.field(default_factory=dict)
    # The same measure for what bounds it, measured in the same run: a minimal C
    # FUSE daemon (bench/fuse_floor.c) or the kernel's own walk. Says how far
    # the target is reachable on this machine at all.
    reference: float = None
    reference_text: str = ""

    @property
    def met(self):
        if self.higher_is_better:
            return self.value >= self.target
        return self.value <= self.target

    @property
    def share_of_limit(self):
        """How much of what the reference allows the case reaches, as a
        fraction (1: the limit; above 1: better than the reference), or None
        without a reference."""
        if not self.reference or not self.value:
            return None
        if self.higher_is_better:
            return self.value / self.reference
        return self.reference / self.value

    def target_text(self):
        return f"{'>=' if self.higher_is_better else '<='} {self.target:g}"

    def figures_text(self):
        return ", ".join(f"{label} {format_value(value, self.unit)}"
                         for label, value in self.figures.items())

    def as_json(self):
        return {**dataclasses.asdict(self), "met": self.met, "share_of_limit": self.share_of_limit}


def format_value(value, unit):
    if unit == "s":
        if value >= 1:
            return f"{value:.2f} s"
        if value >= 1e-3:
            return f"{value * 1e3:.1f} ms"
        return f"{value * 1e6:.0f} us"
    return f"{value:.1f} {unit}"


def table(results):
    """The results as a Markdown table, one row per case."""
    rows = ["| case | figures (medians unless said) | measure | value | target | result "
            "| limit (same measure) | of the limit |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        reference = f"{r.reference:.3g}: {r.reference_text}" if r.reference is not None else ""
        share = f"{r.share_of_limit:.0%}" if r.share_of_limit is not None else ""
        rows.append(f"| {r.title} | {r.figures_text()} | {r.metric} | {r.value:.3g} | "
                    f"{r.target_text()} | {'met' if r.met else 'MISSED'} | {reference} | "
                    f"{share} |")
    return "\n".join(rows)


def write_json(results, path, context):
    path.write_text(json.dumps({**context, "cases": [r.as_json() for r in results]},
                               indent=2) + "\n")


def write_chart(results, path, context):
    """One panel per case: its figures as bars, titled with the measure, the
    target and whether it was met."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 2
    rows = (len(results) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(12, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(results):]:
        ax.set_visible(False)
    for ax, r in zip(axes.flat, results):
        scale, unit = (1e3, "ms") if r.unit == "s" else (1, r.unit)
        if r.unit == "s" and max(r.figures.values()) < 1e-3:
            scale, unit = 1e6, "us"
        labels = list(r.figures)
        values = [r.figures[label] * scale for label in labels]
        ax.barh(labels, values, color=["#4477aa"] + ["#bbbbbb"] * (len(labels) - 1))
        ax.invert_yaxis()
        for y, value in enumerate(values):
            ax.annotate(f" {value:.3g}", (value, y), va="center", fontsize=8)
        if r.unit != "s":       # the target is a level in the figures' own unit
            ax.axvline(r.target, color="#aa3377", linestyle="--", label="target")
        ax.set_xlabel(unit)
        ax.set_xlim(0, max(values + ([r.target] if r.unit != "s" else [])) * 1.25)
        verdict = "met" if r.met else "MISSED"
        reference = (f"; {r.reference_text}: {r.reference:.3g}"
                     if r.reference is not None else "")
        ax.set_title(f"{r.title}\n{r.metric} = {r.value:.3g} (target {r.target_text()}): "
                     f"{verdict}{reference}", fontsize=8,
                     color="#228833" if r.met else "#aa3377")
        ax.tick_params(labelsize=8)
    figure.suptitle(f"iterfs benchmarks ({context['machine']})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def machine():
    """A line saying what the figures were measured on."""
    release = os.uname().release
    return f"{os.cpu_count()} cores, Linux {release}"


def report(results, directory, context):
    """Print the table, write results.json and bench.png under `directory`."""
    context = {"machine": machine(), **context}
    print()
    print(f"iterfs benchmarks, {context['machine']}; "
          + ", ".join(f"{key} {value}" for key, value in context.items() if key != "machine"))
    print(table(results))
    missed = [r.case for r in results if not r.met]
    print(f"{len(results) - len(missed)} of {len(results)} targets met"
          + (f"; missed: {', '.join(missed)}" if missed else ""))
    directory.mkdir(parents=True, exist_ok=True)
    write_json(results, directory / "results.json", context)
    write_chart(results, directory / "bench.png", context)
    print(f"written: {directory / 'results.json'}, {directory / 'bench.png'}")
