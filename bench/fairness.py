"""Fairness: the latency of a small read (open, read to EOF, close of
task_file/<pid>, 10 open files) while 4 readers stream /tcp6 (tens of
thousands of sockets) without pause, against the same when nothing else reads.

Each round samples the small read idle and loaded, the order alternating; the
readers start anew for every loaded phase. Target: p99 loaded <= 2 x p99 idle.

The same read through the library alone (no FUSE), sampled alternately with the
one through the mount, shows what the load costs any reader on this machine:
the CPUs are shared.
"""

import statistics
import time

from harness import Result, interleave, percentile, read_all, scheduler_times
from load import streamers
from per_open import direct_reader

ROUNDS = 6
SAMPLES = 150           # small reads per phase and round, through each path
READERS = 4
TARGET = 2


def fairness(daemon, pid, rounds=ROUNDS, samples=SAMPLES, readers=READERS):
    mountpoint = daemon.mountpoint
    path = mountpoint / "task_file" / str(pid)
    waits = {"idle": [], "loaded": []}    # the daemon's main thread's, per small read
    with direct_reader("task_file", pid) as read_direct:
        def sample(phase="idle"):
            """(latencies through iterfs, through the library), alternating."""
            through = {"iterfs": lambda: read_all(path), "direct": read_direct}
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

    figures = {f"{phase} {stat}": p(phase, "iterfs", percent)
               for phase in ("idle", "loaded") for stat, percent in (("p50", 50), ("p99", 99))}
    direct = {f"{phase} {stat}": p(phase, "direct", percent)
              for phase in ("idle", "loaded") for stat, percent in (("p50", 50), ("p99", 99))}
    return Result(
        case="fairness",
        title=f"small read while {readers} readers stream /tcp6",
        figures=figures, unit="s", metric="p99 loaded / idle",
        value=figures["loaded p99"] / figures["idle p99"], target=TARGET,
        details={"rounds": rounds, "samples_per_phase": rounds * samples,
                 "direct_library": direct,
                 "direct_p99_loaded_to_idle": direct["loaded p99"] / direct["idle p99"],
                 "daemon_main_thread_runqueue_wait_per_read": {
                     phase: statistics.mean(w) for phase, w in waits.items()}})
