"""Copying views the way copiers do: sendfile(2), splice(2) and shutil.copyfile,
which uses sendfile on Linux. Each copy must hold the bytes read(2) gives.

Whether the kernel can splice a FUSE file of unknown size (st_size 0, as
iterfs's and /proc's files) is the kernel's choice, not ours: see the README,
"Copying with sendfile and splice". So the kernel is asked first, with the
smallest such file there is, served by bench/pyfuse3_floor.py: where it splices
that one empty, the tests of copies are skipped with the reason; where it
splices that one whole, an iterfs file copied short is our bug and fails.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, VIEWS, STATUS, kill_quietly, view_target
from iterfs.views import PER_PROCESS_TARGETS

pytestmark = pytest.mark.kernel

FLOOR = ROOT / "bench" / "pyfuse3_floor.py"
FLOOR_BYTES = 300_000         # more than a pipe holds, so splice takes turns
ATTEMPTS = 5                  # a view may change between a read and a copy
PROCESS_VIEWS = tuple(view for view in VIEWS if view_target(view) in PER_PROCESS_TARGETS)
FILES = sorted({*VIEWS, STATUS} - set(PROCESS_VIEWS))


def splice_to_pipe(fd):
    """The file from its position on, through a pipe with splice(2)."""
    r, w = os.pipe()
    try:
        chunks = []
        while count := os.splice(fd, w, 1 << 16):
            while count:
                chunk = os.read(r, count)
                chunks.append(chunk)
                count -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(r)
        os.close(w)


def kernel_reason(tmp_dir):
    """None where the kernel splices a FUSE file of unknown size whole, else why not."""
    mountpoint = tmp_dir / "floor"
    mountpoint.mkdir()
    floor = subprocess.Popen([sys.executable, str(FLOOR), str(mountpoint), str(FLOOR_BYTES), "0"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert floor.stdout.readline().strip() == "ready"
        fd = os.open(mountpoint / "unsized", os.O_RDONLY)
        try:
            spliced = len(splice_to_pipe(fd))
        finally:
            os.close(fd)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)
        kill_quietly(floor)
    if spliced == FLOOR_BYTES:
        return None
    return (f"kernel {os.uname().release}: splice(2) of a FUSE file of unknown size "
            f"gives {spliced} of its {FLOOR_BYTES} bytes (filemap_splice_read stops at "
            f"its size, 0; README, Copying with sendfile and splice)")


@pytest.fixture(scope="module")
def splices(tmp_path_factory):
    reason = kernel_reason(tmp_path_factory.mktemp("floor"))
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def sleeper():
    """A process whose task, task_file and task_vma views hold still: asleep,
    with only its standard fds left (sleep opens and closes its locale's files
    first, which under emulation takes a while)."""
    process = subprocess.Popen(["sleep", "infinity"])
    try:
        deadline = time.monotonic() + 30
        while not (sorted(os.listdir(f"/proc/{process.pid}/fd")) == ["0", "1", "2"] and
                   Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                   == "S"):
            assert time.monotonic() < deadline, "sleep never settled"
            time.sleep(0.01)
        time.sleep(0.05)
        yield process.pid
    finally:
        kill_quietly(process)


def read_whole(path):
    with open(path, "rb") as f:
        return f.read()


def sendfile_to_file(path, out_dir, pair):
    """os.sendfile into a regular file, from the file's position, until it gives 0."""
    target = out_dir / "sendfile"
    fd = os.open(path, os.O_RDONLY)
    try:
        with open(target, "wb") as out:
            while os.sendfile(out.fileno(), fd, None, 1 << 20):
                pass
    finally:
        os.close(fd)
    return target.read_bytes()


def sendfile_to_socket(path, out_dir, pair):
    """os.sendfile into a stream socket at explicit offsets, as servers send files."""
    ours, theirs = pair
    received = []
    reader = threading.Thread(target=lambda: received.extend(iter(lambda: theirs.recv(1 << 16), b"")))
    reader.start()
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            offset = 0
            while sent := os.sendfile(ours.fileno(), fd, offset, 1 << 20):
                offset += sent
        finally:
            os.close(fd)
    finally:
        ours.shutdown(socket.SHUT_WR)
        reader.join()
    return b"".join(received)


def splice_into_pipe(path, out_dir, pair):
    fd = os.open(path, os.O_RDONLY)
    try:
        return splice_to_pipe(fd)
    finally:
        os.close(fd)


def copyfile(path, out_dir, pair):
    target = out_dir / "copy"
    shutil.copyfile(path, target)
    return target.read_bytes()


COPIERS = [sendfile_to_file, sendfile_to_socket, splice_into_pipe, copyfile]


