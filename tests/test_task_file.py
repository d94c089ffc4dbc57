"""task_file/: per-process open files, compared with /proc/<pid>/fd."""

import errno
import json
import os
import subprocess
import sys
import threading

import pytest

from conftest import (PROCESSES_HOLDER, escape_newlines, fdinfo, needs_view, parse_task_file,
                      process_fds)

pytestmark = needs_view('task_file')


@pytest.mark.kernel
def test_process_file_lists_exactly_its_fds(mount, holder):
    rows = parse_task_file((mount.mountpoint / "task_file" / str(holder.pid)).read_text())
    expected = {fd: escape_newlines(path) for fd, path in process_fds(holder.pid).items()}
    assert {row.fd: row.path for row in rows} == expected
    assert len(rows) == len(expected)
    assert {(row.tgid, row.pid) for row in rows} == {(holder.pid, holder.pid)}
    assert {row.fd: (row.flags, row.pos) for row in rows} == \
        {fd: fdinfo(holder.pid, fd) for fd in expected}
    flags = {row.flags for row in rows}
    assert any(f & os.O_APPEND and f & os.O_NONBLOCK and not f & os.O_CLOEXEC for f in flags)
    assert any(f & os.O_CLOEXEC for f in flags)
    assert {12345, 777} <= {row.pos for row in rows}
    paths = set(expected.values())
    # Every kind of name readlink gives is there, spelled as readlink spells it.
    assert "/dev/null" in paths
    assert any(p.startswith("socket:[") for p in paths)
    assert any(p.startswith("pipe:[") for p in paths)
    assert "anon_inode:[eventpoll]" in paths
    assert any(p.startswith("/memfd:holder") for p in paths)
    assert any(p.endswith("/deleted (deleted)") for p in paths)
    assert any(p.endswith("/with space") for p in paths)
    assert any(p.endswith("/new\\012line") for p in paths)


# 300 descriptors, close-on-exec on a pattern that differs from one 64-fd word
# of the kernel's bitmap to the next, then one changed after the first read.
MANY_FDS = r"""
import fcntl, os, sys
fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(300)]
for fd in fds:
    os.set_inheritable(fd, not (fd % 3 == 0 or fd // 64 == 2 or fd in (63, 64, 127)))
print("ready", flush=True)
sys.stdin.readline()
os.set_inheritable(130, True)
os.set_inheritable(200, False)
print("changed", flush=True)
sys.stdin.read()
"""


