#!/usr/bin/env python3
"""Run the benchmark suite: set up the load, run every case, report.

    .venv/bin/python bench/run.py [--cases streaming,per_open,...]

Run as root after `make setup` (`make bench` does both, and installs matplotlib).
Each case sets up the load it needs (sockets, processes, open files, threads,
all held by child processes), measures iterfs against its baselines in
interleaved rounds, and lets the load go, even after a failure. The table of
medians, ratios and targets is printed and written, with a chart, to
bench/results/ (results.json, bench.png).
"""

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import fairness
import load
import memory
import metrics
import per_open
import processes
import sockets
import tcp6
from harness import report

RESULTS = Path(__file__).resolve().parent / "results"
CASES = ("streaming", "per_open", "fairness", "listing", "files", "threads", "sockets",
         "metrics", "memory")
# The results' order: a case may give more than one (sockets: against ss, against psutil).
RESULTS_ORDER = ("streaming", "streaming_small") + CASES[1:CASES.index("sockets") + 1] + \
    ("sockets_psutil",) + CASES[CASES.index("sockets") + 1:]
SMALL_VIEW_FILES = 10       # open files of the process whose task_file is read


class Progress:
    def __init__(self):
        self.start = time.monotonic()

    def __call__(self, message):
        print(f"[{time.monotonic() - self.start:6.1f} s] {message}", flush=True)


def run_cases(selected, directory, say):
    """The results of the selected cases, in CASES order."""
    results = []

    def measure(case, work):
        say(f"{case}: measuring")
        measured = work()
        for result in measured if isinstance(measured, list) else [measured]:
            results.append(result)
            say(f"{result.case}: {result.metric} = {result.value:.3g} "
                f"(target {result.target_text()})")

    shared = {"streaming", "per_open", "fairness", "listing", "files", "threads", "sockets",
              "metrics"}
    if selected & shared:
        with load.running_daemon(directory / "mnt") as daemon:
            mnt = daemon.mountpoint
            if selected & {"streaming", "fairness", "per_open"}:
                with contextlib.ExitStack() as stack:
                    if selected & {"streaming", "fairness"}:
                        say(f"holding {tcp6.SOCKETS:,} sockets")
                        stack.enter_context(load.sockets(tcp6.SOCKETS))
                    pid = stack.enter_context(load.process_with_fds(SMALL_VIEW_FILES))
                    if "streaming" in selected:
                        measure("streaming", lambda: tcp6.streaming(mnt, tcp6.SOCKETS))
                    if "per_open" in selected:
                        measure("per_open",
                                lambda: per_open.per_open(daemon, pid, directory / "floor"))
                    if "fairness" in selected:
                        measure("fairness",
                                lambda: fairness.fairness(daemon, pid, directory / "floor"))
            if "listing" in selected:
                say(f"holding {processes.PROCESSES:,} processes")
                with load.processes(processes.PROCESSES):
                    measure("listing", lambda: processes.listing(
                        mnt, processes.PROCESSES, directory / "floor"))
            if "files" in selected:
                say(f"holding {processes.FILES_PROCESSES} processes x "
                    f"{processes.FILES_PER_PROCESS} files")
                with load.files(processes.FILES_PROCESSES, processes.FILES_PER_PROCESS):
                    measure("files", lambda: processes.files(mnt))
            if "threads" in selected:
                say(f"holding {processes.THREADS:,} threads")
                with load.threads(processes.THREADS):
                    measure("threads", lambda: processes.threads(mnt))
            if "sockets" in selected:
                say(f"holding {sockets.SOCKETS:,} TCP sockets in {sockets.PROCESSES} processes")
                with load.socket_processes(sockets.PROCESSES, sockets.SOCKETS) as holders:
                    measure("sockets", lambda: sockets.sockets(mnt, holders))
            if "metrics" in selected:
                say(f"holding {metrics.SOCKETS:,} sockets and {metrics.THREADS:,} threads")
                with load.sockets(metrics.SOCKETS), load.threads(metrics.THREADS):
                    measure("metrics", lambda: metrics.metrics(mnt))
    if "memory" in selected:
        with load.running_daemon(directory / "mnt-memory") as daemon, \
                load.process_with_fds(SMALL_VIEW_FILES) as pid:
            measure("memory", lambda: memory.memory(daemon, pid))
    return sorted(results, key=lambda r: RESULTS_ORDER.index(r.case))


def stop(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES),
                        help="comma-separated, of: " + ", ".join(CASES))
    parser.add_argument("--results", type=Path, default=RESULTS, metavar="DIR")
    args = parser.parse_args(argv)
    selected = set(args.cases.split(","))
    if not selected <= set(CASES):
        parser.error(f"unknown cases: {', '.join(sorted(selected - set(CASES)))}")

    # Stopped by SIGTERM (or SIGHUP), unwind as for Ctrl-C: every `with` lets its
    # load, pin and mount go.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    say = Progress()
    load_before = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="iterfs-bench-") as tmp:
        results = run_cases(selected, Path(tmp), say)
    say("done")
    # The machine may be shared: its load says how much the figures can be trusted.
    report(results, args.results, {
        "seconds": round(time.monotonic() - say.start, 1),
        "load_average_1min": [load_before, round(os.getloadavg()[0], 2)]})


if __name__ == "__main__":
    sys.exit(main())
