"""Process benchmarks: iterfs's process directories and whole-system views
against /proc.

    listing  `ls MNT/task/` against `ls /proc` with 5,000 more processes.
             Timed as os.listdir() (opendir, getdents until the end, closedir:
             what ls asks of the filesystem, and only that). Target: iterfs /
             proc <= 2. The real ls binary, run for both, is shown beside it:
             its fork, exec and sorting cost the same on both sides. So is a
             directory of as many entries from two minimal FUSE daemons
             (bench/fuse_floor.c, bench/pyfuse3_floor.py), which find nothing,
             only answer: the transport alone. pyfuse3's, against /proc, is the
             reference; iterfs must also find the processes (a task iterator).
    files    every open file of every process: task_file/all, against listing
             /proc/*/fd and readlink() of each fd (what lsof and psutil do),
             with 200 processes holding 500 open files each.
    threads  every thread's stats: task/all, against reading every
             /proc/*/task/*/stat, with 10,000 threads.

For files and threads, programs that walk the same objects and write nothing
(bench/progs/floors.bpf.c; for files, finding each path with bpf_d_path() as
task_file does) are timed too, through the library: the kernel's share, which
no view can go under, and the limit each is judged against: the kernel's walk /
iterfs, >= 0.8 for files and >= 0.6 for threads. How much faster than the /proc
walk each is, is shown beside it.

`python bench/processes.py` runs these cases alone (bench/run.py --cases
listing,files,threads).
"""

import contextlib
import functools
import os
import subprocess
from pathlib import Path

from harness import Result, median_times, read_all
from load import fuse_floor
from per_open import direct_reader

from iterfs import bpf

ROUNDS = 9
LISTING_ROUNDS = 15
PROCESSES = 5000
LISTING_TARGET = 2
FILES_PROCESSES, FILES_PER_PROCESS = 200, 500
FILES_TARGET = 0.8         # of the kernel's walk with d_path
THREADS = 10000
THREADS_TARGET = 0.6       # of the kernel's walk
FLOORS = Path(__file__).resolve().parent.parent / "build" / "bench" / "floors.bpf.o"


