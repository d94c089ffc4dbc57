"""Access control: what other users may read, as /proc decides it, and nothing else.

Readers here are real unprivileged users the test creates (useradd), running the
system's python3 under setpriv, on mounts in a directory they can reach.
"""

import contextlib
import errno
import json
import os
import random
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import needs_target, running_daemon
from iterfs.fs import FD_HEADROOM, ROOT_RESERVE
from iterfs.streaming import BUFFERED_BYTES, READ_AHEAD

ZERO_POINTER = "0" * 16

# Runs as the user: opens and reads each path, says what happened.
READER = r"""
import json, os, sys
results = {}
for path in sys.argv[1:]:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        results[path] = ["ok", b"".join(chunks).decode(errors="replace")]
    except OSError as error:
        results[path] = ["error", os.strerror(error.errno)]
print(json.dumps(results))
"""

# Runs as the user: its own maps through iterfs against /proc/self/maps, read
# between two reads of /proc that agree.
OWN_MAPS = r"""
import json, os, sys
mnt = sys.argv[1]
def read(path):
    with open(path, "rb") as f:
        return f.read()
for _ in range(20):
    before = read("/proc/self/maps")
    ours = read(f"{mnt}/task_vma/{os.getpid()}")
    after = read("/proc/self/maps")
    if before == after:
        break
files = read(f"{mnt}/task_file/self").decode()
print(json.dumps({"same": before == ours == after, "lines": ours.count(b"\n"),
                  "pid": os.getpid(), "task_file": files}))
"""

# Runs as the user: holds as many iterfs files open as it may, then waits.
# With "read" after the count it reads a byte of each file it opens, which sets
# each file's pump reading ahead.
HOARDER = r"""
import errno, json, os, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held, refused = [], {}
for _ in range(int(sys.argv[2])):
    try:
        held.append(os.open(sys.argv[1], os.O_RDONLY))
    except OSError as error:
        refused[errno.errorcode[error.errno]] = refused.get(errno.errorcode[error.errno], 0) + 1
        continue
    if sys.argv[3:] == ["read"]:
        os.read(held[-1], 1)
print(json.dumps({"held": len(held), "refused": refused}), flush=True)
sys.stdin.read()
"""

SLEEPER = "import sys; print('ready', flush=True); sys.stdin.read()"


