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
TARGETS = (1.05, 1.10)              # iterfs / pinned, in cat's reads and netstat's


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

    # The pinned file is the limit: the same program's walk without FUSE.
    return [Result(
        case=case, title=f"/tcp6, {sockets:,} sockets, {size // 1024} KiB reads",
        figures=medians[size], unit="s", metric="iterfs / pinned",
        value=medians[size]["iterfs"] / medians[size]["pinned"], target=target,
        reference=1.0, reference_text="the pinned file",
        details={"rounds": rounds, "lines": lines, "read_size": size,
                 "iterfs_to_proc": medians[size]["iterfs"] / medians[size]["/proc/net/tcp6"]})
        for case, size, target in zip(("streaming", "streaming_small"), READ_SIZES, TARGETS)]


if __name__ == "__main__":
    import run
    run.main(["--cases", "streaming"])