def own_link_left_out(text):
    """/bpf_link shows the link of the open reading it, another at each open:
    that line is left out. The others must be equal."""
    lines = text.splitlines(keepends=True)
    columns = lines[0].split()
    rows = [dict(zip(columns, line.split())) for line in lines[1:]]
    return lines[0] + "".join(line for line, row in zip(lines[1:], rows)
                              if (row["type"], row["target"]) != ("iter", "bpf_link"))


def comparable(path, data):
    return own_link_left_out(data.decode()).encode() if path.name == "bpf_link" else data


def assert_copies_what_read_gives(path, copier, out_dir):
    """The copy equals a read(2) just before or just after it; views change, so
    a few tries are allowed. The copier's socket pair is made before the reads:
    /unix shows it."""
    for _ in range(ATTEMPTS):
        with contextlib.ExitStack() as stack:
            pair = [stack.enter_context(end) for end in socket.socketpair()]
            before = read_whole(path)
            copied = copier(path, out_dir, pair)
            after = read_whole(path)
        assert before, f"{path} read empty"
        before, copied, after = (comparable(path, data) for data in (before, copied, after))
        if copied in (before, after):
            return
    assert copied == after, f"{copier.__name__} of {path}: {len(copied)} of {len(after)} bytes"


@pytest.mark.parametrize("copier", COPIERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", FILES)
def test_copies_of_each_file(mount, splices, tmp_path, name, copier):
    assert_copies_what_read_gives(mount.mountpoint / name, copier, tmp_path)


@pytest.mark.parametrize("copier", COPIERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("view", PROCESS_VIEWS)
def test_copies_of_a_process_file(mount, splices, sleeper, tmp_path, view, copier):
    assert_copies_what_read_gives(mount.mountpoint / view / str(sleeper), copier, tmp_path)


def test_a_copy_from_the_middle(mount, splices, tmp_path):
    """sendfile from where read(2) left the file, and a seek back to its start."""
    path = mount.mountpoint / "ksym" if "ksym" in VIEWS else mount.mountpoint / STATUS
    for _ in range(ATTEMPTS):
        whole = read_whole(path)
        fd = os.open(path, os.O_RDONLY)
        try:
            head = os.read(fd, 1000)
            rest = splice_to_pipe(fd)
            os.lseek(fd, 0, os.SEEK_SET)
            again = splice_to_pipe(fd)
        finally:
            os.close(fd)
        if head + rest == whole == again:
            return
    assert head + rest == whole
    assert again == whole


def test_reads_and_seeks_as_before(mount, sleeper, tmp_path):
    """What worked before copies did: cp, tail, head, grep, reads of any size and
    seeks both ways, each against one read(2) of the whole file."""
    path = mount.mountpoint / "task_file" / str(sleeper)
    whole = read_whole(path)
    lines = whole.splitlines(keepends=True)
    assert len(lines) >= 4, whole
    subprocess.run(["cp", str(path), str(tmp_path / "cp")], check=True)
    assert (tmp_path / "cp").read_bytes() == whole
    tail = subprocess.run(["tail", "-n2", str(path)], check=True, capture_output=True).stdout
    assert tail == b"".join(lines[-2:])
    head = subprocess.run(["head", "-c", "10", str(path)], check=True, capture_output=True)
    assert head.stdout == whole[:10]
    grep = subprocess.run(["grep", "-c", "", str(path)], check=True, capture_output=True)
    assert int(grep.stdout) == len(lines)
    fd = os.open(path, os.O_RDONLY)
    try:
        for size in (1, 7, 4096):
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, size):
                chunks.append(chunk)
            assert b"".join(chunks) == whole, size
        assert os.pread(fd, 5, 3) == whole[3:8]
        os.lseek(fd, 2, os.SEEK_SET)
        assert os.read(fd, len(whole)) == whole[2:]
    finally:
        os.close(fd)


def test_an_o_direct_open_copies_on_every_kernel(mount, tmp_path):
    """The README's way round where the kernel splices these files empty: opened
    with O_DIRECT, the kernel splices through read(2) (copy_splice_read)."""
    path = mount.mountpoint / ("ksym" if "ksym" in VIEWS else STATUS)
    target = tmp_path / "direct"
    for _ in range(ATTEMPTS):
        before = read_whole(path)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            with open(target, "wb") as out:
                offset = 0
                while sent := os.sendfile(out.fileno(), fd, offset, 1 << 20):
                    offset += sent
        finally:
            os.close(fd)
        after = read_whole(path)
        if target.read_bytes() in (before, after):
            return
    assert target.read_bytes() == after
