"""A walk the kernel holds up costs only its own readers.

The kernel's tcp iterator takes each socket's lock (lock_sock), which
/proc/net/tcp does not: a process that holds a socket's lock holds up every
/tcp walk, in the kernel, in D state. Here a process holds one the way a user
can: send() from a page that a userfaultfd never fills, so the copy faults
with the socket locked. Meanwhile the other views, the listings and /.status
must answer, release must not wait, and SIGTERM must unmount.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import kill_quietly, needs_view, running_daemon

# Holds a TCP socket's lock until killed, and prints "ready" first.
SOCKET_LOCK_HOLDER = r"""
import ctypes, fcntl, mmap, os, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
SYS_userfaultfd, UFFDIO_API, UFFDIO_REGISTER = 323, 0xC018AA3F, 0xC020AA00
uffd = libc.syscall(SYS_userfaultfd, os.O_CLOEXEC)
if uffd < 0:
    raise OSError(ctypes.get_errno(), "userfaultfd")
fcntl.ioctl(uffd, UFFDIO_API, bytearray(struct.pack("QQQ", 0xAA, 0, 0)))
size = 1 << 20
region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
address = ctypes.addressof(ctypes.c_char.from_buffer(region))
fcntl.ioctl(uffd, UFFDIO_REGISTER, bytearray(struct.pack("QQQQ", address, size, 1, 0)))
listener = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(listener.getsockname())
peer, _ = listener.accept()
print("ready", flush=True)
client.send(memoryview(region))       # faults with the socket locked, for good
"""

READERS = 40            # more than a view's pump threads (fs.READER_THREADS)
CHURN = 150             # more open/close than pyfuse3's default request tasks
ANSWER_TIMEOUT = 20
STUCK_WAIT = 30         # streaming.STUCK_SECONDS, and room for a loaded machine


class LockHolder:
    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-c", SOCKET_LOCK_HOLDER],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"
        wchan = Path(f"/proc/{self.process.pid}/wchan")
        deadline = time.monotonic() + 10
        while wchan.read_text() != "handle_userfault":
            assert time.monotonic() < deadline, "the holder's send() never faulted"
            time.sleep(0.05)

    def release(self):
        kill_quietly(self.process)


def start_readers(path, count):
    return [subprocess.Popen(["cat", str(path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for _ in range(count)]


def answered(command):
    """What `command` printed; it must end within ANSWER_TIMEOUT. A reader held
    up in a FUSE request cannot be killed: it is left to the unmount, never
    waited for."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(timeout=ANSWER_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"{' '.join(command)}: no answer in {ANSWER_TIMEOUT} s")
    assert process.returncode == 0, (command, err)
    return out.decode()


def stuck_walks(status, view):
    """The walks .status calls stuck under `view`'s line, 0 if none."""
    lines = status.splitlines()
    for number, line in enumerate(lines):
        if line.split()[:2] == [view, "serving"]:
            for detail in lines[number + 1:]:
                if not detail.startswith("  "):
                    break
                found = re.match(r"  stuck: (\d+) walks? waiting on the kernel", detail)
                if found:
                    return int(found.group(1))
    return 0


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@needs_view("tcp", "udp", "unix", "task", "task_file", "task_vma")
def test_a_held_socket_lock_costs_only_the_tcp_readers(tmp_path):
    with running_daemon(tmp_path / "mnt") as daemon:
        mnt = daemon.mountpoint
        fds = daemon.fd_count()
        holder = LockHolder()
        readers = []
        try:
            readers = start_readers(mnt / "tcp", READERS)
            # Released files whose pump the kernel holds: release must not wait.
            for _ in range(CHURN):
                os.close(os.open(mnt / "tcp", os.O_RDONLY))
            time.sleep(1)
            assert all(reader.poll() is None for reader in readers), \
                "a /tcp walk ended while a socket's lock was held: nothing was held up"
            assert answered(["cat", str(mnt / "udp")]).startswith("   sl  local_address")
            assert answered(["cat", str(mnt / "unix")]).startswith("Num ")
            me = os.getpid()
            assert answered(["cat", str(mnt / f"task/{me}")]).strip()
            assert answered(["cat", str(mnt / "task_file/self")]).strip()
            assert answered(["cat", str(mnt / "task_vma/self")]).strip()
            assert "tcp" in answered(["ls", str(mnt)]).split()
            assert str(me) in answered(["ls", str(mnt / "task")]).split()
            wait_until(lambda: stuck_walks(answered(["cat", str(mnt / ".status")]), "tcp")
                       >= READERS, STUCK_WAIT, "/.status never called /tcp stuck")
            assert stuck_walks(answered(["cat", str(mnt / ".status")]), "udp") == 0
        finally:
            holder.release()
        # The kernel lets go: every reader gets all of it, and every released
        # file is closed by its pump.
        for reader in readers:
            assert reader.wait(timeout=60) == 0
        wait_until(lambda: daemon.fd_count() == fds, 30,
                   f"the daemon holds {daemon.fd_count()} fds, {fds} before")
        assert stuck_walks(answered(["cat", str(mnt / ".status")]), "tcp") == 0


@needs_view("tcp")
def test_sigterm_unmounts_while_a_walk_is_held_up(tmp_path):
    with running_daemon(tmp_path / "mnt") as daemon:
        holder = LockHolder()
        readers = []
        try:
            readers = start_readers(daemon.mountpoint / "tcp", 5)
            time.sleep(1)
            assert all(reader.poll() is None for reader in readers)
            daemon.process.send_signal(signal.SIGTERM)
            wait_until(lambda: not os.path.ismount(daemon.mountpoint), 20,
                       "SIGTERM did not unmount while a walk was held up")
            # The readers' requests end with the connection.
            for reader in readers:
                assert reader.wait(timeout=20) != 0
        finally:
            holder.release()
        # Its last thread leaves the kernel once the lock is free.
        assert daemon.process.wait(timeout=30) == 0, daemon.log()
        assert "unmounted" in daemon.log()
