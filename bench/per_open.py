"""Per-open cost: open, read to EOF, close a small view (task_file/<pid> of a
process with 10 open files) again and again,

    iterfs   through the mount
    direct   through the iterfs library alone (iterfs.bpf), no FUSE: the same
             object loaded in this process, attached with the pid, the iterator
             created, read, closed

each round timing a batch of each, the order alternating. Target: iterfs /
direct <= 3.
"""

import contextlib

from harness import READ_SIZE, Result, median_times, read_all, scheduler_times
from load import OBJECTS

from iterfs import bpf

ROUNDS = 15
BATCH = 200
TARGET = 3
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


def per_open(daemon, pid, rounds=ROUNDS, batch=BATCH):
    path = daemon.mountpoint / "task_file" / str(pid)
    with direct_reader("task_file", pid) as read_direct:
        sizes = {"iterfs": read_all(path), "direct": read_direct()}
        if sizes["iterfs"] != sizes["direct"] or not sizes["iterfs"]:
            raise RuntimeError(f"iterfs and the library read different sizes: {sizes}")
        before = scheduler_times(daemon.pid)
        medians = median_times({"iterfs": lambda: [read_all(path) for _ in range(batch)],
                                "direct": lambda: [read_direct() for _ in range(batch)]},
                               rounds)
        # Only the opens through the mount run on the daemon's main thread.
        on_cpu, waiting = (after - earlier for after, earlier
                           in zip(scheduler_times(daemon.pid), before))
    each = {name: seconds / batch for name, seconds in medians.items()}
    return Result(
        case="per_open",
        title=f"open, read, close task_file/<pid> ({FILES} files, {sizes['iterfs']} B)",
        figures=each, unit="s", metric="iterfs / direct",
        value=each["iterfs"] / each["direct"], target=TARGET,
        details={"rounds": rounds, "batch": batch, "bytes": sizes["iterfs"],
                 "daemon_main_thread_cpu_per_open": on_cpu / (rounds * batch),
                 "daemon_main_thread_runqueue_wait_per_open": waiting / (rounds * batch)})