class User:
    """A system user the test creates, deleted at the end."""

    def __init__(self, name):
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        name], check=True)
        self.name = name
        self.uid = int(subprocess.run(["id", "-u", name], check=True, capture_output=True,
                                      text=True).stdout)
        self.gid = int(subprocess.run(["id", "-g", name], check=True, capture_output=True,
                                      text=True).stdout)

    def command(self, *args):
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                *map(str, args)]

    def python(self, script, *args, **kwargs):
        """Runs `script` as this user; its JSON answer."""
        result = subprocess.run(self.command("/usr/bin/python3", "-c", script, *args),
                                capture_output=True, text=True, timeout=120, **kwargs)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def read(self, *paths):
        return self.python(READER, *paths)

    def start(self, script, *args):
        process = subprocess.Popen(self.command("/usr/bin/python3", "-c", script, *args),
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return process

    def delete(self):
        subprocess.run(["userdel", self.name], stderr=subprocess.DEVNULL)


class CaplessRoot(User):
    """uid 0 with no capability at all: an empty bounding set, so nothing after
    exec (setpriv), as a container's root may be."""

    def __init__(self):
        self.name, self.uid, self.gid = "root without capabilities", 0, 0

    def command(self, *args):
        return ["setpriv", "--reuid=0", "--regid=0", "--clear-groups", "--bounding-set=-all",
                "--inh-caps=-all", *map(str, args)]

    def delete(self):
        pass


@pytest.fixture(scope="module")
def users():
    created = []
    try:
        for role in "ab":
            created.append(User(f"iterfs{os.getpid()}{role}"))
        yield created
    finally:
        for user in created:
            user.delete()


@contextlib.contextmanager
def reachable_mount(*args, prefix=(), own_mounts=False):
    """A mount in a directory every user can reach (pytest's are root's alone)."""
    top = Path(tempfile.mkdtemp(prefix="iterfs-access-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        with running_daemon(top / "mnt", *args, prefix=prefix, own_mounts=own_mounts) as daemon:
            yield daemon
    finally:
        for leftover in top.iterdir():
            if leftover.is_dir():
                leftover.rmdir()
            else:
                leftover.unlink()
        top.rmdir()


@pytest.fixture(scope="module")
def shared():
    with reachable_mount("--allow-other") as daemon:
        yield daemon


@contextlib.contextmanager
def started(user, script, *args):
    process = user.start(script, *args)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_without_allow_other_only_root_reads(users):
    with reachable_mount() as daemon:
        m = daemon.mountpoint
        answers = users[0].read(m / "tcp6", m / "task_file" / "self")
        assert [answer for answer, _ in answers.values()] == ["error", "error"]
        assert {text for _, text in answers.values()} == {os.strerror(errno.EACCES)}
        assert (m / "tcp6").read_text().startswith("  sl")


def pointers(text, column):
    return [line.split()[column] for line in text.splitlines()[1:]]


@pytest.mark.parametrize("view, column", [("tcp6", 11), ("tcp", 11), ("udp6", 11),
                                          ("udp", 11), ("netlink", 0), ("unix", 0)])
def test_kernel_pointers_are_zeros_for_users(users, shared, view, column):
    """/proc prints these with %pK: a user gets zeros, root what /proc shows root."""
    keep = []
    family = socket.AF_INET6 if view.endswith("6") else socket.AF_INET
    kind = socket.SOCK_STREAM if view.startswith("tcp") else socket.SOCK_DGRAM
    with contextlib.ExitStack() as stack:
        if view.startswith(("tcp", "udp")):
            sock = stack.enter_context(socket.socket(family, kind))
            sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
            if kind == socket.SOCK_STREAM:
                sock.listen()
            keep.append(sock)
        answer, text = users[0].read(shared.mountpoint / view)[str(shared.mountpoint / view)]
        assert answer == "ok", text
        theirs = [p.rstrip(":") for p in pointers(text, column)]
        ours = [p.rstrip(":") for p in pointers((shared.mountpoint / view).read_text(), column)]
    assert theirs and set(theirs) == {ZERO_POINTER}
    assert any(p != ZERO_POINTER for p in ours)


def test_ksym_addresses_are_zeros_for_users(users, shared):
    path = shared.mountpoint / "ksym"
    answer, text = users[0].read(path)[str(path)]
    assert answer == "ok", text
    lines = text.splitlines()
    assert len(lines) > 10000
    assert {line[:16] for line in lines} == {ZERO_POINTER}
    assert not path.read_text().startswith(ZERO_POINTER)


# Runs as the user: reads /ksym 1 MiB in, then from the start again, which walks
# anew: the daemon creates that second iterator in a worker thread.
READ_AGAIN = r"""
import json, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
ahead = os.pread(fd, 65536, 1 << 20)
again = os.pread(fd, 65536, 0)
os.close(fd)
print(json.dumps({"ahead": ahead.decode(), "again": again.decode()}))
"""


def test_a_walk_begun_again_keeps_the_readers_credentials(users, shared):
    """A read behind the file's position starts the walk anew, in a worker
    thread: that iterator too is the reader's, and the worker threads stay
    root's (a thread started under a reader's ids would keep them)."""
    path = shared.mountpoint / "ksym"
    for _ in range(3):
        answer = users[0].python(READ_AGAIN, path)
        for text in answer.values():
            lines = text.splitlines()[1:-1]
            assert lines and {line[:16] for line in lines} == {ZERO_POINTER}, text[:200]
        assert not path.read_text().startswith(ZERO_POINTER)
    log = shared.log()
    assert " ERROR: " not in log and " WARNING: " not in log, log


def test_a_user_reads_its_own_process(users, shared):
    own = users[0].python(OWN_MAPS, shared.mountpoint)
    assert own["same"] and own["lines"] > 5
    rows = [row.split() for row in own["task_file"].splitlines()[1:]]
    assert {row[0] for row in rows} == {str(own["pid"])}       # its own files alone
    assert {"0", "1", "2"} <= {row[2] for row in rows}


def test_other_processes_are_refused(users, shared):
    m = shared.mountpoint
    with started(users[1], SLEEPER) as other:
        assert other.stdout.readline().strip() == "ready"
        private = [m / "task_vma" / "1", m / "task_file" / "1", m / "task_vma" / str(os.getpid()),
                   m / "task_file" / str(os.getpid()), m / "task_vma" / str(other.pid),
                   m / "task_file" / str(other.pid), m / "task_file" / "all",
                   m / "task_vma" / "all", m / "sockets" / "1", m / "sockets" / str(other.pid),
                   m / "sockets" / "all"]
        public = [m / "task" / str(other.pid), m / "task" / "all", m / "tcp6"]
        answers = users[0].read(*private, *public)
        for path in private:
            assert answers[str(path)] == ["error", os.strerror(errno.EACCES)], path
        for path in public:
            assert answers[str(path)][0] == "ok", (path, answers[str(path)])
        # its owner may
        for view in ("task_file", "sockets"):
            own = users[1].read(m / view / str(other.pid))
            assert own[str(m / view / str(other.pid))][0] == "ok"


def test_modes_and_owners_mirror_proc(users, shared):
    m = shared.mountpoint
    with started(users[1], SLEEPER) as other:
        assert other.stdout.readline().strip() == "ready"
        for view, mode in (("task_file", 0o400), ("task_vma", 0o400), ("sockets", 0o400),
                           ("task", 0o444)):
            entry = os.stat(m / view / str(other.pid))
            assert (entry.st_uid, entry.st_gid) == (users[1].uid, users[1].gid)
            assert stat.S_IMODE(entry.st_mode) == mode
            assert os.stat(f"/proc/{other.pid}").st_uid == users[1].uid


def test_open_files_per_uid_are_capped(users, tmp_path):
    """5,000 opens from one user: 256 held, the rest EMFILE, while another user
    and root read as usual; closing them lifts the cap."""
    with reachable_mount("--allow-other") as daemon:
        m = daemon.mountpoint
        with started(users[0], HOARDER, m / "netlink", 5000) as hoarder:
            held = json.loads(hoarder.stdout.readline())
            assert held == {"held": 256, "refused": {"EMFILE": 5000 - 256}}
            answers = users[1].read(m / "tcp6", m / "task_file" / "self")
            assert [answer for answer, _ in answers.values()] == ["ok", "ok"]
            assert (m / "netlink").read_text().startswith("sk ")
            assert users[0].read(m / "netlink")[str(m / "netlink")] == \
                ["error", os.strerror(errno.EMFILE)]
        # the hoarder is gone: its files are released
        deadline = time.monotonic() + 10
        while users[0].read(m / "netlink")[str(m / "netlink")][0] != "ok":
            assert time.monotonic() < deadline, "the cap was not lifted"
            time.sleep(0.1)


def test_all_users_together_leave_root_its_reserve(users):
    """Two fds an open file: the daemon's fd limit bounds the files all users
    hold together, and the last ROOT_RESERVE of them are root's. Users who take
    the rest get EMFILE; root is still served."""
    users_share = 60
    fd_limit = FD_HEADROOM + 2 * (ROOT_RESERVE + users_share)
    with reachable_mount("--allow-other", prefix=["prlimit", f"--nofile={fd_limit}"]) as daemon:
        m = daemon.mountpoint
        with started(users[0], HOARDER, m / "netlink", 40) as first, \
                contextlib.ExitStack() as held_by_root:
            assert json.loads(first.stdout.readline()) == {"held": 40, "refused": {}}
            with started(users[1], HOARDER, m / "netlink", 40) as second:
                assert json.loads(second.stdout.readline()) == \
                    {"held": users_share - 40, "refused": {"EMFILE": 40 - (users_share - 40)}}
                files = [held_by_root.enter_context(open(m / "netlink", "rb"))
                         for _ in range(ROOT_RESERVE)]
                assert all(f.read().startswith(b"sk ") for f in files)
                with pytest.raises(OSError) as refused:
                    open(m / "netlink", "rb")
                assert refused.value.errno == errno.EMFILE
        assert "Traceback" not in daemon.log()


def resident_bytes(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def kernel_symbols_size(text):
    """The length of ksym's text but for the BPF programs' lines (`[bpf]`),
    which come and go with every program loaded on the machine meanwhile. An
    address is 16 digits, zeros or not: the same length for every reader."""
    return sum(len(line) + 1 for line in text.splitlines() if not line.endswith("\t[bpf]"))


def test_buffers_of_all_users_together_are_bounded(users):
    """Two users hold 255 files each (one short of their cap), every one read a
    byte into a long view: unbounded, their read-ahead alone would take 510 x
    512 KiB. All buffers together stay within BUFFERED_BYTES, root reads as
    ever, and so do they, a file at a time."""
    files = 255
    assert files * len(users) * READ_AHEAD > 3 * BUFFERED_BYTES
    with reachable_mount("--allow-other") as daemon:
        m = daemon.mountpoint
        size = kernel_symbols_size((m / "ksym").read_text())
        assert size > 2 * READ_AHEAD
        before = resident_bytes(daemon.pid)
        with started(users[0], HOARDER, m / "ksym", files, "read") as first, \
                started(users[1], HOARDER, m / "ksym", files, "read") as second:
            for hoarder in (first, second):
                assert json.loads(hoarder.stdout.readline()) == {"held": files, "refused": {}}
            time.sleep(2)           # the pumps read ahead what they may
            # Beside the buffers: 510 files' objects, a lane's thread stacks,
            # and the allocator's slack. Unbounded, the buffers alone: 255 MiB.
            bound = BUFFERED_BYTES + (64 << 20)
            grown = resident_bytes(daemon.pid) - before
            assert grown < bound, f"RSS grew {grown >> 20} MiB"
            assert kernel_symbols_size((m / "ksym").read_text()) == size
            state, text = users[0].read(m / "ksym")[str(m / "ksym")]
            assert (state, kernel_symbols_size(text)) == ("ok", size)
            grown = resident_bytes(daemon.pid) - before
            assert grown < bound, f"RSS grew {grown >> 20} MiB"
        assert "Traceback" not in daemon.log()


def test_directory_handles_per_uid_are_capped(users, shared):
    """A directory handle holds a listing: 256 a uid, as for files."""
    m = shared.mountpoint
    with started(users[0], HOARDER, m / "task", 300) as hoarder:
        assert json.loads(hoarder.stdout.readline()) == {"held": 256, "refused": {"EMFILE": 44}}
        assert str(os.getpid()) in os.listdir(m / "task")
        answer = users[1].python("import os, sys; print(len(os.listdir(sys.argv[1])))", m / "task")
        assert answer > 3


# -- fuzz --------------------------------------------------------------------

def generated_names(count, pid_max):
    """Names a careless or hostile caller might try, never containing '/' or NUL."""
    rng = random.Random(20261125)
    names = {b"", b".", b"..", b"...", b"self ", b" self", b"Self", b"ALL", b"all\n",
             b"0", b"00", b"01", b"-1", b"+1", b"1_0", b" 1", b"1 ", b"1\t", b"0x10",
             b"1e3", b"1.0", str(pid_max).encode(), str(pid_max + 1).encode(),
             str(2 ** 31).encode(), str(2 ** 32).encode(), str(2 ** 64).encode(),
             str(2 ** 64 + 1).encode(), b"9" * 40, b"x" * 255, b"x" * 256, b"1" * 300,
             "١٢٣".encode(), "１２".encode(), "²".encode(), "৪".encode(), "٣".encode()}
    while len(names) < count:
        kind = rng.randrange(6)
        if kind == 0:       # numbers with decorations
            number = str(rng.choice([1, os.getpid(), pid_max, 2 ** 64, rng.randrange(10 ** 6)]))
            names.add((rng.choice(["", "+", "-", "0", " ", "_"]) + number
                       + rng.choice(["", " ", "_", "0", "\x7f"])).encode())
        elif kind == 1:     # binary bytes without '/' and NUL
            names.add(bytes(rng.choice([b for b in range(1, 256) if b != ord("/")])
                            for _ in range(rng.randrange(1, 40))))
        elif kind == 2:     # long
            names.add(b"7" * rng.randrange(200, 400))
        elif kind == 3:     # non-ASCII digits
            digits = [chr(zero + d) for zero in (0x660, 0x6F0, 0x966, 0xFF10) for d in range(10)]
            names.add("".join(rng.choice(digits) for _ in range(rng.randrange(1, 8))).encode())
        elif kind == 4:     # dots
            names.add(b"." * rng.randrange(1, 6) + rng.choice([b"", b"1", b"self"]))
        else:               # view-like
            names.add(rng.choice([b"tcp", b"task", b"task_file", b"ksym"])
                      + bytes([rng.randrange(33, 127)]) * rng.randrange(1, 4))
    return sorted(names)


ACCEPTABLE = {errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EACCES, errno.EROFS,
              errno.EISDIR, errno.EPERM, errno.EINVAL, errno.EXDEV, errno.EEXIST,
              errno.ENOTEMPTY, errno.ENODATA, errno.EOPNOTSUPP, errno.EBADF, errno.EBUSY}


def answer_of(operation):
    try:
        operation()
        return None
    except OSError as error:
        return error.errno


def write_operations(path, scratch):
    """Every write-type operation, as callables on `path` (new names go inside
    it if it is a directory, beside it if not: always within the mount)."""
    target = bytes(path)
    new = target + (b"/new" if path.is_dir() else b"-new")
    return {
        "open O_WRONLY": lambda: os.close(os.open(target, os.O_WRONLY)),
        "open O_RDWR": lambda: os.close(os.open(target, os.O_RDWR)),
        "open O_TRUNC": lambda: os.close(os.open(target, os.O_RDONLY | os.O_TRUNC)),
        "open O_CREAT": lambda: os.close(os.open(new, os.O_RDONLY | os.O_CREAT)),
        "open O_APPEND": lambda: os.close(os.open(target, os.O_WRONLY | os.O_APPEND)),
        "truncate": lambda: os.truncate(target, 0),
        "chmod": lambda: os.chmod(target, 0o777),
        "chown": lambda: os.chown(target, 1, 1),
        "utime": lambda: os.utime(target, (0, 0)),
        "mknod": lambda: os.mknod(new, 0o600 | stat.S_IFIFO),
        "mkdir": lambda: os.mkdir(new),
        "unlink": lambda: os.unlink(target),
        "rmdir": lambda: os.rmdir(target),
        "rename": lambda: os.rename(target, new),
        "rename over": lambda: os.rename(scratch, target),
        "link": lambda: os.link(target, new),
        "symlink": lambda: os.symlink(b"/etc/passwd", new),
        "setxattr": lambda: os.setxattr(target, b"user.x", b"1"),
        "removexattr": lambda: os.removexattr(target, b"user.x"),
    }


def test_fuzzed_names_and_writes_get_errnos(shared, tmp_path):
    m = shared.mountpoint
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    names = generated_names(520, pid_max)
    assert len(names) >= 500
    directories = [m, m / "task", m / "task_file", m / "task_vma", m / "tcp6"]
    live = {str(pid).encode() for pid in os.listdir("/proc") if pid.isdigit()}
    for directory in directories:
        for name in names:
            path = bytes(directory) + b"/" + name
            code = answer_of(lambda: os.stat(path))
            if code is None:    # only a real name may resolve
                assert name in (b"", b".", b"..") or name in live or name in (b"self", b"all") \
                    or (directory == m and name.decode(errors="replace") in os.listdir(m)), name
            else:
                assert code in ACCEPTABLE, (path, errno.errorcode.get(code, code))
    listing = {directory: sorted(os.listdir(directory)) for directory in directories[:4]}
    scratch = tmp_path / "scratch"
    scratch.write_text("x")
    nodes = [m, m / "tcp6", m / "task_file", m / "task_file" / "self",
             m / "task_file" / str(os.getpid()), m / "task_file" / "all", m / "ksym"]
    for node in nodes:
        for operation, call in write_operations(node, bytes(scratch)).items():
            code = answer_of(call)
            assert code in ACCEPTABLE, (node, operation, code)
            assert code in (errno.EROFS, errno.EACCES, errno.EPERM, errno.EEXIST, errno.EISDIR,
                            errno.ENOTDIR, errno.EXDEV, errno.ENOTEMPTY, errno.ENOENT,
                            errno.EBUSY), \
                (node, operation, errno.errorcode[code])
        assert answer_of(lambda: os.getxattr(node, "user.x")) == errno.ENODATA
        assert os.listxattr(node) == []
    for directory, before in listing.items():      # nothing was changed
        after = set(os.listdir(directory))
        assert set(before) - after <= live ^ after and after - set(before) <= live ^ set(before)
    assert (m / "netlink").read_text().startswith("sk ")
    assert "Traceback" not in shared.log() and " ERROR: " not in shared.log(), shared.log()


def test_listing_shows_each_owner(users, shared):
    """A listing's entries carry no owner the kernel keeps: a stat of each, as
    `ls -l` does, finds the process's owner, as /proc has it."""
    with started(users[1], SLEEPER) as other:
        assert other.stdout.readline().strip() == "ready"
        listed = os.listdir(shared.mountpoint / "task_file")
        assert str(other.pid) in listed
        for name in listed:
            if name in ("self", "all"):
                continue
            try:
                ours = os.stat(shared.mountpoint / "task_file" / name)
                theirs = os.stat(f"/proc/{name}")
            except FileNotFoundError:
                continue        # exited meanwhile
            assert (ours.st_uid, ours.st_gid) == (theirs.st_uid, theirs.st_gid), name
        assert os.stat(shared.mountpoint / "task_file" / str(other.pid)).st_uid == users[1].uid


@needs_target("bpf_map_elem")
def test_map_views_are_root_only(users):
    """A map's elements through a view of one's own: root's alone, as bpftool's."""
    top = Path(tempfile.mkdtemp(prefix="iterfs-access-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        programs = top / "progs"
        programs.mkdir(mode=0o755)
        example = Path(__file__).resolve().parent.parent / "examples" / "map_hexdump.bpf.c"
        (programs / "map_hexdump.bpf.c").write_bytes(example.read_bytes())
        with running_daemon(top / "mnt", "--allow-other", "--progs", str(programs),
                            "--cache", str(top / "cache")) as daemon:
            view = daemon.mountpoint / "map_hexdump"
            maps = os.listdir(view)         # iterfs's own hash maps are there at least
            assert maps
            entry = view / maps[0]
            assert stat.S_IMODE(os.stat(entry).st_mode) == 0o400
            assert users[0].read(entry)[str(entry)] == ["error", os.strerror(errno.EACCES)]
            entry.read_bytes()
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(top)], check=True)


# Runs as root and then stops being dumpable, as a setuid program does.
UNDUMPABLE = ("import ctypes, sys; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0); "
              "print('ready', flush=True); sys.stdin.read()")


def test_root_without_capabilities_is_not_root(shared):
    """uid 0 alone grants nothing: what the kernel gives on capabilities, iterfs
    gives on the reader's, as /proc and bpftool show that same reader."""
    capless, m = CaplessRoot(), shared.mountpoint
    with started(capless, SLEEPER) as dumpable, started(capless, UNDUMPABLE) as undumpable:
        assert dumpable.stdout.readline().strip() == "ready"
        assert undumpable.stdout.readline().strip() == "ready"
        keep = socket.socket()
        keep.bind(("127.0.0.1", 0))
        keep.listen()
        with keep:
            private = [m / "task_file" / str(undumpable.pid), m / "task_vma" / str(undumpable.pid),
                       m / "task_file" / "all", m / "task_vma" / "all",
                       m / "bpf_prog", m / "bpf_map", m / "bpf_link"]
            own = [m / "task_file" / str(dumpable.pid), m / "task_vma" / str(dumpable.pid)]
            proc = [f"/proc/{undumpable.pid}/maps", f"/proc/{dumpable.pid}/maps",
                    "/proc/kallsyms"]
            answers = capless.read(*private, *own, m / "ksym", m / "tcp", *proc)
    # The kernel's answers to the same reader:
    assert answers[proc[0]] == ["error", os.strerror(errno.EACCES)]
    assert answers[proc[1]][0] == "ok"
    assert {line[:16] for line in answers[proc[2]][1].splitlines()} == {ZERO_POINTER}
    bpftool = subprocess.run(capless.command("bpftool", "prog", "list"), capture_output=True)
    assert bpftool.returncode != 0
    # and iterfs's:
    for path in private:
        assert answers[str(path)] == ["error", os.strerror(errno.EACCES)], path
    for path in own:
        assert answers[str(path)][0] == "ok", (path, answers[str(path)])
    answer, text = answers[str(m / "ksym")]
    assert answer == "ok" and {line[:16] for line in text.splitlines()} == {ZERO_POINTER}
    answer, text = answers[str(m / "tcp")]
    assert answer == "ok" and set(pointers(text, 11)) == {ZERO_POINTER}, text
    # Root with its capabilities, for contrast:
    assert not (m / "ksym").read_text().startswith(ZERO_POINTER)
    assert (m / "task_file" / "all").read_text().split()[:2] == ["tgid", "pid"]


def test_kernel_object_views_are_roots_alone(users, shared):
    """/proc/slabinfo is 0400, and only CAP_SYS_ADMIN walks the BPF objects."""
    m = shared.mountpoint
    views = [view for view in ("kmem_cache", "bpf_prog", "bpf_map", "bpf_link")
             if view in os.listdir(m)]
    assert {"bpf_prog", "bpf_map", "bpf_link"} <= set(views)
    answers = users[0].read(*(m / view for view in views))
    for view in views:
        entry = os.stat(m / view)
        assert (stat.S_IMODE(entry.st_mode), entry.st_uid, entry.st_gid) == (0o400, 0, 0)
        assert answers[str(m / view)] == ["error", os.strerror(errno.EACCES)]
        assert (m / view).read_bytes()
    if "kmem_cache" in views:
        assert stat.S_IMODE(os.stat("/proc/slabinfo").st_mode) == 0o400


# Runs as the user: opens task_file/self, forks; the parent then execs the
# setuid program given (the same process, privileged now) and the child, which
# kept the open file, reads it again from the start: a new walk.
FOLLOW_EXEC = r"""
import json, os, sys, time
path, setuid_program = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDONLY)
first = os.pread(fd, 1 << 16, 0).decode()
pid = os.getpid()
child = os.fork()
if child == 0:
    for _ in range(200):
        with open(f"/proc/{pid}/status") as f:
            if any(line.startswith("Uid:") and line.split()[2] == "0" for line in f):
                break
        time.sleep(0.01)
    again = os.pread(fd, 1 << 16, 0).decode()
    print(json.dumps({"first": first, "again": again, "pid": pid}), flush=True)
    os._exit(0)
os.execv(setuid_program, [setuid_program, "3"])
"""


def setuid_copy(directory, program):
    """A setuid-root copy of `program`, in a directory any user can reach."""
    copy = Path(directory) / Path(program).name
    copy.write_bytes(Path(program).read_bytes())
    os.chmod(copy, 0o4755)
    return copy


def shown_pids(text, column=0):
    return {line.split()[column] for line in text.splitlines()[1:]}


@pytest.mark.parametrize("view", ["task_file", "task_vma"])
def test_a_file_follows_the_process_not_its_number(users, shared, view):
    """A file opened for a process shows nothing once it exec'd a setuid
    program, though its pid and the open file are the same: /proc refuses
    that reader the setuid process, and iterfs re-walks by number."""
    top = Path(tempfile.mkdtemp(prefix="iterfs-setuid-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        program = setuid_copy(top, "/usr/bin/sleep")
        process = subprocess.run(
            users[0].command("/usr/bin/python3", "-c", FOLLOW_EXEC,
                             shared.mountpoint / view / "self", program),
            capture_output=True, text=True, timeout=60)
        assert process.returncode == 0, process.stderr
        answer = json.loads(process.stdout)
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(top)], check=True)
    if view == "task_file":
        assert shown_pids(answer["first"]) == {str(answer["pid"])}
        assert answer["again"].splitlines()[1:] == [], answer["again"]
    else:
        assert "python3" in answer["first"]
        assert answer["again"] == "", answer["again"]


# Runs as the user: a process that stops being dumpable when told, as one
# does after it changed its credentials.
GOES_UNDUMPABLE = r"""
import ctypes, sys
print("ready", flush=True)
sys.stdin.readline()
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)      # PR_SET_DUMPABLE 0
print("undumpable", flush=True)
sys.stdin.read()
"""

# Runs as the user: opens a file and reads it; when told, reads it from the
# start again (a new walk), and prints both.
READ_TWICE = r"""
import json, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
first = os.pread(fd, 1 << 16, 0).decode()
print("read", flush=True)
sys.stdin.readline()
again = os.pread(fd, 1 << 16, 0).decode()
print(json.dumps({"first": first, "again": again}), flush=True)
"""


def test_a_process_no_longer_dumpable_is_no_longer_shown(users, shared):
    """Opened by number by its owner: the ptrace rule is decided at every walk,
    on the process as it is then, and a process that is no longer dumpable is
    the kernel's to show to root alone."""
    with started(users[0], GOES_UNDUMPABLE) as holder:
        assert holder.stdout.readline().strip() == "ready"
        with started(users[0], READ_TWICE, shared.mountpoint / "task_file" / str(holder.pid)) \
                as reader:
            assert reader.stdout.readline().strip() == "read"
            holder.stdin.write("go\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "undumpable"
            refused = users[0].read(f"/proc/{holder.pid}/maps")[f"/proc/{holder.pid}/maps"]
            reader.stdin.write("go\n")
            reader.stdin.flush()
            answer = json.loads(reader.stdout.readline())
    assert refused == ["error", os.strerror(errno.EACCES)]      # what /proc says now
    assert shown_pids(answer["first"]) == {str(holder.pid)}
    assert answer["again"].splitlines()[1:] == [], answer["again"]


def test_a_pid_taken_by_another_process_shows_nothing(users, shared):
    """The process a file was opened for exits and another takes its pid
    (ns_last_pid makes it happen at once): the file shows nothing of it."""
    with started(users[0], SLEEPER) as first:
        assert first.stdout.readline().strip() == "ready"
        pid = first.pid
        with started(users[0], READ_TWICE, shared.mountpoint / "task_file" / str(pid)) \
                as reader:
            assert reader.stdout.readline().strip() == "read"
            first.kill()
            first.wait()
            for _ in range(50):
                Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
                second = users[0].start(SLEEPER)
                if second.pid == pid:
                    break
                second.kill()
                second.wait()
            try:
                assert second.pid == pid, "the pid was not taken again"
                assert second.stdout.readline().strip() == "ready"
                reader.stdin.write("go\n")
                reader.stdin.flush()
                answer = json.loads(reader.stdout.readline())
                # The same user may read the new process through a new open.
                fresh = users[0].read(shared.mountpoint / "task_file" / str(pid))
            finally:
                second.kill()
                second.wait()
    assert shown_pids(answer["first"]) == {str(pid)}
    assert answer["again"].splitlines()[1:] == [], answer["again"]
    answer, text = fresh[str(shared.mountpoint / "task_file" / str(pid))]
    assert answer == "ok" and shown_pids(text) == {str(pid)}, text


# Runs as the user: opens a file, reads a little of it and closes it, `count`
# times: each leaves a walk begun and never ended.
ABANDON = r"""
import os, sys
for _ in range(int(sys.argv[2])):
    fd = os.open(sys.argv[1], os.O_RDONLY)
    os.read(fd, 1)
    os.close(fd)
print("done", flush=True)
"""


def session_entries(daemon, view):
    """How many walks the view's program keeps state for, from bpftool."""
    programs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], check=True,
                                         capture_output=True, text=True).stdout)
    owned = set(daemon.program_ids())
    maps = {map_id for p in programs if p["id"] in owned and p.get("name") == view
            for map_id in p.get("map_ids", [])}
    count = 0
    for map_id in maps:
        info = json.loads(subprocess.run(["bpftool", "-j", "map", "show", "id", str(map_id)],
                                         check=True, capture_output=True, text=True).stdout)
        if info.get("name") == "sessions":
            dump = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(map_id)],
                                  check=True, capture_output=True, text=True).stdout
            count += len(json.loads(dump))
    return count