@pytest.mark.kernel
def test_close_on_exec_of_many_fds_is_fdinfos(mount):
    """The close-on-exec bits are read a word of 64 fds at a time (task_file.bpf.c):
    every fd's flags still equal its fdinfo's, before and after a change."""
    process = subprocess.Popen([sys.executable, "-c", MANY_FDS], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "ready\n"
        path = mount.mountpoint / "task_file" / str(process.pid)
        for step in ("before", "after"):
            rows = parse_task_file(path.read_text())
            assert len(rows) > 300, step
            assert {row.fd: row.flags for row in rows} == \
                {row.fd: fdinfo(process.pid, row.fd)[0] for row in rows}, step
            closing = {row.fd for row in rows if row.flags & os.O_CLOEXEC}
            assert {63, 64, 127, 128, 191} <= closing and not {65, 125, 193} & closing, step
            if step == "before":
                assert 130 in closing and 200 not in closing
                process.stdin.write("go\n")
                process.stdin.flush()
                assert process.stdout.readline() == "changed\n"
        assert 130 not in closing and 200 in closing
    finally:
        process.kill()
        process.wait()


READ_SELF = r"""
import json, os, sys
with open(os.path.join(sys.argv[1], "task_file", "self")) as f:
    text = f.read()
    own = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            own[fd] = os.readlink("/proc/self/fd/" + fd)
        except FileNotFoundError:
            pass   # the descriptor listdir itself used
print(json.dumps({"pid": os.getpid(), "text": text, "fds": own}))
"""


@pytest.mark.kernel
def test_self_is_the_reader(mount):
    out = subprocess.run([sys.executable, "-c", READ_SELF, str(mount.mountpoint)],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    rows = parse_task_file(result["text"])
    assert {(row.tgid, row.pid) for row in rows} == {(result["pid"], result["pid"])}
    shown = {str(row.fd): row.path for row in rows}
    own = {fd: path for fd, path in result["fds"].items() if not path.startswith("/proc/")}
    assert shown == own
    assert str(mount.mountpoint / "task_file" / "self") in shown.values()


def test_self_from_a_thread_is_the_whole_process(mount):
    result = {}

    def read_self():
        result["text"] = (mount.mountpoint / "task_file" / "self").read_text()

    reader = threading.Thread(target=read_self)
    reader.start()
    reader.join()
    rows = parse_task_file(result["text"])
    assert {(row.tgid, row.pid) for row in rows} == {(os.getpid(), os.getpid())}


def test_listing_is_every_process_self_and_all(mount):
    """Every process /proc lists, except one the kernel hides from task
    iterators (this machine's kernel hides pid 1): its own task/<pid> shows no
    thread, so a listing of it would lead to empty views."""
    before = {name for name in os.listdir("/proc") if name.isdigit()}
    listed = set(os.listdir(mount.mountpoint / "task_file"))
    after = {name for name in os.listdir("/proc") if name.isdigit()}
    assert {"self", "all"} <= listed
    listed -= {"self", "all"}
    assert listed <= before | after
    for pid in (before & after) - listed:
        threads = (mount.mountpoint / "task" / pid).read_bytes().splitlines()[1:]
        assert threads == [] and os.path.exists(f"/proc/{pid}"), pid
    assert str(os.getpid()) in listed


def test_listing_of_thousands_of_processes_is_whole(mount):
    """More processes than one batch of the listing's walk (1,024): the entries
    come while the walk goes on, in order, none lost or twice."""
    holder = subprocess.Popen([sys.executable, "-c", PROCESSES_HOLDER, "2500"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        children = {int(line.split()[0]) for line in
                    open(f"/proc/{holder.pid}/task/{holder.pid}/children").read().split()}
        assert len(children) == 2500
        for _ in range(3):
            listed = os.listdir(mount.mountpoint / "task")
            pids = [int(name) for name in listed[2:]]
            assert listed[:2] == ["self", "all"]
            assert pids == sorted(set(pids))
            assert children <= set(pids)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


@pytest.mark.parametrize("name", [
    "0", "00", "01", "-1", "+1", "1_0", " 7", "7 ", "7\n", "\u0663", "\uff17", "1e3",
    "0x10", "abc", "self2", "Self", "ALL", "all ", "99999999999", "18446744073709551617",
])
def test_names_that_are_not_pids(mount, name):
    path = mount.mountpoint / "task_file" / name
    with pytest.raises(FileNotFoundError):
        os.stat(path)
    with pytest.raises(FileNotFoundError):
        open(path).close()


def test_pid_above_pid_max(mount):
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    with pytest.raises(FileNotFoundError):
        os.stat(mount.mountpoint / "task_file" / str(pid_max + 1))


def test_dead_process_is_enoent(mount):
    child = subprocess.Popen(["true"])
    child.wait()
    with pytest.raises(OSError) as gone:
        open(mount.mountpoint / "task_file" / str(child.pid)).close()
    assert gone.value.errno == errno.ENOENT


def test_process_gone_between_lookup_and_open_is_enoent(mount):
    child = subprocess.Popen(["sleep", "60"])
    path = mount.mountpoint / "task_file" / str(child.pid)
    os.stat(path)                   # the kernel now caches this name for a moment
    child.kill()
    child.wait()
    with pytest.raises(OSError) as gone:
        open(path).close()
    assert gone.value.errno == errno.ENOENT


def test_thread_is_openable_but_not_listed(mount):
    started, finish = threading.Event(), threading.Event()
    tids = []

    def thread():
        tids.append(threading.get_native_id())
        started.set()
        finish.wait()

    worker = threading.Thread(target=thread)
    worker.start()
    try:
        started.wait()
        tid = tids[0]
        assert str(tid) not in os.listdir(mount.mountpoint / "task_file")
        rows = parse_task_file((mount.mountpoint / "task_file" / str(tid)).read_text())
    finally:
        finish.set()
        worker.join()
    assert {(row.tgid, row.pid) for row in rows} == {(os.getpid(), tid)}
    assert {row.fd for row in rows} >= {0, 1, 2}


def test_process_exiting_while_open_ends_cleanly(mount):
    child = subprocess.Popen(["sleep", "60"])
    with open(mount.mountpoint / "task_file" / str(child.pid)) as f:
        child.kill()
        child.wait()
        text = f.read()
    assert text.splitlines()[0].split() == ["tgid", "pid", "fd", "flags", "pos", "path"]


def readable_fds():
    """{tgid: {fd: path}} for every process whose fds /proc lets us read."""
    result = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                result[int(name)] = process_fds(int(name))
            except (PermissionError, FileNotFoundError, ProcessLookupError):
                pass    # gone, or hidden (this machine's kernel hides pid 1's fds)
    return result


def test_all_covers_every_fd_of_every_process(mount, holder):
    before = readable_fds()
    rows = parse_task_file((mount.mountpoint / "task_file" / "all").read_text())
    after = readable_fds()
    shown = {}
    for row in rows:
        shown.setdefault(row.tgid, {})[row.fd] = row.path
    assert len(shown) > 3
    checked = 0
    for tgid in before.keys() & after.keys():
        stable = {fd: path for fd, path in before[tgid].items() if after[tgid].get(fd) == path}
        if tgid == os.getpid() or not stable:
            continue        # the reader's own fds change while it reads
        ours = {fd: path for fd, path in shown.get(tgid, {}).items() if fd in stable}
        assert ours == {fd: escape_newlines(path) for fd, path in stable.items()}, tgid
        checked += 1
    assert checked >= 3
    assert holder.pid in shown
