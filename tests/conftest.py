"""Fixtures: real mounts of iterfs served by a real daemon, and real processes."""

import collections
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iterfs import bpf, namespaces
from iterfs.status import RELOAD_LINE

ROOT = Path(__file__).resolve().parent.parent
OBJECTS = ROOT / "build" / "progs"
ALL_VIEWS = sorted(p.name[:-len(".bpf.c")] for p in (ROOT / "progs").glob("*.bpf.c"))
STATUS = ".status"
METRICS = "metrics"
# The built-in metric views: progs/metrics/<name>.bpf.c is metrics/<name>.prom.
ALL_METRICS = sorted(p.name[:-len(".bpf.c")] + ".prom"
                     for p in (ROOT / "progs" / "metrics").glob("*.bpf.c"))


def view_target(view):
    """The iterator target of a built-in view's program, from its object file
    (a metric's by its name, `<name>.prom`)."""
    with bpf.Object(OBJECTS / f"{view}.bpf.o") as obj:
        return next(p.iterator_target for p in obj.programs if p.iterator_target)


@functools.cache
def kernel_refusal(target):
    """Why the running kernel takes no program for `target` (it lacks it, or
    refuses even an empty program), or None: the probe the daemon makes."""
    with bpf.KernelTargets() as targets:
        return targets.refusal(target)


# The views this kernel can serve; the others are `unsupported` in .status.
VIEWS = [view for view in ALL_VIEWS if not kernel_refusal(view_target(view))]
UNSUPPORTED_VIEWS = {view: kernel_refusal(view_target(view)) for view in ALL_VIEWS
                     if view not in VIEWS}
# What the mount's root lists: the views, the status file and metrics/.
ROOT_ENTRIES = sorted([*VIEWS, STATUS, METRICS])
METRIC_VIEWS = [view for view in ALL_METRICS if not kernel_refusal(view_target(view))]
TEST_OBJECTS = ROOT / "build" / "tests"
MOUNT_PY = ROOT / "mount.py"
# Loading every view takes seconds; in an emulated VM (make test-kernels) tens.
MOUNT_TIMEOUT = float(os.environ.get("ITERFS_MOUNT_TIMEOUT", 30))
UNMOUNT_EXIT_TIMEOUT = 15   # from an unmount, or then a SIGTERM, to the daemon's exit


def needs_target(*targets):
    """Skips a test where the kernel lacks a target or refuses any program for
    it, naming the kernel's reason; a program of ours it rejects still fails."""
    reasons = [reason for target in targets if (reason := kernel_refusal(target))]
    return pytest.mark.skipif(bool(reasons), reason=f"kernel: {'; '.join(reasons)}")


def needs_view(*views):
    """needs_target() for the targets of built-in views."""
    return needs_target(*{view_target(view) for view in views})


def parse_status(text):
    """.status as {view: (state, target, source, [reason and detail lines])},
    without its last line, how the last reload went, if there was one."""
    lines = text.splitlines()
    assert lines[0].split() == ["view", "state", "target", "source"]
    if RELOAD_LINE.fullmatch(lines[-1]):
        lines.pop()
    entries = {}
    for line in lines[1:]:
        if line.startswith("  "):
            entries[name][3].append(line.strip())
        else:
            name, state, target, source = line.split(None, 3)
            assert name not in entries, f"{name} twice in {lines}"
            entries[name] = (state, target, source, [])
    return entries


