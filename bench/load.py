"""The load the benchmarks set up: real sockets, processes, open files and threads,
held by child processes (tests/conftest.py's Holders) and released on the way out
of each `with`, even after a failure. Only the processes started here are ended,
each by its own pid."""

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import (  # noqa: E402,F401
    OBJECTS, PROCESSES_HOLDER, SOCKET_HOLDER, Holders, hold_sockets, running_daemon,
    stop_process)

# One process holding `n` open files (fds) in all, stdin, stdout and stderr counted.
FDS_HOLDER = r"""
import os, sys
wanted = int(sys.argv[1])
held = []
while len(os.listdir("/proc/self/fd")) - 1 < wanted:     # less listdir's own fd
    held.append(os.open("/dev/null", os.O_RDONLY))
print("ready", flush=True)
sys.stdin.read()
"""

FILES_HOLDER = r"""
import os, sys
held = [os.open("/dev/null", os.O_RDONLY) for _ in range(int(sys.argv[1]))]
print("ready", flush=True)
sys.stdin.read()
"""

THREADS_HOLDER = r"""
import sys, threading
stop = threading.Event()
threads = [threading.Thread(target=stop.wait, daemon=True) for _ in range(int(sys.argv[1]))]
for t in threads:
    t.start()
print("ready", flush=True)
sys.stdin.read()
"""

# Reads a file to EOF again and again until killed: a reader streaming a view.
STREAMER = r"""
import os, sys
path = sys.argv[1]
print("ready", flush=True)
while True:
    fd = os.open(path, os.O_RDONLY)
    while os.read(fd, 128 * 1024):
        pass
    os.close(fd)
"""

PROCESSES_PER_HOLDER = 2500


@contextlib.contextmanager
def holding(script, arguments):
    """Holders of `script`; on the way out each is asked to finish (its stdin
    closed) and waited for, then killed if it has not."""
    holders = Holders(script, arguments)
    try:
        yield holders
    finally:
        deadline = time.monotonic() + 30
        for process in holders.processes:
            with contextlib.suppress(OSError):
                process.stdin.close()
        for process in holders.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        holders.close()


@contextlib.contextmanager
def killed_at_end(holders):
    try:
        yield holders
    finally:
        holders.close()


def sockets(count):
    """`count` connected IPv6 TCP sockets (count / 2 connections over ::1)."""
    return killed_at_end(hold_sockets(count))


def socket_processes(processes_count, count):
    """`processes_count` processes holding `count` connected IPv6 TCP sockets
    in all, each the two ends of its share of the connections."""
    return holding(SOCKET_HOLDER, [count // 2 // processes_count] * processes_count)


def processes(count):
    """`count` more processes, idle, each blocked on a pipe."""
    per_holder = [min(PROCESSES_PER_HOLDER, count - start)
                  for start in range(0, count, PROCESSES_PER_HOLDER)]
    return holding(PROCESSES_HOLDER, per_holder)


@contextlib.contextmanager
def process_with_fds(count):
    """One process with exactly `count` open files: its pid."""
    with holding(FDS_HOLDER, [count]) as holders:
        pid = holders.processes[0].pid
        assert len(os.listdir(f"/proc/{pid}/fd")) == count
        yield pid


def files(processes_count, per_process):
    return holding(FILES_HOLDER, [per_process] * processes_count)


def threads(count, per_process=500):
    return holding(THREADS_HOLDER, [per_process] * (count // per_process))


def streamers(path, count):
    """`count` processes reading `path` to EOF over and over, until the block ends."""
    return killed_at_end(Holders(STREAMER, [path] * count))


BENCH = Path(__file__).resolve().parent
FLOORS = {
    # A minimal libfuse daemon in C (make bench builds it).
    "C FUSE": [BENCH.parent / "build" / "fuse_floor"],
    # The same filesystem in pyfuse3 and trio, without iterfs.
    "pyfuse3": [sys.executable, BENCH / "pyfuse3_floor.py"],
}


@contextlib.contextmanager
def fuse_floor(mountpoint, size, entries=0, kind="C FUSE"):
    """A minimal FUSE daemon (see FLOORS) mounted at `mountpoint`, serving a
    file `small` of `size` bytes and a directory `dir` of `entries` files: the
    mount point. Unmounted, and the daemon waited for, on the way out."""
    command = FLOORS[kind]
    if not Path(command[-1]).exists():
        raise RuntimeError(f"{command[-1]} is missing: make bench builds it")
    mountpoint.mkdir(parents=True, exist_ok=True)
    daemon = subprocess.Popen([*command, mountpoint, str(size), str(entries)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        if daemon.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{kind} floor did not mount: {daemon.stderr.read().strip()}")
        # pyfuse3 says ready before the kernel's INIT is answered: wait for it.
        deadline = time.monotonic() + 10
        while not (mountpoint / "small").exists():
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError(f"{kind} floor did not answer at {mountpoint}")
            time.sleep(0.01)
        yield mountpoint
    finally:
        subprocess.run(["fusermount3", "-u", "-z", mountpoint],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            daemon.wait(timeout=5)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        daemon.stdout.close()
        daemon.stderr.close()