def each_process_entry(directory):
    """(pid, name) of every entry of every /proc/<pid>/<directory>, as a walk of
    /proc finds them; processes that exit meanwhile are skipped."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                names = os.listdir(f"/proc/{pid}/{directory}")
            except OSError:
                continue
            for name in names:
                yield pid, name


def walk_fds():
    """Every open file of every process, the way lsof and psutil find them."""
    count = 0
    for pid, fd in each_process_entry("fd"):
        with contextlib.suppress(OSError):
            os.readlink(f"/proc/{pid}/fd/{fd}")
            count += 1
    return count


def walk_thread_stats():
    """Every thread's /proc/<pid>/task/<tid>/stat."""
    count = 0
    for pid, tid in each_process_entry("task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
            f.read()
            count += 1
    return count


def run_ls(path):
    subprocess.run(["ls", str(path)], check=True, stdout=subprocess.DEVNULL)


def listing(mountpoint, processes, floor_mountpoint, rounds=LISTING_ROUNDS):
    ours, theirs = mountpoint / "task", "/proc"
    entries = {"iterfs": len(os.listdir(ours)), "proc": len(os.listdir(theirs))}
    if min(entries.values()) < processes:
        raise RuntimeError(f"fewer entries than the {processes} processes held: {entries}")
    with fuse_floor(floor_mountpoint / "c", 0, entries["iterfs"]) as c_floor, \
            fuse_floor(floor_mountpoint / "pyfuse3", 0, entries["iterfs"],
                       kind="pyfuse3") as py_floor:
        listdir = median_times({
            "iterfs": functools.partial(os.listdir, ours),
            "/proc": functools.partial(os.listdir, theirs),
            "C FUSE": functools.partial(os.listdir, c_floor / "dir"),
            "pyfuse3": functools.partial(os.listdir, py_floor / "dir")}, rounds)
    ls = median_times({"iterfs": functools.partial(run_ls, ours),
                       "/proc": functools.partial(run_ls, theirs)}, rounds)
    return Result(
        case="listing", title=f"list MNT/task/ and /proc, {entries['proc']:,} entries",
        figures={"iterfs listdir": listdir["iterfs"], "/proc listdir": listdir["/proc"],
                 "iterfs ls": ls["iterfs"], "/proc ls": ls["/proc"],
                 "C FUSE listdir": listdir["C FUSE"], "pyfuse3 listdir": listdir["pyfuse3"]},
        unit="s", metric="iterfs / proc (listdir)",
        value=listdir["iterfs"] / listdir["/proc"], target=LISTING_TARGET,
        reference=listdir["pyfuse3"] / listdir["/proc"], reference_text="pyfuse3 alone",
        details={"rounds": rounds, "entries": entries,
                 "ls_iterfs_to_proc": ls["iterfs"] / ls["/proc"],
                 "c_fuse_to_proc": listdir["C FUSE"] / listdir["/proc"]})


@contextlib.contextmanager
def kernel_walks(programs):
    """{label: a function that runs the program of floors.bpf.o to the end}."""
    if not FLOORS.exists():
        raise RuntimeError(f"{FLOORS} is missing: make bench builds it")
    with bpf.load(FLOORS) as obj:
        def walk(program):
            with program.attach_iterator() as link, link.open() as stream:
                stream.fill(1 << 20)        # nothing written: one read walks all
        yield {label: functools.partial(walk, obj.program(name))
               for label, name in programs.items()}


def whole_system(case, title, view, ours, theirs, rounds, target, floors):
    """iterfs's whole-system file against the kernel's walks of `floors`
    ({label: program}, the last the limit), with the /proc walk it replaces and
    the same view read through the library alone (no FUSE) beside them."""
    with direct_reader(view) as read_direct, kernel_walks(floors) as walks:
        medians = median_times({"iterfs": functools.partial(read_all, ours),
                                "/proc walk": theirs, "library, no FUSE": read_direct,
                                **walks}, rounds)
    floor = list(floors)[-1]
    return Result(
        case=case, title=title, figures=medians, unit="s", metric=f"{floor} / iterfs",
        value=medians[floor] / medians["iterfs"], target=target,
        higher_is_better=True, reference=1.0,
        reference_text=f"{floor}: no formatting, no FUSE",
        details={"rounds": rounds,
                 "proc_walk_to_iterfs": medians["/proc walk"] / medians["iterfs"],
                 "proc_walk_to_floor": medians["/proc walk"] / medians[floor],
                 "proc_walk_to_library": medians["/proc walk"] / medians["library, no FUSE"]})


def files(mountpoint, rounds=ROUNDS):
    path = mountpoint / "task_file" / "all"
    lines = len(path.read_bytes().splitlines()) - 1
    if lines < FILES_PROCESSES * FILES_PER_PROCESS:
        raise RuntimeError(f"task_file/all shows only {lines} files")
    return whole_system(
        "files", f"every open file: task_file/all, {lines:,} files", "task_file",
        path, walk_fds, rounds, FILES_TARGET,
        {"kernel walk": "walk_task_file", "kernel walk + d_path": "d_path_file"})


def threads(mountpoint, rounds=ROUNDS):
    path = mountpoint / "task" / "all"
    lines = len(path.read_bytes().splitlines()) - 1
    if lines < THREADS:
        raise RuntimeError(f"task/all shows only {lines} threads")
    return whole_system(
        "threads", f"every thread's stats: task/all, {lines:,} threads", "task",
        path, walk_thread_stats, rounds, THREADS_TARGET, {"kernel walk": "walk_task"})


if __name__ == "__main__":
    import run
    run.main(["--cases", "listing,files,threads"])