class Daemon:
    """mount.py running as a child process, with its stderr kept in a file."""

    def __init__(self, mountpoint, *args, objects=OBJECTS, prefix=(), own_mounts=False):
        """`prefix`: a command that execs the daemon, e.g. unshare --net.
        `own_mounts`: the prefix gives the daemon a mount namespace of its own,
        where its mount is: the test reaches it through /proc/<pid>/root, and
        commands run there with in_mounts()."""
        self.mountpoint = Path(mountpoint)
        self.log_path = self.mountpoint.parent / f"{self.mountpoint.name}.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [*prefix, sys.executable, str(MOUNT_PY), str(self.mountpoint),
             "--objects", str(objects), *args],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.process.pid
        self._own_mounts = own_mounts

    def in_mounts(self, *command):
        """`command`, to run in the daemon's mount namespace (as is, without one)."""
        if not self._own_mounts:
            return list(command)
        return ["nsenter", f"--target={self.pid}", "--mount", *command]

    @property
    def _reached_at(self):
        if not self._own_mounts:
            return self.mountpoint
        return Path(f"/proc/{self.pid}/root") / self.mountpoint.relative_to("/")

    def wait_mounted(self):
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not self._alive():
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited {self.process.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not mounted after {MOUNT_TIMEOUT}s: {self.log()}")
            time.sleep(0.01)
        device = os.stat(self._reached_at).st_dev
        self.device = f"{os.major(device)}:{os.minor(device)}"
        return self

    def _alive(self):
        """A mount that answers: not merely a dead one the daemon has yet to replace."""
        if not os.path.ismount(self._reached_at):
            return False
        try:
            os.statvfs(self._reached_at)
            return True
        except OSError:
            return False

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        """Unmount however the test left things, and return the exit status.

        A lazy unmount detaches the mount here, but the kernel keeps serving it
        while a mount namespace made as a copy of this one meanwhile (a
        process that unshared its mounts: a run beside this one, a container)
        still holds it. Then the daemon is told to go with SIGTERM, as
        systemctl stop tells it. Still running with no copy held, it is stuck:
        killed, and its status says so."""
        subprocess.run(self.in_mounts("fusermount3", "-u", "-z", str(self.mountpoint)),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            status = self.process.wait(timeout=UNMOUNT_EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            status = None
        if status is None and self.device and mount_copies(self.device):
            self.process.terminate()
            try:
                status = self.process.wait(timeout=UNMOUNT_EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        if status is None:
            self.process.kill()
            status = self.process.wait()
        self._log.close()
        return status

    device = None       # the mount's st_dev, "major:minor", once mounted

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def program_ids(self):
        """Ids of the BPF programs the daemon holds, from its fds' fdinfo."""
        ids = set()
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                with open(f"/proc/{self.pid}/fdinfo/{fd}") as f:
                    for line in f:
                        if line.startswith("prog_id:"):
                            ids.add(int(line.split()[1]))
            except FileNotFoundError:
                pass
        return ids


@contextlib.contextmanager
def network_namespace_of(pid):
    """The calling thread in process `pid`'s network namespace, inside the
    block: what it reads of iterfs is that namespace's, as its /proc/net is."""
    with contextlib.ExitStack() as files:
        ours = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        files.callback(os.close, ours)
        theirs = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        files.callback(os.close, theirs)
        namespaces._setns(theirs, namespaces.CLONE_NEWNET)
        try:
            yield
        finally:
            namespaces._setns(ours, namespaces.CLONE_NEWNET)


class OpenSockets:
    """Sockets a test opens, all closed when the with block ends, even on failure."""

    def __init__(self):
        self.all = []

    def keep(self, *socks):
        self.all.extend(socks)
        return socks[0] if len(socks) == 1 else socks

    def close(self):
        for sock in self.all:
            sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def iterator_links(program_ids):
    """Iterator links in the kernel whose program is one of these."""
    out = subprocess.run(["bpftool", "-j", "link", "list"], check=True,
                         capture_output=True, text=True).stdout
    return [link for link in json.loads(out or "[]")
            if link.get("type") == "iter" and link.get("prog_id") in program_ids]


@contextlib.contextmanager
def running_daemon(path, *args, objects=OBJECTS, prefix=(), own_mounts=False):
    """A live mount at `path`. On the way out it unmounts, even after a failure,
    then asserts that the daemon exited 0."""
    path.mkdir(exist_ok=True)
    daemon = Daemon(path, *args, objects=objects, prefix=prefix, own_mounts=own_mounts)
    try:
        yield daemon.wait_mounted()
    finally:
        status = daemon.stop()
        assert status == 0, f"daemon exited {status}: {daemon.log()}"
        assert "Traceback" not in daemon.log(), daemon.log()


def _mount_scope(fixture_name, config):
    # Under make test-kernels a mount costs seconds in an emulated VM: there
    # one mount serves the whole run.
    return "session" if os.environ.get("ITERFS_SHARED_MOUNT") else "module"


@pytest.fixture(scope=_mount_scope)
def mount(tmp_path_factory):
    """One mount shared by a module's tests (by all, under make test-kernels)."""
    with running_daemon(tmp_path_factory.mktemp("iterfs") / "mnt") as daemon:
        yield daemon


@pytest.fixture
def fresh_mount(tmp_path):
    """A mount of the test's own, for tests that stop or strain the daemon."""
    with running_daemon(tmp_path / "mnt") as daemon:
        yield daemon


# Its files are made in the directory it is given: the test's, removed with it.
FILE_HOLDER = r"""
import os, socket, sys, select
files = []
d = sys.argv[1]
for name in ("plain", "with space", "new\nline", "deleted"):
    files.append(open(os.path.join(d, name), "w"))
os.unlink(os.path.join(d, "deleted"))
files[0].write("x" * 12345)
files[0].flush()
appending = os.open(os.path.join(d, "plain"), os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
os.set_inheritable(appending, True)     # not close-on-exec
reading = os.open(os.path.join(d, "plain"), os.O_RDONLY)
os.lseek(reading, 777, os.SEEK_SET)
r, w = os.pipe()
a, b = socket.socketpair()
ep = select.epoll()
mem = os.memfd_create("holder")
devnull = os.open("/dev/null", os.O_RDONLY)
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path):
    """A process holding files of every kind readlink names differently."""
    (tmp_path / "held").mkdir()
    process = subprocess.Popen([sys.executable, "-c", FILE_HOLDER, str(tmp_path / "held")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        yield process
    finally:
        process.kill()
        process.wait()


def process_fds(pid):
    """{fd: path} as readlink /proc/<pid>/fd/* shows them."""
    result = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            result[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            pass
    return result


def escape_newlines(path):
    """How iterfs writes a path, as /proc/<pid>/maps does: '\\n' as \\012."""
    return path.replace("\n", "\\012")


FileRow = collections.namedtuple("FileRow", "tgid pid fd flags pos path")


def parse_task_file(text):
    """task_file's rows; flags as a number (the column is octal, as fdinfo's)."""
    lines = text.splitlines()
    assert lines[0].split() == ["tgid", "pid", "fd", "flags", "pos", "path"]
    rows = []
    for line in lines[1:]:
        tgid, pid, fd, flags, pos, path = line.split(None, 5)
        assert flags.startswith("0"), line
        rows.append(FileRow(int(tgid), int(pid), int(fd), int(flags, 8), int(pos), path))
    return rows


def fdinfo(pid, fd):
    """(flags, pos) as /proc/<pid>/fdinfo/<fd> shows them."""
    fields = dict(line.split(":\t", 1)
                  for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()
                  if ":\t" in line)
    return int(fields["flags"], 8), int(fields["pos"])


def mount_copies(device):
    """Pids, one a mount namespace, of the namespaces that hold a mount of
    `device` ("major:minor", mountinfo's third field)."""
    namespaces = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            namespace = os.readlink(f"/proc/{pid}/ns/mnt")
            if namespace in namespaces:
                continue
            with open(f"/proc/{pid}/mountinfo") as mountinfo:
                holds = any(line.split()[2] == device for line in mountinfo)
        except OSError:
            continue            # gone, or a kernel thread
        namespaces[namespace] = int(pid) if holds else None
    return [pid for pid in namespaces.values() if pid is not None]


def stop_process(process, timeout=10):
    """SIGTERM, then SIGKILL after `timeout` seconds; waits until it is gone."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def kill_quietly(process):
    try:
        process.send_signal(signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def read_in_chunks(path, size):
    """The whole file through os.read() calls of `size` bytes, as netstat reads."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, size):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)


def read_quiet(proc_path, our_path, normalise=lambda lines: lines, attempts=10,
               read=lambda path: Path(path).read_text()):
    """(proc lines, our lines), read at a moment when the /proc file did not
    change between a read before and a read after ours. `normalise` maps a
    list of lines to what should compare equal (timer columns blanked...);
    `read` reads our file (whole, by default)."""
    for _ in range(attempts):
        before = normalise(Path(proc_path).read_text().splitlines())
        ours = normalise(read(our_path).splitlines())
        after = normalise(Path(proc_path).read_text().splitlines())
        if before == after:
            return before, ours
        time.sleep(0.05)
    pytest.fail(f"{proc_path} kept changing")


PAIRS_PER_PROCESS = 4000        # 8,000 fds each: under the 20,000 fd limit

# Each socket lingers 0 s: the holder's exit resets its connections rather than
# leaving one TIME_WAIT socket per connection for a minute, in every later count.
SOCKET_HOLDER = r"""
import socket, struct, sys
pairs = int(sys.argv[1])
listener = socket.socket(socket.AF_INET6)
listener.bind(("::1", 0))
listener.listen(4096)
port = listener.getsockname()[1]
held = []
for _ in range(pairs):
    held.append(socket.create_connection(("::1", port)))
    held.append(listener.accept()[0])
for sock in held:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
print("ready", flush=True)
sys.stdin.read()
"""


# `n` child processes, each blocked reading a pipe. When the holder's stdin closes
# it closes the pipe and reaps them all, so no zombie outlives the load; if the
# holder is killed instead, the children read EOF and exit all the same.
PROCESSES_HOLDER = r"""
import os, sys
r, w = os.pipe()
children = []
for _ in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    children.append(pid)
os.close(r)
print("ready", flush=True)
sys.stdin.read()
os.close(w)
for pid in children:
    os.waitpid(pid, 0)
"""


class Holders:
    """Processes running `script`, one per argument, each printing "ready" once set
    up and then holding on (to sockets, files, threads) until close()."""

    def __init__(self, script, arguments):
        self.processes = []
        try:
            for argument in arguments:
                self.processes.append(subprocess.Popen(
                    [sys.executable, "-c", script, str(argument)], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, text=True))
            for process in self.processes:
                if process.stdout.readline().strip() != "ready":
                    raise RuntimeError("a holder process failed")
        except BaseException:
            self.close()
            raise

    def close(self):
        for process in self.processes:
            process.kill()
            process.wait()


def hold_sockets(count):
    """Processes holding `count` connected IPv6 TCP sockets between them: more
    than one process, each under its fd limit."""
    pairs = count // 2
    return Holders(SOCKET_HOLDER, [min(PAIRS_PER_PROCESS, pairs - start)
                                   for start in range(0, pairs, PAIRS_PER_PROCESS)])
