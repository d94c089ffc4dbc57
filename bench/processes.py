"""Process benchmarks: iterfs's process directories and whole-system views
against /proc.

    listing  `ls MNT/task/` against `ls /proc` with 5,000 more processes.
             Timed as os.listdir() (opendir, getdents until the end, closedir:
             what ls asks of the filesystem, and only that). Target: iterfs /
             proc <= 2. The real ls binary, run for both, is shown beside it:
             its fork, exec and sorting cost the same on both sides.
    files    every open file of every process: task_file/all, against listing
             /proc/*/fd and readlink() of each fd (what lsof and psutil do),
             with 200 processes holding 500 open files each. Target: >= 10x.
    threads  every thread's stats: task/all, against reading every
             /proc/*/task/*/stat, with 10,000 threads. Target: >= 20x.

`python bench/processes.py` runs these cases alone (bench/run.py --cases
listing,files,threads).
"""

import contextlib
import functools
import os
import subprocess

from harness import Result, median_times, read_all
from per_open import direct_reader

ROUNDS = 9
LISTING_ROUNDS = 15
PROCESSES = 5000
LISTING_TARGET = 2
FILES_PROCESSES, FILES_PER_PROCESS = 200, 500
FILES_TARGET = 10
THREADS = 10000
THREADS_TARGET = 20


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


def listing(mountpoint, processes, rounds=LISTING_ROUNDS):
    ours, theirs = mountpoint / "task", "/proc"
    entries = {"iterfs": len(os.listdir(ours)), "proc": len(os.listdir(theirs))}
    if min(entries.values()) < processes:
        raise RuntimeError(f"fewer entries than the {processes} processes held: {entries}")
    listdir = median_times({"iterfs": functools.partial(os.listdir, ours),
                            "/proc": functools.partial(os.listdir, theirs)}, rounds)
    ls = median_times({"iterfs": functools.partial(run_ls, ours),
                       "/proc": functools.partial(run_ls, theirs)}, rounds)
    return Result(
        case="listing", title=f"list MNT/task/ and /proc, {entries['proc']:,} entries",
        figures={"iterfs listdir": listdir["iterfs"], "/proc listdir": listdir["/proc"],
                 "iterfs ls": ls["iterfs"], "/proc ls": ls["/proc"]},
        unit="s", metric="iterfs / proc (listdir)",
        value=listdir["iterfs"] / listdir["/proc"], target=LISTING_TARGET,
        details={"rounds": rounds, "entries": entries,
                 "ls_iterfs_to_proc": ls["iterfs"] / ls["/proc"]})


def whole_system(case, title, view, ours, theirs, rounds, target):
    """iterfs's whole-system file against the /proc walk it replaces; the same
    view read through the library alone (no FUSE) is shown beside them."""
    with direct_reader(view) as read_direct:
        medians = median_times({"iterfs": functools.partial(read_all, ours),
                                "/proc walk": theirs, "library, no FUSE": read_direct},
                               rounds)
    return Result(
        case=case, title=title, figures=medians, unit="s", metric="/proc walk / iterfs",
        value=medians["/proc walk"] / medians["iterfs"], target=target,
        higher_is_better=True,
        details={"rounds": rounds,
                 "proc_walk_to_library": medians["/proc walk"] / medians["library, no FUSE"]})


def files(mountpoint, rounds=ROUNDS):
    path = mountpoint / "task_file" / "all"
    lines = len(path.read_bytes().splitlines()) - 1
    if lines < FILES_PROCESSES * FILES_PER_PROCESS:
        raise RuntimeError(f"task_file/all shows only {lines} files")
    return whole_system(
        "files", f"every open file: task_file/all, {lines:,} files", "task_file",
        path, walk_fds, rounds, FILES_TARGET)


def threads(mountpoint, rounds=ROUNDS):
    path = mountpoint / "task" / "all"
    lines = len(path.read_bytes().splitlines()) - 1
    if lines < THREADS:
        raise RuntimeError(f"task/all shows only {lines} threads")
    return whole_system(
        "threads", f"every thread's stats: task/all, {lines:,} threads", "task",
        path, walk_thread_stats, rounds, THREADS_TARGET)


if __name__ == "__main__":
    import run
    run.main(["--cases", "listing,files,threads"])
