"""task/: one line per thread, compared with /proc/<tgid>/task/<tid>/stat and status.

Every column is compared with what the kernel prints for the same thread at a
moment when its values cannot move: the thread is stopped, sleeping, frozen or a
zombie, and /proc prints the same before and after our read.

utime and stime need more care. The kernel scales the tick samples to the
thread's runtime (cputime_adjust) and keeps the answer in prev_cputime, so that
no later read goes back; a /proc read stores it, ours only computes it. With
the inputs unchanged, ours is what /proc printed last and what it prints next.
Read after /proc, ours could only echo what /proc stored: the tests of the
arithmetic read ours first, after the thread ran and before /proc looks.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import namedtuple
from pathlib import Path

import pytest

from conftest import OBJECTS, needs_view, running_daemon
from iterfs import bpf

pytestmark = needs_view('task')

COLUMNS = ("tgid", "tid", "ppid", "uid", "state", "prio", "nice", "threads", "cpu",
           "utime", "stime", "start", "rss", "comm")
Task = namedtuple("Task", COLUMNS)
# comm follows the last number after exactly one space; it may begin with one.
ROW = re.compile(r" *(\d+) +(\d+) +(\d+) +(\d+) +(\S) +(-?\d+) +(-?\d+) +(\d+) +(\d+)"
                 r" +(\d+) +(\d+) +(\d+) +(\d+) (.*)\Z")
CLOCK_TICK_NS = 10_000_000      # USER_HZ is 100
PID_1_HIDDEN = 1                # the kernel hides pid 1's threads from task iterators here
# The values are stable, so one attempt should do; more only absorb a wakeup.
ATTEMPTS = 20
CHURN_ROUNDS = 40


def decode(data):
    return data.decode("utf-8", "surrogateescape")


def parse_task(text):
    """{tid: Task}; asserts the header and that every line is one thread."""
    lines = text.split("\n")
    assert lines[0].split() == list(COLUMNS)
    assert lines[-1] == "", "the text ends with a newline"
    rows = {}
    for line in lines[1:-1]:
        match = ROW.match(line)
        assert match, repr(line)
        values = [value if column in ("state", "comm") else int(value)
                  for column, value in zip(COLUMNS, match.groups())]
        row = Task(*values)
        assert row.tid not in rows, f"thread {row.tid} twice"
        rows[row.tid] = row
    return rows


def unescape(comm):
    """The raw name from status's escaping: \\n is a newline, \\\\ a backslash."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\"}[m.group(1)], comm)


def read_view(mount, name, size=None):
    path = mount.mountpoint / "task" / str(name)
    if size is None:
        return decode(path.read_bytes())
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, size):
            chunks.append(chunk)
        return decode(b"".join(chunks))
    finally:
        os.close(fd)


def proc_task(tgid, tid):
    """The thread as /proc shows it, in our columns."""
    base = f"/proc/{tgid}/task/{tid}"
    for _ in range(ATTEMPTS):
        stat = Path(base, "stat").read_bytes()
        status = Path(base, "status").read_bytes()
        # The two files are two reads: a thread that runs between them can
        # show R in one and S in the other. Take a pair that agrees.
        if Path(base, "stat").read_bytes() == stat and agree(decode(stat), decode(status)):
            break
    return task_from_proc(decode(stat), decode(status))


def agree(stat, status):
    """Whether stat and status print the same state and parent."""
    fields = dict(line.split(":\t", 1) for line in status.split("\n") if ":\t" in line)
    f = stat[stat.rindex(")") + 2:].split()
    return int(fields["PPid"]) == int(f[1]) and fields["State"][0] == f[0]


def task_from_proc(stat, status):
    """Our columns from the text of stat and status: comm as status escapes it.
    Checks stat and status against each other where both print a value that
    does not move (the state does: proc_task reads until the two agree)."""
    fields = dict(line.split(":\t", 1) for line in status.split("\n") if ":\t" in line)
    # stat: "pid (comm) state ppid ...": comm is raw, so it ends at the last ')'.
    raw_comm = stat[stat.index("(") + 1:stat.rindex(")")]
    f = stat[stat.rindex(")") + 2:].split()
    assert int(fields["PPid"]) == int(f[1])
    assert unescape(fields["Name"]) == raw_comm
    return Task(tgid=int(fields["Tgid"]), tid=int(stat.split()[0]), ppid=int(f[1]),
                uid=int(fields["Uid"].split()[0]), state=f[0], prio=int(f[15]),
                nice=int(f[16]), threads=int(f[17]), cpu=int(f[36]), utime=int(f[11]),
                stime=int(f[12]), start=int(f[19]), rss=int(f[21]), comm=fields["Name"])