def test_no_reader_disturbs_another_readers_walk(users, shared):
    """A walk's state lives as long as its iterator: thousands of walks another
    user begins and abandons neither evict it (its header and `sl` numbers
    stay whole) nor stay behind."""
    m = shared.mountpoint
    with contextlib.ExitStack() as stack:
        for _ in range(60):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        fd = os.open(m / "tcp", os.O_RDONLY)
        try:
            head = os.read(fd, 4096)
            abandon = subprocess.run(users[1].command("/usr/bin/python3", "-c", ABANDON,
                                                      m / "tcp", "20000"),
                                     capture_output=True, text=True, timeout=300)
            assert abandon.stdout.strip() == "done", abandon.stderr
            rest = b""
            while chunk := os.read(fd, 4096):
                rest += chunk
        finally:
            os.close(fd)
        lines = (head + rest).decode().splitlines()
        left = session_entries(shared, "tcp")
    assert lines[0].split()[:2] == ["sl", "local_address"]
    numbers = [int(line.split(":")[0]) for line in lines[1:]]
    assert numbers == list(range(len(numbers))) and len(numbers) >= 60, lines[:3]
    assert left == 0


# -- /proc's hidepid -------------------------------------------------------------

# Run as a user: what it sees of the processes through iterfs and through /proc.
HIDEPID_LOOK = r"""
import errno, json, os, sys
mnt, pids = sys.argv[1], sys.argv[2:]
def outcome(call, *args):
    try:
        call(*args)
        return "ok"
    except OSError as error:
        return errno.errorcode[error.errno]
def read(path):
    with open(path) as f:
        f.read()
answer = {"me": os.getpid(),
          "iterfs": sorted(int(n) for n in os.listdir(f"{mnt}/task") if n.isdigit()),
          "proc": sorted(int(n) for n in os.listdir("/proc") if n.isdigit())}
for pid in pids + ["1", "all"]:
    answer[pid] = {"stat": outcome(os.stat, f"{mnt}/task/{pid}"),
                   "read": outcome(read, f"{mnt}/task/{pid}"),
                   "proc_stat": outcome(os.stat, f"/proc/{pid}"),
                   "proc_read": outcome(read, f"/proc/{pid}/stat")}
print(json.dumps(answer))
"""

