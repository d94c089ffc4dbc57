"""The mount itself: layout, attributes, read-only, lifecycle, no leaks, no stalls."""

import contextlib
import errno
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from iterfs import bpf

from conftest import (METRIC_VIEWS, OBJECTS, ROOT_ENTRIES, STATUS, TEST_OBJECTS, VIEWS,
                      iterator_links, parse_task_file, read_in_chunks, running_daemon)


def test_root_lists_one_view_per_program(mount):
    listed = os.listdir(mount.mountpoint)
    assert {"task_file", "tcp6", STATUS} <= set(listed)
    assert sorted(listed) == ROOT_ENTRIES


def test_attributes(mount):
    root = os.stat(mount.mountpoint)
    assert stat.S_ISDIR(root.st_mode) and stat.S_IMODE(root.st_mode) == 0o555
    tcp6 = os.stat(mount.mountpoint / "tcp6")
    assert stat.S_ISREG(tcp6.st_mode) and stat.S_IMODE(tcp6.st_mode) == 0o444
    assert tcp6.st_size == 0
    task_file = os.stat(mount.mountpoint / "task_file")
    assert stat.S_ISDIR(task_file.st_mode) and stat.S_IMODE(task_file.st_mode) == 0o555
    # As /proc: a process's fds are its owner's alone; each reader's self is its own.
    for name, mode in (("self", 0o444), (str(os.getpid()), 0o400), ("all", 0o400)):
        entry = os.stat(mount.mountpoint / "task_file" / name)
        assert stat.S_ISREG(entry.st_mode) and stat.S_IMODE(entry.st_mode) == mode, name
    entry = os.stat(mount.mountpoint / "task" / str(os.getpid()))
    assert stat.S_IMODE(entry.st_mode) == 0o444
    inodes = {os.stat(mount.mountpoint / p).st_ino
              for p in ("tcp6", "task_file", "task_file/self", f"task_file/{os.getpid()}")}
    assert len(inodes) == 4


def test_size_zero_files_read_like_proc(mount):
    """cat, head, wc and Python all see the content despite st_size 0."""
    path = str(mount.mountpoint / "tcp6")
    cat = subprocess.run(["cat", path], check=True, capture_output=True, text=True).stdout
    head = subprocess.run(["head", "-n1", path], check=True, capture_output=True, text=True)
    wc = subprocess.run(["wc", "-l", path], check=True, capture_output=True, text=True)
    assert cat.startswith("  sl  local_address")
    assert head.stdout == cat.splitlines(keepends=True)[0]
    assert int(wc.stdout.split()[0]) >= 1
    assert "tcp6" not in subprocess.run(["ls", str(mount.mountpoint / "tcp6")],
                                        capture_output=True, text=True).stderr


def test_reading_again_from_the_start(mount):
    fd = os.open(mount.mountpoint / "task_file" / "self", os.O_RDONLY)
    try:
        first = os.read(fd, 1 << 16)
        os.lseek(fd, 0, os.SEEK_SET)
        again = os.read(fd, 1 << 16)
        middle = os.pread(fd, 10, 5)
    finally:
        os.close(fd)
    assert first == again and middle == first[5:15]


def expect_errno(code, action, *args):
    with pytest.raises(OSError) as failed:
        action(*args)
    assert failed.value.errno == code, f"{action.__name__}{args}: {failed.value}"


def test_every_write_is_erofs(mount, tmp_path):
    m = mount.mountpoint
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND):
        expect_errno(errno.EROFS, os.open, m / "tcp6", flags)
    expect_errno(errno.EROFS, os.open, m / "new", os.O_WRONLY | os.O_CREAT, 0o644)
    expect_errno(errno.EROFS, os.mkdir, m / "dir")
    expect_errno(errno.EROFS, os.mkdir, m / "task_file" / "dir")
    expect_errno(errno.EROFS, os.rmdir, m / "task_file")
    expect_errno(errno.EROFS, os.unlink, m / "tcp6")
    expect_errno(errno.EROFS, os.unlink, m / "task_file" / "self")
    expect_errno(errno.EROFS, os.rename, m / "tcp6", m / "tcp7")
    expect_errno(errno.EROFS, os.link, m / "tcp6", m / "tcp7")
    expect_errno(errno.EROFS, os.symlink, "tcp6", m / "tcp7")
    expect_errno(errno.EROFS, os.mknod, m / "fifo", stat.S_IFIFO | 0o600)
    expect_errno(errno.EROFS, os.chmod, m / "tcp6", 0o666)
    expect_errno(errno.EROFS, os.chown, m / "tcp6", 1, 1)
    expect_errno(errno.EROFS, os.truncate, m / "tcp6", 0)
    expect_errno(errno.EROFS, os.utime, m / "tcp6", (0, 0))
    expect_errno(errno.EROFS, os.setxattr, m / "tcp6", "user.x", b"1")
    expect_errno(errno.EROFS, os.removexattr, m / "tcp6", "user.x")
    assert sorted(os.listdir(m)) == ROOT_ENTRIES


