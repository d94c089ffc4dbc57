"""Streaming: /tcp6 with tens of thousands of sockets, read three ways.

    iterfs   MNT/tcp6 through the FUSE daemon
    pinned   the same compiled program pinned in bpffs (bpftool iter pin)
    proc     /proc/net/tcp6

Each round reads each file once to EOF, the order rotating every round, in
128 KiB reads (what cat asks for: the target, iterfs / pinned <= 1.05) and in
4 KiB reads (what netstat asks for). `python bench/tcp6.py` runs this case
alone (bench/run.py --cases streaming).
"""

import functools
import os
import subprocess
from pathlib import Path

from harness import Result, median_times, read_all
from load import OBJECTS

SOCKETS = 30000
ROUNDS = 15
READ_SIZES = (128 * 1024, 4096)     # cat's reads, netstat's
TARGET = 1.05                       # iterfs / pinned, in cat's reads


def streaming(mountpoint, sockets, rounds=ROUNDS):
    pin = Path(f"/sys/fs/bpf/iterfs_bench_tcp6_{os.getpid()}")
    try:
        subprocess.run(["bpftool", "iter", "pin", str(OBJECTS / "tcp6.bpf.o"), str(pin)],
                       check=True)
        paths = {"iterfs": mountpoint / "tcp6", "pinned": pin,
                 "/proc/net/tcp6": Path("/proc/net/tcp6")}
        lines = {name: len(path.read_bytes().splitlines()) for name, path in paths.items()}
        if min(lines.values()) < sockets:
            raise RuntimeError(f"fewer lines than the {sockets} sockets held: {lines}")
        medians = {size: median_times({name: functools.partial(read_all, path, size)
                                       for name, path in paths.items()}, rounds)
                   for size in READ_SIZES}
    finally:
        pin.unlink(missing_ok=True)

    cat, netstat = (medians[size] for size in READ_SIZES)
    return Result(
        case="streaming",
        title=f"/tcp6, {sockets:,} sockets, 128 KiB reads",
        figures=cat, unit="s", metric="iterfs / pinned",
        value=cat["iterfs"] / cat["pinned"], target=TARGET,
        details={"rounds": rounds, "lines": lines,
                 "iterfs_to_proc": cat["iterfs"] / cat["/proc/net/tcp6"],
                 "reads_of_4096": netstat,
                 "reads_of_4096_iterfs_to_pinned": netstat["iterfs"] / netstat["pinned"]})


if __name__ == "__main__":
    import run
    run.main(["--cases", "streaming"])