# A /proc of the daemon's own mount namespace, mounted with the options given
# ($0) before the daemon starts ("$@").
PROC_WITH = 'mount -t proc -o "$0" proc /proc && exec "$@"'


def hidepid_session(options, users):
    """What each user and root see (HIDEPID_LOOK) through iterfs and through
    /proc, both in a mount namespace of the daemon's own whose /proc has these
    options, beside a `sleep` of each user's."""
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", PROC_WITH, options]
    with reachable_mount("--allow-other", prefix=prefix, own_mounts=True) as daemon:
        sleepers = [user.start(SLEEPER) for user in users]
        try:
            pids = [str(sleeper.pid) for sleeper in sleepers]
            seen = {}
            for ids in [f"{user.uid}:{user.gid}" for user in users] + ["0:0"]:
                uid, gid = ids.split(":")
                result = subprocess.run(
                    daemon.in_mounts("setpriv", f"--reuid={uid}", f"--regid={gid}",
                                     "--clear-groups", "/usr/bin/python3", "-c", HIDEPID_LOOK,
                                     str(daemon.mountpoint), *pids),
                    capture_output=True, text=True, timeout=60)
                assert result.returncode == 0, result.stderr
                seen[ids] = json.loads(result.stdout)
        finally:
            for sleeper in sleepers:
                sleeper.kill()
                sleeper.wait()
    return {"pids": [int(pid) for pid in pids], "seen": seen}


