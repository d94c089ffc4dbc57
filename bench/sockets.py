"""Sockets benchmark: which process holds which socket, answered in one walk.

    sockets  sockets/all against `ss -tanp` and psutil's
             net_connections("tcp"), pids included, with 100 processes
             holding 50,000 TCP sockets (25,000 connections over ::1).
             ss and psutil read every /proc/<pid>/fd link and join the socket
             inodes with what the kernel lists of its sockets; iterfs's
             program visits each fd once and writes the join. Targets: >= 5x
             ss, >= 10x psutil (two results: sockets, sockets_psutil).

The view read through the library alone (no FUSE), and the kernel's walk of
every fd doing nothing (bench/progs/floors.bpf.c, as for files), are timed in
the same rounds: the kernel's walk is the reference, the least any view of
every fd can cost.

`python bench/sockets.py` runs this case alone (bench/run.py --cases sockets).
"""

import functools
import subprocess

import psutil

from harness import Result, median_times, read_all
from per_open import direct_reader
from processes import kernel_walks

ROUNDS = 7
PROCESSES = 100
SOCKETS = 50000
SS_TARGET = 5
PSUTIL_TARGET = 10


def run_ss():
    subprocess.run(["ss", "-tanp"], check=True, stdout=subprocess.DEVNULL)


def run_psutil():
    return psutil.net_connections("tcp")


def sockets(mountpoint, holders, rounds=ROUNDS):
    """Two results from the same rounds: against ss, and against psutil."""
    path = mountpoint / "sockets" / "all"
    pids = {process.pid for process in holders.processes}
    shown = sum(1 for line in path.read_text().splitlines()[1:]
                if int(line.split(None, 1)[0]) in pids)
    found = sum(1 for connection in run_psutil() if connection.pid in pids)
    # The holders' sockets: theirs, and the listeners each of them holds.
    if shown < SOCKETS or found < SOCKETS:
        raise RuntimeError(f"sockets/all shows {shown} of the holders' sockets, psutil {found}")
    with direct_reader("sockets") as read_direct, \
            kernel_walks({"kernel walk": "walk_task_file"}) as walks:
        medians = median_times({"iterfs": functools.partial(read_all, path),
                                "ss -tanp": run_ss, "psutil": run_psutil,
                                "library, no FUSE": read_direct, **walks}, rounds)
    title = f"who holds which socket: sockets/all, {shown:,} TCP sockets in {PROCESSES} processes"
    details = {"rounds": rounds, "sockets": shown,
               "ss_to_library": medians["ss -tanp"] / medians["library, no FUSE"]}
    return [
        Result(case="sockets", title=title, figures=medians, unit="s",
               metric="ss -tanp / iterfs", value=medians["ss -tanp"] / medians["iterfs"],
               target=SS_TARGET, higher_is_better=True,
               reference=medians["ss -tanp"] / medians["kernel walk"],
               reference_text="kernel walk of every fd, no formatting, no FUSE",
               details=details),
        Result(case="sockets_psutil", title=title, figures=medians, unit="s",
               metric="psutil / iterfs", value=medians["psutil"] / medians["iterfs"],
               target=PSUTIL_TARGET, higher_is_better=True,
               reference=medians["psutil"] / medians["kernel walk"],
               reference_text="kernel walk of every fd, no formatting, no FUSE",
               details={**details,
                        "psutil_to_library": medians["psutil"] / medians["library, no FUSE"]}),
    ]


if __name__ == "__main__":
    import run
    run.main(["--cases", "sockets"])
