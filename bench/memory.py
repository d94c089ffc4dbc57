"""Memory: the daemon's resident memory (VmRSS) after 100,000 opens, each open
read to EOF and closed, of a small view (task_file/<pid>, 10 open files), by two
readers at once. The daemon is a fresh one, started for this case alone; its
VmRSS is sampled every 10,000 opens. Target: <= 64 MiB after the last.
"""

import threading
from pathlib import Path

from harness import Result, read_all

OPENS = 100_000
SAMPLES = 10
READERS = 2
TARGET_MIB = 64


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def open_many(path, count, readers=READERS):
    """`count` opens of `path`, read to EOF, shared by `readers` threads."""
    errors = []

    def reader(share):
        try:
            for _ in range(share):
                read_all(path)
        except BaseException as error:
            errors.append(error)
    shares = [count // readers + (i < count % readers) for i in range(readers)]
    threads = [threading.Thread(target=reader, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def memory(daemon, pid, opens=OPENS):
    path = Path(daemon.mountpoint) / "task_file" / str(pid)
    fds = daemon.fd_count()
    curve = {0: status_kib(daemon.pid, "VmRSS") / 1024}
    for step in range(1, SAMPLES + 1):
        open_many(path, opens // SAMPLES)
        curve[step * opens // SAMPLES] = status_kib(daemon.pid, "VmRSS") / 1024
    last = curve[opens]
    return Result(
        case="memory", title=f"daemon VmRSS after {opens:,} opens of task_file/<pid>",
        figures={"at start": curve[0], f"after {opens:,} opens": last}, unit="MiB",
        metric="VmRSS MiB", value=last, target=TARGET_MIB,
        details={"vmrss_mib_by_opens": curve,
                 "vmhwm_mib": status_kib(daemon.pid, "VmHWM") / 1024,
                 "daemon_fds_before_and_after": [fds, daemon.fd_count()]})