def test_hidepid_invisible_hides_what_proc_hides(users):
    """/proc mounted hidepid=2 (invisible), gid= the second user's group: the
    first user sees its own processes alone, through iterfs as through /proc;
    the second, in the group, and root see every one."""
    first, second = users
    session = hidepid_session(f"hidepid=2,gid={second.gid}", users)
    own, others = session["pids"]
    mine = session["seen"][f"{first.uid}:{first.gid}"]
    assert mine["iterfs"] == mine["proc"] == sorted([own, mine["me"]])
    assert mine[str(own)] == {"stat": "ok", "read": "ok", "proc_stat": "ok", "proc_read": "ok"}
    for hidden in (str(others), "1"):
        assert mine[hidden] == {"stat": "ENOENT", "read": "ENOENT",
                                "proc_stat": "ENOENT", "proc_read": "ENOENT"}
    assert mine["all"]["read"] == "EACCES"          # it would show every process
    for exempt in (session["seen"][f"{second.uid}:{second.gid}"], session["seen"]["0:0"]):
        assert {own, others} <= set(exempt["iterfs"])
        assert {own, others} <= set(exempt["proc"])
        assert exempt[str(own)]["read"] == exempt[str(others)]["read"] == "ok"
        assert exempt["all"]["read"] == "ok"


def test_hidepid_noaccess_lists_but_refuses(users):
    """hidepid=1 (noaccess): every process is listed, only one's own may be read."""
    session = hidepid_session("hidepid=1", users)
    own, others = session["pids"]
    first = users[0]
    mine = session["seen"][f"{first.uid}:{first.gid}"]
    assert {own, others} <= set(mine["iterfs"])
    assert {own, others} <= set(mine["proc"])
    assert mine[str(own)]["read"] == mine[str(own)]["proc_read"] == "ok"
    for hidden in (str(others), "1"):
        assert mine[hidden]["stat"] == mine[hidden]["proc_stat"] == "ok"
        assert mine[hidden]["proc_read"] in ("EACCES", "EPERM")
        assert mine[hidden]["read"] == "EACCES"
    assert mine["all"]["read"] == "EACCES"
    assert session["seen"]["0:0"][str(others)]["read"] == "ok"
