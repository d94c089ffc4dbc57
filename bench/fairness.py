"""Fairness: the latency of a small read (open, read to EOF, close of
task_file/<pid>, 10 open files) while 4 readers stream /tcp6 (tens of
thousands of sockets) without pause, against the same when nothing else reads.

Each round samples the small read idle and loaded, the order alternating; the
readers start anew for every loaded phase. Target: p99 loaded <= 2 x p99 idle.

The same read through the library alone (no FUSE), and a file of the same size
from two minimal FUSE daemons (bench/fuse_floor.c in C, bench/pyfuse3_floor.py
in pyfuse3 and trio), sampled in turn with the one through the mount, show what
the same load costs a reader that needs no FUSE, and a FUSE daemon that has
nothing else to do: the CPUs are shared. The C daemon's p99 loaded / idle is
the limit: iterfs's, over the C daemon's, <= 1.2.
"""

import statistics
import time

from harness import Result, interleave, percentile, read_all, scheduler_times
from load import fuse_floor, streamers
from per_open import direct_reader

ROUNDS = 6
SAMPLES = 150           # small reads per phase and round, through each path
READERS = 4
TARGET = 1.2                # iterfs's p99 loaded / idle over the C daemon's


def fairness(daemon, pid, floor_mountpoint, rounds=ROUNDS, samples=SAMPLES, readers=READERS):
    mountpoint = daemon.mountpoint
    path = mountpoint / "task_file" / str(pid)
    size = read_all(path)
    waits = {"idle": [], "loaded": []}    # the daemon's main thread's, per small read
    with direct_reader("task_file", pid) as read_direct, \
            fuse_floor(floor_mountpoint / "c", size) as c_floor, \
            fuse_floor(floor_mountpoint / "pyfuse3", size, kind="pyfuse3") as py_floor:
        def sample(phase="idle"):
            """{path: latencies}, the paths taken in turn."""
            through = {"iterfs": lambda: read_all(path), "direct": read_direct,
                       "C FUSE": lambda: read_all(c_floor / "small"),
                       "pyfuse3": lambda: read_all(py_floor / "small")}
            times = {name: [] for name in through}
            waited = scheduler_times(daemon.pid)[1]
            for _ in range(samples):
                for name, work in through.items():
                    start = time.perf_counter()
                    work()
                    times[name].append(time.perf_counter() - start)
            waits[phase].append((scheduler_times(daemon.pid)[1] - waited) / samples)
            return times

        def loaded():
            with streamers(mountpoint / "tcp6", readers):
                time.sleep(0.3)         # each is well into its first read
                return sample("loaded")

        phases = interleave({"idle": sample, "loaded": loaded}, rounds)

    def p(phase, name, percent):
        return percentile([t for times in phases[phase] for t in times[name]], percent)

    def percentiles(name):
        return {f"{phase} {stat}": p(phase, name, percent) for phase in ("idle", "loaded")
                for stat, percent in (("p50", 50), ("p99", 99))}

    figures = {f"iterfs {label}": value for label, value in percentiles("iterfs").items()}
    others = {name: percentiles(name) for name in ("direct", "C FUSE", "pyfuse3")}

    def ratio(name):
        return others[name]["loaded p99"] / others[name]["idle p99"]
    figures.update({f"{name} {phase} p99": others[name][f"{phase} p99"]
                    for name in ("C FUSE", "pyfuse3") for phase in ("idle", "loaded")})
    return Result(
        case="fairness",
        title=f"small read while {readers} readers stream /tcp6",
        figures=figures, unit="s", metric="p99 loaded / idle, iterfs / C FUSE daemon",
        value=figures["iterfs loaded p99"] / figures["iterfs idle p99"] / ratio("C FUSE"),
        target=TARGET, reference=1.0, reference_text="the C FUSE daemon",
        details={"rounds": rounds, "samples_per_phase": rounds * samples,
                 "iterfs_p99_loaded_to_idle":
                     figures["iterfs loaded p99"] / figures["iterfs idle p99"],
                 **{f"{name}_percentiles": values for name, values in others.items()},
                 **{f"{name}_p99_loaded_to_idle": ratio(name) for name in others},
                 "daemon_main_thread_runqueue_wait_per_read": {
                     phase: statistics.mean(w) for phase, w in waits.items()}})
