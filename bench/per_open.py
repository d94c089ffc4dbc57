"""Per-open cost: open, read to EOF, close a small view (task_file/<pid> of a
process with 10 open files) again and again,

    iterfs   through the mount
    direct   through the iterfs library alone (iterfs.bpf), no FUSE: the same
             object loaded in this process, attached with the pid, the iterator
             created, read, closed
    C FUSE   a file of the same size from bench/fuse_floor.c, a minimal C FUSE
             daemon: the same requests (OPEN, READ, READ for EOF, RELEASE) and
             no other work, what any FUSE filesystem pays here
    pyfuse3  the same from bench/pyfuse3_floor.py, the same minimal daemon in
             pyfuse3 and trio: what a Python daemon pays before doing anything

each round timing a batch of each, the order rotating. Target: iterfs /
pyfuse3 <= 1.5: the pyfuse3 daemon is the limit, what no daemon built on
pyfuse3 goes under (C FUSE / direct says what FUSE itself costs, iterfs /
direct what the whole open costs against the library's).
"""

import contextlib

from harness import READ_SIZE, Result, median_times, read_all, scheduler_times
from load import OBJECTS, fuse_floor

from iterfs import bpf

ROUNDS = 15
BATCH = 200
TARGET = 1.5
FILES = 10      # open files of the process whose view is read


@contextlib.contextmanager
def direct_reader(view, pid=None):
    """A function that reads `view` once (for process `pid`, or every task if
    None) through iterfs.bpf, with no FUSE: attach, create the iterator, read
    it to the end, close both."""
    with bpf.load(OBJECTS / f"{view}.bpf.o") as obj:
        program = obj.program(view)
        buffer = bytearray(READ_SIZE)

        def read_once():
            with program.attach_iterator(pid=pid) as link, link.open() as stream:
                size = 0
                while n := stream.readinto(buffer):
                    size += n
                return size
        yield read_once


def per_open(daemon, pid, floor_mountpoint, rounds=ROUNDS, batch=BATCH):
    path = daemon.mountpoint / "task_file" / str(pid)
    size = read_all(path)
    with direct_reader("task_file", pid) as read_direct, \
            fuse_floor(floor_mountpoint / "c", size) as c_floor, \
            fuse_floor(floor_mountpoint / "pyfuse3", size, kind="pyfuse3") as py_floor:
        files = {"iterfs": path, "C FUSE": c_floor / "small", "pyfuse3": py_floor / "small"}
        sizes = {"direct": read_direct(), **{name: read_all(f) for name, f in files.items()}}
        if len(set(sizes.values())) != 1 or not size:
            raise RuntimeError(f"the library and the mounts read different sizes: {sizes}")
        before = scheduler_times(daemon.pid)

        def batch_of(file):
            return lambda: [read_all(file) for _ in range(batch)]
        medians = median_times({"iterfs": batch_of(path),
                                "direct": lambda: [read_direct() for _ in range(batch)],
                                "C FUSE": batch_of(files["C FUSE"]),
                                "pyfuse3": batch_of(files["pyfuse3"])}, rounds)
        # Only the opens through the mount run on the daemon's main thread.
        on_cpu, waiting = (after - earlier for after, earlier
                           in zip(scheduler_times(daemon.pid), before))
    each = {name: seconds / batch for name, seconds in medians.items()}
    return Result(
        case="per_open",
        title=f"open, read, close task_file/<pid> ({FILES} files, {sizes['iterfs']} B)",
        figures=each, unit="s", metric="iterfs / pyfuse3",
        value=each["iterfs"] / each["pyfuse3"], target=TARGET,
        reference=1.0, reference_text="the pyfuse3 daemon",
        details={"rounds": rounds, "batch": batch, "bytes": size,
                 "iterfs_to_direct": each["iterfs"] / each["direct"],
                 "pyfuse3_to_direct": each["pyfuse3"] / each["direct"],
                 "c_fuse_floor_to_direct": each["C FUSE"] / each["direct"],
                 "daemon_main_thread_cpu_per_open": on_cpu / (rounds * batch),
                 "daemon_main_thread_runqueue_wait_per_open": waiting / (rounds * batch)})