def proc_threads(tgid):
    rows = {}
    for tid in sorted(os.listdir(f"/proc/{tgid}/task"), key=int):
        try:
            rows[int(tid)] = proc_task(tgid, int(tid))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return rows


def read_stable(mount, tgid, name=None, size=None):
    """(ours, /proc's) for a process whose threads cannot change: /proc read
    before and after ours agree."""
    for _ in range(ATTEMPTS):
        before = proc_threads(tgid)
        ours = parse_task(read_view(mount, tgid if name is None else name, size))
        after = proc_threads(tgid)
        if before == after:
            return ours, before
        time.sleep(0.05)
    pytest.fail(f"/proc/{tgid}/task kept changing")


def assert_same(ours, proc):
    assert sorted(ours) == sorted(proc)
    for tid in proc:
        assert ours[tid] == proc[tid], f"thread {tid}"


def wait_for(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out")
        time.sleep(0.01)


def states(tgid):
    return {tid: row.state for tid, row in proc_threads(tgid).items()}


def stop(process):
    os.kill(process.pid, signal.SIGSTOP)
    wait_for(lambda: set(states(process.pid).values()) == {"T"})


def kill(process):
    try:
        process.kill()
    except ProcessLookupError:
        pass
    process.wait()


@pytest.fixture
def spawn():
    """Start processes that are killed and reaped however the test ends."""
    started = []

    def start(args, **kwargs):
        process = subprocess.Popen(args, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        kill(process)


WORKER = r"""
import ctypes, json, os, sys, threading, time

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NAME = 15

def user(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        sum(i * i for i in range(2000))

def system(seconds):
    # Reading /dev/zero is kernel time; the loop around it a little user time.
    zero = os.open("/dev/zero", os.O_RDONLY)
    buffer = bytearray(4 << 20)
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        os.readv(zero, [buffer])
    os.close(zero)

threads = json.loads(sys.argv[1])       # [name in hex, user seconds, system seconds]
done = threading.Barrier(len(threads) + 1)
release = threading.Event()
tids = {}

def thread(name, user_seconds, system_seconds):
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(bytes.fromhex(name)), 0, 0, 0)
    tids[name] = threading.get_native_id()
    user(user_seconds)
    system(system_seconds)
    user(user_seconds / 2)
    done.wait()
    release.wait()

for arguments in threads:
    threading.Thread(target=thread, args=arguments).start()
done.wait()
print(json.dumps(tids), flush=True)
sys.stdin.read()
release.set()
"""


class Worker:
    """A process whose threads, named and given CPU work by `threads` (name:
    (user seconds, system seconds)), have done their work and now sleep."""

    def __init__(self, threads):
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER,
             json.dumps([[name.hex(), *work] for name, work in threads.items()])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = self.process.pid
        try:
            tids = json.loads(self.process.stdout.readline())
        except BaseException:
            kill(self.process)
            raise
        self.tids = {bytes.fromhex(name): tid for name, tid in tids.items()}


# Long enough that this thread's stime * runtime passes 2**64 ns**2, so that the
# kernel's mul_u64_u64_div_u64 needs its 128-bit product.
SYSTEM_SECONDS = 4.7


@pytest.fixture
def burnt():
    # "system" does some user work too: the loop around its reads alone was
    # once sampled by no tick at all (6.1 under TCG), and its utime was 0.
    worker = Worker({b"user": (0.3, 0), b"system": (0.1, SYSTEM_SECONDS), b"mixed": (0.2, 0.3),
                     b"idle": (0, 0)})
    yield worker
    kill(worker.process)


def stop_quietly(process):
    """SIGSTOP, and wait for it through waitpid: a read of /proc/<pid>/task/*/stat
    would store the values of utime and stime this test wants to compute first."""
    os.kill(process.pid, signal.SIGSTOP)
    os.waitpid(process.pid, os.WUNTRACED)
    time.sleep(0.02)    # the last thread to stop told the parent before it left the CPU


@pytest.mark.kernel
def test_stopped_process_every_thread_equals_proc(mount, burnt):
    """Ours is read first after the threads burnt CPU time: computed from the
    tick samples, not read back from what /proc stored."""
    stop_quietly(burnt.process)
    try:
        ours = parse_task(read_view(mount, burnt.pid))
        proc = proc_threads(burnt.pid)
        assert proc_threads(burnt.pid) == proc
    finally:
        os.kill(burnt.pid, signal.SIGCONT)
    assert_same(ours, proc)
    assert len(ours) == 1 + len(burnt.tids) == ours[burnt.pid].threads
    assert {row.state for row in ours.values()} == {"T"}
    assert {(row.tgid, row.ppid, row.uid, row.nice, row.prio) for row in ours.values()} == {
        (burnt.pid, os.getpid(), 0, 0, 20)}
    user, system, mixed, idle = (ours[burnt.tids[n]] for n in (b"user", b"system", b"mixed",
                                                                b"idle"))
    assert user.utime >= 20 and mixed.utime >= 20 and mixed.stime >= 20
    # Starting a thread costs under a tick; in an emulated VM (test-kernels), on
    # a loaded host, up to a tenth of a second: there, less than a busy thread.
    if not os.environ.get("ITERFS_SHARED_MOUNT"):
        assert idle.utime + idle.stime == 0
    else:
        assert idle.utime + idle.stime < min(user.utime, mixed.utime + mixed.stime)
    # Both tick counts non-zero, and a product past 64 bits: the 128-bit path ran.
    assert system.utime > 0
    total = (system.utime + system.stime) * CLOCK_TICK_NS
    assert system.stime * CLOCK_TICK_NS * total > 2 ** 64


# Two processes start threads in turns, so that their thread ids interleave as
# the task iterator walks them; one thread of the first takes a real uid of its
# own (a raw setresuid(2): glibc's would change every thread's).
INTERLEAVED = r"""
import ctypes, os, platform, sys, threading, time
SETRESUID = {"x86_64": 117, "aarch64": 147}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
to_second, to_first = os.pipe(), os.pipe()
first = os.fork() != 0
if not first:
    libc.prctl(1, 9)        # PR_SET_PDEATHSIG, SIGKILL: never outlives the first
mine, theirs = (to_first, to_second) if first else (to_second, to_first)
stop = threading.Event()
for turn in range(12):
    if (turn % 2 == 0) == first:        # first on even turns, second on odd
        threading.Thread(target=stop.wait).start()
        os.write(theirs[1], b"x")
    else:
        os.read(mine[0], 1)
if first:
    def own_uid():
        libc.syscall(SETRESUID, 4321, -1, -1)
        stop.wait()
    threading.Thread(target=own_uid).start()
    time.sleep(0.2)
    print(os.getpid(), flush=True)
    sys.stdin.read()
else:
    stop.wait()
"""


@pytest.mark.kernel
def test_interleaved_processes_each_thread_equals_proc(mount):
    """What a process's threads share is written once for them (task.bpf.c):
    with two processes' threads interleaved by id and a thread of a uid of its
    own, every thread of both still equals /proc."""
    process = subprocess.Popen([sys.executable, "-c", INTERLEAVED], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        first = int(process.stdout.readline())
        second = children(first)
        assert len(second) == 1
        pids = (first, second[0])
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(0.1)
        try:
            ours = parse_task(read_view(mount, "all"))
            proc = {pid: proc_threads(pid) for pid in pids}
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        tids = sorted((tid, pid) for pid in pids for tid in proc[pid])
        owners = [pid for _, pid in tids]
        assert sum(a != b for a, b in zip(owners, owners[1:])) >= 4, "interleaved"
        for pid in pids:
            assert_same({tid: ours[tid] for tid in proc[pid]}, proc[pid])
            assert {tid for tid, row in ours.items() if row.tgid == pid} == set(proc[pid])
        assert sorted(row.uid for row in proc[first].values()).count(4321) == 1
        assert {row.threads for row in proc[first].values()} == {len(proc[first])}
    finally:
        for pid in children(process.pid):      # before its parent is gone
            os.kill(pid, signal.SIGKILL)
        kill(process)


# Three threads; on a line from stdin, 64 MiB more touched and a fourth thread.
GROWS = r"""
import sys, threading
stop = threading.Event()
for _ in range(3):
    threading.Thread(target=stop.wait, daemon=True).start()
print("ready", flush=True)
sys.stdin.readline()
held = b"x" * (64 << 20)
threading.Thread(target=stop.wait, daemon=True).start()
print("grown", flush=True)
sys.stdin.read()
"""


def read_line(stream):
    """One line of an iterator read a byte a read(2): the kernel fills its buffer
    anew only once the last fill is drained."""
    line = b""
    while not line.endswith(b"\n"):
        byte = stream.read(1)
        assert byte, line
        line += byte
    return line


@pytest.mark.kernel
def test_what_threads_share_is_read_again_after_a_pause(spawn):
    """What a process's threads share is kept for one buffer of the walk only:
    read a line a fill, with the process grown after the first thread's line,
    the later lines show its rss and thread count as they are then."""
    process = spawn([sys.executable, "-c", GROWS], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    with bpf.load(OBJECTS / "task.bpf.o") as obj, \
            obj.program("task").attach_iterator(pid=process.pid) as link, \
            link.open() as stream:
        header, first = read_line(stream), read_line(stream)
        process.stdin.write("grow\n")
        process.stdin.flush()
        assert process.stdout.readline() == "grown\n"
        rest = b"".join(iter(lambda: stream.read(1), b""))
    rows = parse_task((header + first + rest).decode())
    before, *after = rows.values()
    assert before.tid == process.pid and before.threads == 4
    assert len(after) == 4 and {row.threads for row in after} == {5}
    assert min(row.rss for row in after) >= before.rss + (60 << 20) // os.sysconf("SC_PAGE_SIZE")


# Thread names set with prctl(PR_SET_NAME): spaces, parentheses, a newline, a
# backslash, a leading space, a tab, bytes that are not UTF-8, none at all, and
# the longest comm holds (15 bytes).
ODD_NAMES = [b"two  spaces", b"a) (b", b"new\nline", b"back\\slash", b" lead", b"tab\there",
             b"\xe9t\xe9", b"", b"fifteen_letters"]


@pytest.fixture(scope="module")
def named():
    worker = Worker({b"worker": (0.1, 0.1), **{name: (0, 0) for name in ODD_NAMES}})
    yield worker
    kill(worker.process)


@pytest.mark.kernel
def test_sleeping_process_every_thread_equals_proc(mount, named):
    ours, proc = read_stable(mount, named.pid)
    assert_same(ours, proc)
    assert {row.state for row in ours.values()} == {"S"}
    assert len(ours) == 1 + len(named.tids) == ours[named.pid].threads


def test_odd_names_are_one_line_each_and_unescape_to_comm(mount, named):
    ours, proc = read_stable(mount, named.pid)
    assert_same(ours, proc)
    for name, tid in named.tids.items():
        raw = decode(name)
        assert unescape(ours[tid].comm) == raw
        assert ours[tid].comm == raw.replace("\\", "\\\\").replace("\n", "\\n")
    assert ours[named.tids[b"new\nline"]].comm == "new\\nline"
    assert ours[named.tids[b"back\\slash"]].comm == "back\\\\slash"
    assert ours[named.tids[b"a) (b"]].comm == "a) (b"
    assert ours[named.tids[b" lead"]].comm == " lead"
    assert ours[named.tids[b""]].comm == ""


@pytest.mark.parametrize("size", [333, 4096, 1 << 20])
def test_reads_of_any_size_agree(mount, spawn, size):
    """A stopped process of 300 threads, some 30 KB: reads cut lines and the
    kernel's iterator buffer alike."""
    process = spawn([sys.executable, "-c", MANY_THREADS, "300"], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == b"ready"
    stop(process)
    ours, proc = read_stable(mount, process.pid, size=size)
    whole = read_view(mount, process.pid)
    assert read_view(mount, process.pid, size) == whole
    assert len(whole) > 20_000 and len(ours) == 301
    assert_same(ours, proc)


MANY_THREADS = r"""
import sys, threading
release = threading.Event()
threads = [threading.Thread(target=release.wait) for _ in range(int(sys.argv[1]))]
for t in threads:
    t.start()
print("ready", flush=True)
sys.stdin.read()
release.set()
"""


def one_process(mount, pid):
    ours, proc = read_stable(mount, pid)
    assert_same(ours, proc)
    return ours[pid]


def test_stopped_process_shows_T(mount, spawn):
    process = spawn(["sleep", "60"])
    stop(process)
    assert one_process(mount, process.pid).state == "T"


FREEZER = Path("/sys/fs/cgroup/freezer")


@pytest.fixture
def freezer_cgroup():
    """A cgroup v1 freezer group; on the way out its tasks are thawed and moved
    back to the root group, and it is removed."""
    if not (FREEZER / "tasks").exists():
        pytest.skip("no cgroup v1 freezer")
    group = FREEZER / f"iterfs-test-{os.getpid()}"
    group.mkdir()
    try:
        yield group
    finally:
        (group / "freezer.state").write_text("THAWED")
        for pid in (group / "tasks").read_text().split():
            try:
                (FREEZER / "tasks").write_text(pid)
            except ProcessLookupError:
                pass
        group.rmdir()


def test_frozen_process_shows_D(mount, spawn, freezer_cgroup):
    """The kernel's freezer parks a task in TASK_FROZEN, which /proc reports as
    uninterruptible sleep."""
    process = spawn(["sleep", "60"])
    (freezer_cgroup / "tasks").write_text(str(process.pid))
    (freezer_cgroup / "freezer.state").write_text("FROZEN")
    wait_for(lambda: (freezer_cgroup / "freezer.state").read_text().strip() == "FROZEN")
    assert one_process(mount, process.pid).state == "D"


def test_zombie_process_shows_Z(mount, spawn):
    process = spawn([sys.executable, "-c", "pass"])
    wait_for(lambda: states(process.pid) == {process.pid: "Z"})
    row = one_process(mount, process.pid)
    assert (row.state, row.rss, row.ppid) == ("Z", 0, os.getpid())


EXIT_LEADER = r"""
import ctypes, sys, threading
threading.Thread(target=sys.stdin.read).start()
ctypes.CDLL(None).syscall(60, 0)    # exit(2): the leader alone ends, the process lives on
"""


def test_exited_leader_of_a_living_process_shows_Z(mount, spawn):
    process = spawn([sys.executable, "-c", EXIT_LEADER], stdin=subprocess.PIPE)
    wait_for(lambda: len(states(process.pid)) == 2 and states(process.pid)[process.pid] == "Z")
    leader = one_process(mount, process.pid)
    # No memory left to the leader, yet it still counts among the threads.
    assert (leader.state, leader.rss, leader.threads) == ("Z", 0, 2)


TRACED = r"""
import ctypes, os, signal
ctypes.CDLL(None).ptrace(0, 0, 0, 0)    # PTRACE_TRACEME: the test is the tracer
os.kill(os.getpid(), signal.SIGSTOP)    # signal-delivery-stop: traced, not stopped
"""


def test_traced_process_shows_t(mount, spawn):
    process = spawn([sys.executable, "-c", TRACED])
    wait_for(lambda: states(process.pid) == {process.pid: "t"})
    assert one_process(mount, process.pid).state == "t"


def test_running_process_shows_R(mount, spawn):
    """A process that never sleeps is running or runnable whenever it is read."""
    process = spawn([sys.executable, "-c", 'print("ready", flush=True)\nwhile True: pass'],
                    stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == b"ready"
    for _ in range(5):
        row = parse_task(read_view(mount, process.pid))[process.pid]
        assert row.state == "R" and proc_task(process.pid, process.pid).state == "R"
        moving = ("utime", "stime", "cpu")
        expected = proc_task(process.pid, process.pid)._replace(**{c: 0 for c in moving})
        assert row._replace(**{c: 0 for c in moving}) == expected


def test_real_uid_of_another_user(mount, spawn):
    """Real uid 4242, effective 4343: the column is status's first Uid."""
    process = spawn(["setpriv", "--ruid", "4242", "--euid", "4343", "--regid", "4242",
                     "--clear-groups", "sleep", "60"])
    wait_for(lambda: proc_task(process.pid, process.pid).comm == "sleep")
    row = one_process(mount, process.pid)
    assert row.uid == 4242


@pytest.mark.parametrize("command, prio, nice", [
    (["nice", "-n", "7"], 27, 7),
    (["nice", "-n", "-5"], 15, -5),
    (["chrt", "--fifo", "10"], -11, 0),
])
def test_niced_and_realtime_processes(mount, spawn, command, prio, nice):
    process = spawn(command + ["sleep", "60"])
    wait_for(lambda: proc_task(process.pid, process.pid).comm == "sleep")
    row = one_process(mount, process.pid)
    assert (row.prio, row.nice) == (prio, nice)


def test_thread_file_is_that_thread_alone(mount, named):
    tid = named.tids[b"worker"]
    assert str(tid) not in os.listdir(mount.mountpoint / "task")
    ours, proc = read_stable(mount, named.pid, name=tid)
    assert list(ours) == [tid]
    assert ours[tid] == proc[tid]


def test_self_from_a_thread_is_the_whole_process(mount):
    result = {}

    def read_self():
        result["text"] = read_view(mount, "self")
        result["tid"] = threading.get_native_id()

    before = set(map(int, os.listdir("/proc/self/task")))
    reader = threading.Thread(target=read_self)
    reader.start()
    reader.join()
    rows = parse_task(result["text"])
    assert {row.tgid for row in rows.values()} == {os.getpid()}
    assert before | {result["tid"]} == set(rows)


def every_thread():
    """{(tgid, tid)} of /proc/*/task/*, less what the kernel hides from iterators."""
    threads = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == PID_1_HIDDEN:
            continue
        try:
            threads |= {(int(name), int(tid)) for tid in os.listdir(f"/proc/{name}/task")}
        except FileNotFoundError:
            pass
    return threads


def test_all_covers_every_thread_of_every_process(mount, named):
    before = every_thread()
    rows = parse_task(read_view(mount, "all"))
    after = every_thread()
    shown = {(row.tgid, row.tid) for row in rows.values() if row.tgid != PID_1_HIDDEN}
    assert before & after <= shown
    # A thread shown but in neither listing lived only during our read.
    assert not any(os.path.exists(f"/proc/{tid}") for _, tid in shown - (before | after))
    assert {(named.pid, tid) for tid in named.tids.values()} <= shown
    assert any(row.tgid == 2 for row in rows.values()), "kernel threads too"


def test_all_every_thread_equals_proc(mount):
    """Every thread of the system, kernel threads included (workqueue workers'
    names, long kernel thread names, I state): each must equal /proc in one
    read where /proc did not change around it. The test process and the daemon
    run while the file is read, and are left out."""
    excluded = {os.getpid(), mount.pid}
    pending = {tid for tgid, tid in every_thread() if tgid not in excluded}
    differences = {}
    for _ in range(ATTEMPTS):
        before = {}
        for tid in pending:
            try:
                before[tid] = proc_task(tid, tid)
            except (FileNotFoundError, ProcessLookupError):
                differences.pop(tid, None)      # gone: nothing to compare
        ours = parse_task(read_view(mount, "all"))
        for tid, row in before.items():
            try:
                after = proc_task(tid, tid)
            except (FileNotFoundError, ProcessLookupError):
                differences.pop(tid, None)
                continue
            if row == after == ours.get(tid):
                differences.pop(tid, None)
            else:
                differences[tid] = (ours.get(tid), after)
        pending = set(differences)
        if not pending:
            break
        time.sleep(0.1)
    assert differences == {}
    assert {"S", "I"} <= {row.state for row in ours.values()}


def children(pid):
    found = []
    for name in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{name}/stat").read_text() if name.isdigit() else ""
        except (FileNotFoundError, ProcessLookupError):
            continue
        if stat and int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            found.append(int(name))
    return found


# Reads /proc as a process in the daemon's pid and time namespaces sees it: a
# procfs of that pid namespace, mounted in a mount namespace of its own.
INSIDE = r"""
import json, os, subprocess, sys
subprocess.run(["mount", "-t", "proc", "proc", "/proc"], check=True)
threads = {}
for tid in os.listdir("/proc/1/task"):
    with open(f"/proc/1/task/{tid}/stat", "rb") as stat, \
         open(f"/proc/1/task/{tid}/status", "rb") as status:
        threads[tid] = [stat.read().hex(), status.read().hex()]
print(json.dumps(threads))
"""
BOOT_OFFSET_SECONDS = 1000


def test_numbers_are_those_of_the_daemons_namespaces(tmp_path):
    """The daemon in a pid namespace and a time namespace of its own, its boot
    clock 1000 s ahead: all/ is what it can see, itself, numbered as a /proc of
    its namespaces numbers it (pid 1, ppid 0, start times 1000 s later). Its
    threads run to answer, so their state and times are not compared."""
    prefix = ["unshare", "--pid", "--fork", "--time", "--boottime", str(BOOT_OFFSET_SECONDS)]
    with running_daemon(tmp_path / "mnt", prefix=prefix) as daemon:
        (pid,) = children(daemon.pid)   # unshare's child: the daemon
        inside = ["nsenter", "--target", str(pid), "--pid", "--time", "--",
                  "unshare", "--mount", "--propagation", "private", "--fork",
                  sys.executable, "-c", INSIDE]
        all_threads = daemon.mountpoint / "task" / "all"
        all_threads.read_bytes()        # the first read starts a reader thread
        for _ in range(ATTEMPTS):
            seen = json.loads(subprocess.run(inside, check=True, capture_output=True).stdout)
            ours = parse_task(decode(all_threads.read_bytes()))
            if json.loads(subprocess.run(inside, check=True, capture_output=True).stdout) == seen:
                break
        outside = proc_threads(pid)
    proc = {}
    for stat, status in seen.values():
        row = task_from_proc(decode(bytes.fromhex(stat)), decode(bytes.fromhex(status)))
        proc[row.tid] = row
    moving = {"state": "", "cpu": 0, "utime": 0, "stime": 0, "rss": 0}
    assert {tid: row._replace(**moving) for tid, row in ours.items()} == {
        tid: row._replace(**moving) for tid, row in proc.items()}
    assert ours[1].tgid == 1 and ours[1].ppid == 0 and len(ours) == ours[1].threads >= 2
    assert ours[1].start == outside[pid].start + BOOT_OFFSET_SECONDS * 100


def test_process_gone_between_lookup_and_open_is_enoent(mount, spawn):
    """The kernel keeps the entry a moment; the open that follows finds no process."""
    process = spawn(["sleep", "60"])
    path = mount.mountpoint / "task" / str(process.pid)
    os.stat(path)
    kill(process)
    with pytest.raises(FileNotFoundError):
        path.read_bytes()


def test_process_gone_after_open_reads_cleanly(mount, spawn):
    """The walk starts at open(): a process killed between open() and read()
    may or may not have been shown, but the read ends cleanly, header first."""
    process = spawn(["sleep", "60"])
    with open(mount.mountpoint / "task" / str(process.pid), "rb") as f:
        kill(process)
        text = decode(f.read())
    assert set(parse_task(text)) <= {process.pid}


CHURN = r"""
import os, time
zero = os.open("/dev/zero", os.O_RDONLY)
buffer = bytearray(256 << 10)
print("ready", flush=True)
while True:     # user and kernel time by turns, each about a tick (4 ms) long
    end = time.thread_time() + 0.003
    while time.thread_time() < end:
        pass
    end = time.thread_time() + 0.003
    while time.thread_time() < end:
        os.readv(zero, [buffer])
"""


def test_cputime_never_goes_back_from_what_proc_printed(mount, spawn):
    """A thread switching between user and kernel time, its stat read every
    2 ms while it runs: each tick sampled moves the ratio, and where the new
    scaling would take utime or stime below what /proc last printed, the
    kernel holds it there. After each stop ours is read first, from what /proc
    left in prev_cputime, and must be what /proc prints next. (A hold shows
    only when it crosses a clock tick, in some of the rounds; the arithmetic
    test checks every branch.)"""
    process = spawn([sys.executable, "-c", CHURN], stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == b"ready"
    pid = process.pid
    stat = Path(f"/proc/{pid}/task/{pid}/stat")
    for _ in range(CHURN_ROUNDS):
        for _ in range(10):
            time.sleep(0.002)
            stat.read_bytes()
        stop_quietly(process)
        ours = parse_task(read_view(mount, pid))[pid]
        proc = proc_task(pid, pid)
        assert proc == proc_task(pid, pid)
        assert ours == proc
        os.kill(pid, signal.SIGCONT)
    assert ours.utime > 0 and ours.stime > 0


def kernel_cputime_adjust(runtime, utime, stime, prev_utime, prev_stime):
    """kernel/sched/cputime.c cputime_adjust() in Python's integers."""
    if prev_stime + prev_utime >= runtime:
        return prev_utime, prev_stime
    if stime == 0:
        utime = runtime
    elif utime == 0:
        stime = runtime
    else:
        stime = min(stime * runtime // (stime + utime), runtime)
    stime = max(stime, prev_stime)
    utime = runtime - stime
    if utime < prev_utime:
        utime = prev_utime
        stime = runtime - utime
    return utime, stime


# The arithmetic behind utime and stime, compiled for the host from the program's
# own text and checked against Python's integers, at the edges where 128-bit
# division needs its corrections and where prev_cputime holds a value back.
HARNESS = r"""
#include <stdint.h>
#include <stdio.h>
typedef uint64_t __u64;
typedef uint32_t __u32;
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))
%s
int main(void)
{
	unsigned long long a, b, c, d, e;
	__u64 user, system;
	char kind;

	while (scanf(" %%c", &kind) == 1) {
		if (kind == 'm' && scanf("%%llu %%llu %%llu", &a, &b, &c) == 3) {
			printf("%%llu\n", (unsigned long long)mul_u64_u64_div_u64(a, b, c));
		} else if (kind == 'a' && scanf("%%llu %%llu %%llu %%llu %%llu", &a, &b, &c, &d, &e) == 5) {
			cputime_adjust(a, b, c, d, e, &user, &system);
			printf("%%llu %%llu\n", (unsigned long long)user, (unsigned long long)system);
		} else {
			return 1;
		}
	}
	return 0;
}
"""


@pytest.fixture(scope="module")
def arithmetic(tmp_path_factory):
    """The program's arithmetic block, built for the host: a function that
    answers lines of input."""
    directory = tmp_path_factory.mktemp("arithmetic")
    source = (Path(__file__).parent.parent / "progs" / "task.bpf.c").read_text()
    begin = source.index("/* --- host-testable arithmetic")
    end = source.index("/* --- end of host-testable arithmetic --- */")
    (directory / "arithmetic.c").write_text(HARNESS % source[begin:end])
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", directory / "arithmetic",
                    directory / "arithmetic.c"], check=True)

    def run(lines):
        out = subprocess.run([directory / "arithmetic"], input="".join(lines),
                             capture_output=True, text=True, check=True).stdout
        return out.splitlines()
    return run


def test_mul_u64_u64_div_u64_is_exact(arithmetic):
    import random
    top = 2 ** 64 - 1
    edges = [0, 1, 2, 3, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**48, 2**63 - 1, 2**63,
             top - 1, top]
    cases = [(a, b, c) for c in edges[1:] for a in edges if a <= c for b in edges]
    rng = random.Random(0)
    for _ in range(100_000):
        c = rng.randrange(1, 2 ** rng.randrange(1, 65))
        cases.append((rng.randrange(0, c + 1), rng.randrange(0, 2 ** rng.randrange(1, 65)), c))
    for _ in range(20_000):     # as cputime_adjust calls it: stime, runtime, stime + utime
        stime, utime = rng.randrange(1, 2 ** 62), rng.randrange(1, 2 ** 62)
        cases.append((stime, rng.randrange(1, 2 ** 64), stime + utime))
    out = arithmetic(f"m {a} {b} {c}\n" for a, b, c in cases)
    assert len(out) == len(cases)
    wrong = [(case, int(got)) for case, got in zip(cases, out)
             if int(got) != case[0] * case[1] // case[2]]
    assert wrong == []


def test_cputime_adjust_is_the_kernels(arithmetic):
    """Tick samples in 4 ms steps (HZ 250), runtimes up to years, prev values
    below, at and above the runtime: every branch, the holding back included."""
    import random
    rng = random.Random(1)
    tick = 4_000_000
    cases = []
    for _ in range(50_000):
        scale = 2 ** rng.randrange(1, 57)
        runtime = rng.randrange(0, scale)
        utime = rng.choice([0, rng.randrange(0, scale // tick + 2) * tick])
        stime = rng.choice([0, rng.randrange(0, scale // tick + 2) * tick])
        reported = rng.choice([0, runtime, rng.randrange(0, runtime + 2 * tick + 1)])
        prev_stime = rng.randrange(0, reported + 1)
        cases.append((runtime, utime, stime, reported - prev_stime, prev_stime))
    out = arithmetic(f"a {' '.join(map(str, case))}\n" for case in cases)
    assert len(out) == len(cases)
    wrong = [(case, got) for case, got in zip(cases, out)
             if tuple(map(int, got.split())) != kernel_cputime_adjust(*case)]
    assert wrong == []
