#!/usr/bin/env python3
"""Whole-system process benchmarks: iterfs against walking /proc.

    files    every open file of every process: task_file/all, against listing
             /proc/*/fd and readlink() of each fd (what lsof and psutil do),
             with 200 processes holding 500 open files each. Target: >= 10x.
    threads  every thread's stats: task/all, against reading every
             /proc/*/task/*/stat, with 10,000 threads. Target: >= 20x.

Each round runs both sides of a case once, the order alternating, and the
medians of the wall times are compared. Run as root after `make setup`:

    .venv/bin/python bench/processes.py [--rounds 9]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import Holders, running_daemon  # noqa: E402
from tcp6 import read_all  # noqa: E402

RESULTS = ROOT / "bench" / "results"
READ_SIZE = 128 * 1024

FILE_HOLDER = r"""
import os, sys
held = [os.open("/dev/null", os.O_RDONLY) for _ in range(int(sys.argv[1]))]
print("ready", flush=True)
sys.stdin.read()
"""

THREAD_HOLDER = r"""
import sys, threading
stop = threading.Event()
threads = [threading.Thread(target=stop.wait, daemon=True) for _ in range(int(sys.argv[1]))]
for t in threads:
    t.start()
print("ready", flush=True)
sys.stdin.read()
"""


def walk_fds():
    """Every open file of every process, the way lsof and psutil find them."""
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                os.readlink(f"/proc/{pid}/fd/{fd}")
                count += 1
            except OSError:
                pass
    return count


def walk_thread_stats():
    """Every thread's /proc/<pid>/task/<tid>/stat."""
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                    f.read()
                count += 1
            except OSError:
                pass
    return count


def compare(name, ours, theirs, rounds, target):
    times = {"iterfs": [], "proc": []}
    for round_ in range(rounds):
        order = [("iterfs", ours), ("proc", theirs)]
        for side, work in order if round_ % 2 == 0 else reversed(order):
            start = time.perf_counter()
            work()
            times[side].append(time.perf_counter() - start)
    medians = {side: statistics.median(t) for side, t in times.items()}
    speedup = medians["proc"] / medians["iterfs"]
    print(f"  {name}: iterfs {medians['iterfs'] * 1000:.1f} ms, /proc walk "
          f"{medians['proc'] * 1000:.1f} ms: {speedup:.1f}x "
          f"(target >= {target}x: {'met' if speedup >= target else 'missed'})")
    return {"case": name, "median_seconds": medians, "speedup": speedup,
            "target_speedup": target, "target_met": speedup >= target}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--threads", type=int, default=10000)
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as tmp, running_daemon(Path(tmp) / "mnt") as daemon:
        mnt = daemon.mountpoint
        holders = Holders(FILE_HOLDER, [args.files] * args.processes)
        try:
            lines = len((mnt / "task_file" / "all").read_text().splitlines()) - 1
            print(f"files: {args.processes} processes x {args.files} files "
                  f"({lines} open files in all), {args.rounds} rounds")
            results.append(compare("files",
                                   lambda: read_all(mnt / "task_file" / "all", READ_SIZE),
                                   walk_fds, args.rounds, 10))
        finally:
            holders.close()
        per_process = 500
        holders = Holders(THREAD_HOLDER, [per_process] * (args.threads // per_process))
        try:
            lines = len((mnt / "task" / "all").read_text().splitlines()) - 1
            print(f"threads: {args.threads} threads ({lines} in all), {args.rounds} rounds")
            results.append(compare("threads",
                                   lambda: read_all(mnt / "task" / "all", READ_SIZE),
                                   walk_thread_stats, args.rounds, 20))
        finally:
            holders.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "processes.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