def test_no_extended_attributes(mount):
    assert os.listxattr(mount.mountpoint / "tcp6") == []
    expect_errno(errno.ENODATA, os.getxattr, mount.mountpoint / "tcp6", "user.x")


def settled(condition, timeout=5):
    """Whether `condition` holds within `timeout` s: FUSE sends release() after
    close() returns, so the daemon lets go of a file a moment later."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_thousand_opens_leak_no_fd_and_no_link(fresh_mount):
    programs = fresh_mount.program_ids()
    with bpf.Object(OBJECTS.parent / "internal" / "processes.bpf.o") as internal:
        listing = len(internal.programs)        # the daemon's own (task_walks.py)
    metrics = 0                                 # a metric may have several (metrics.py)
    for view in METRIC_VIEWS:
        with bpf.Object(OBJECTS / f"{view}.bpf.o") as obj:
            metrics += sum(1 for program in obj.programs if program.iterator_target)
    assert metrics > len(METRIC_VIEWS)          # slab.prom's 3, bpf_programs.prom's 2
    assert len(programs) == len(VIEWS) + metrics + listing
    names = ("tcp6", "task_file/self", f"task_file/{os.getpid()}")
    for name in names:              # warm up: worker threads, lazily made fds
        (fresh_mount.mountpoint / name).read_bytes()
    assert settled(lambda: iterator_links(programs) == [])
    fds = fresh_mount.fd_count()
    for i in range(1000):
        with open(fresh_mount.mountpoint / names[i % 3], "rb") as f:
            assert f.read()
    assert settled(lambda: fresh_mount.fd_count() == fds), fresh_mount.fd_count()
    assert iterator_links(programs) == []


def test_open_files_hold_a_link_until_closed(fresh_mount):
    programs = fresh_mount.program_ids()
    files = [open(fresh_mount.mountpoint / "tcp6", "rb") for _ in range(5)]
    try:
        assert len(iterator_links(programs)) == 5
        files[0].read(10)         # closed before the end: still released
    finally:
        for f in files:
            f.close()
    assert settled(lambda: iterator_links(programs) == [])


def test_reader_killed_mid_read_releases(fresh_mount):
    programs = fresh_mount.program_ids()
    fds = fresh_mount.fd_count()
    reader = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; f = open(sys.argv[1], 'rb'); f.read(1); print('open', flush=True);"
         " time.sleep(60)", str(fresh_mount.mountpoint / "tcp6")],
        stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "open"
    assert len(iterator_links(programs)) == 1
    reader.kill()
    reader.wait()
    assert settled(lambda: iterator_links(programs) == [])
    assert settled(lambda: fresh_mount.fd_count() == fds)


def test_concurrent_readers_get_whole_files(mount):
    errors, texts = [], []

    def reader():
        try:
            for _ in range(20):
                texts.append((mount.mountpoint / "task_file" / str(os.getpid())).read_text())
        except Exception as error:       # reported below
            errors.append(error)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(texts) == 160
    assert all({0, 1, 2} <= {row.fd for row in parse_task_file(t)} for t in texts)


@pytest.fixture
def slow_mount(tmp_path):
    """The built-in views plus `slow` (one read lasts seconds) and a program the
    verifier rejects, which must be left out without stopping the mount."""
    objects = tmp_path / "objects"
    objects.mkdir()
    for path in OBJECTS.glob("*.bpf.o"):
        (objects / path.name).symlink_to(path)
    for name in ("slow.bpf.o", "verifier_reject.bpf.o"):
        (objects / name).symlink_to(TEST_OBJECTS / name)
    with running_daemon(tmp_path / "mnt", objects=objects) as daemon:
        yield daemon


def test_long_read_does_not_stall_others(slow_mount):
    m = slow_mount.mountpoint
    assert sorted(os.listdir(m)) == sorted(ROOT_ENTRIES + ["slow"])
    assert "view verifier_reject rejected" in slow_mount.log()
    done = threading.Event()
    result = {}

    def slow_reader():
        result["text"] = (m / "slow").read_text()
        done.set()

    reader = threading.Thread(target=slow_reader)
    started = time.monotonic()
    reader.start()
    time.sleep(0.2)                  # let the slow read reach the kernel
    for _ in range(3):
        assert "self" in os.listdir(m / "task_file")
        assert (m / "tcp6").read_text().startswith("  sl")
        assert (m / "task_file" / "self").read_text()
    served_during = not done.is_set()
    reader.join()
    elapsed = time.monotonic() - started
    assert result["text"].startswith("symbol 0\n")
    assert elapsed > 0.5, "the slow view was not slow enough to show anything"
    assert served_during, f"other requests waited for a {elapsed:.1f}s read"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_and_exits_zero(tmp_path, signum):
    with running_daemon(tmp_path / "mnt") as daemon:
        os.kill(daemon.pid, signum)
        assert daemon.process.wait(timeout=10) == 0
        assert not os.path.ismount(daemon.mountpoint)
        assert "unmounted" in daemon.log()


def test_external_unmount_exits_zero(tmp_path):
    with running_daemon(tmp_path / "mnt") as daemon:
        subprocess.run(["fusermount3", "-u", str(daemon.mountpoint)], check=True)
        assert daemon.process.wait(timeout=10) == 0
        assert not os.path.ismount(daemon.mountpoint)


def test_signal_while_a_reader_holds_files_open(tmp_path):
    with running_daemon(tmp_path / "mnt") as daemon:
        f = open(daemon.mountpoint / "tcp6", "rb")
        f.read(5)
        os.kill(daemon.pid, signal.SIGTERM)
        assert daemon.process.wait(timeout=10) == 0
        with pytest.raises(OSError):
            f.read()
        with contextlib.suppress(OSError):      # ENOTCONN: nobody serves it now
            f.close()


def test_signal_during_a_long_read(slow_mount):
    """The daemon exits 0, and soon, while a reader is in the middle of a read."""
    reader = subprocess.Popen([sys.executable, "-c",
                               "import sys; open(sys.argv[1]).read()",
                               str(slow_mount.mountpoint / "slow")],
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        started = time.monotonic()
        os.kill(slow_mount.pid, signal.SIGTERM)
        assert slow_mount.process.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
    finally:
        reader.kill()
        reader.wait()


def test_reads_larger_than_read_ahead(fresh_mount):
    """A file of several MiB read in 1 MiB, 128 KiB and 4 KiB reads is whole."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import socket, sys\n"
         "held = [socket.socket(socket.AF_INET6) for _ in range(15000)]\n"
         "for s in held: s.bind(('::1', 0)); s.listen(1)\n"
         "print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        texts = {size: read_in_chunks(fresh_mount.mountpoint / "tcp6", size)
                 for size in (1 << 20, 128 << 10, 4096)}
    finally:
        holder.kill()
        holder.wait()
    lengths = {size: len(text) for size, text in texts.items()}
    assert min(lengths.values()) > 2 << 20, lengths
    for text in texts.values():
        lines = text.splitlines()
        assert [int(line.split(":")[0]) for line in lines[1:]] == list(range(len(lines) - 1))
        assert sum(":" in line and line.split()[3] == "0A" for line in lines) >= 15000
    # The pumps streamed at nice 10 and took their threads' priority back.
    assert settled(lambda: thread_nices(fresh_mount.pid) == {0}), thread_nices(fresh_mount.pid)


def thread_nices(pid):
    """The nice values of a process's threads (stat field 19)."""
    nices = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError), \
                open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
            nices.add(int(f.read().rsplit(b")", 1)[1].split()[16]))
    return nices
