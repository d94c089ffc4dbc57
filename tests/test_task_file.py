"""task_file/: per-process open files, compared with /proc/<pid>/fd."""

import errno
import json
import os
import subprocess
import sys
import threading

import pytest

from conftest import escape_newlines, parse_task_file, process_fds


def test_process_file_lists_exactly_its_fds(mount, holder):
    rows = parse_task_file((mount.mountpoint / "task_file" / str(holder.pid)).read_text())
    expected = {fd: escape_newlines(path) for fd, path in process_fds(holder.pid).items()}
    assert {fd: path for _, _, fd, path in rows} == expected
    assert len(rows) == len(expected)
    assert {(tgid, pid) for tgid, pid, _, _ in rows} == {(holder.pid, holder.pid)}
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


def test_self_is_the_reader(mount):
    out = subprocess.run([sys.executable, "-c", READ_SELF, str(mount.mountpoint)],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    rows = parse_task_file(result["text"])
    assert {(tgid, pid) for tgid, pid, _, _ in rows} == {(result["pid"], result["pid"])}
    shown = {str(fd): path for _, _, fd, path in rows}
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
    assert {(tgid, pid) for tgid, pid, _, _ in rows} == {(os.getpid(), os.getpid())}


def test_listing_is_every_process_self_and_all(mount):
    before = {name for name in os.listdir("/proc") if name.isdigit()}
    listed = set(os.listdir(mount.mountpoint / "task_file"))
    after = {name for name in os.listdir("/proc") if name.isdigit()}
    assert {"self", "all"} <= listed
    listed -= {"self", "all"}
    assert before & after <= listed <= before | after
    assert str(os.getpid()) in listed


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
    assert {(tgid, pid) for tgid, pid, _, _ in rows} == {(os.getpid(), tid)}
    assert {fd for _, _, fd, _ in rows} >= {0, 1, 2}


def test_process_exiting_while_open_ends_cleanly(mount):
    child = subprocess.Popen(["sleep", "60"])
    with open(mount.mountpoint / "task_file" / str(child.pid)) as f:
        child.kill()
        child.wait()
        text = f.read()
    assert text.splitlines()[0].split() == ["tgid", "pid", "fd", "path"]
