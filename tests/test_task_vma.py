"""task_vma/: /proc/<pid>/maps reproduced by a BPF program, byte for byte.

The processes compared are stopped (SIGSTOP) while both files are read, so that
their mappings cannot change in between; every one is killed at the end, even
after a failure. Where a test needs the kernel's reads of the iterator to end
at a given place, it reads the iterator through the binding, without FUSE: the
daemon reads 64 KiB at a time, whatever size its readers ask for.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iterfs import bpf

from conftest import OBJECTS, ROOT, kill_quietly, needs_view, read_in_chunks

pytestmark = needs_view('task_vma')

OBJECT = OBJECTS / "task_vma.bpf.o"
SEQ_BUFFER = 8 * 4096           # what the kernel gives an iterator's seq_file

# Shared by the scripts below: mmap() through ctypes, for flags Python's mmap lacks.
PRELUDE = r"""
import ctypes, json, mmap, os, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.sbrk.restype = ctypes.c_void_p
libc.sbrk.argtypes = [ctypes.c_long]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_char_p]
PAGE = mmap.PAGESIZE
R, W, X = 1, 2, 4
SHARED, PRIVATE, FIXED_NOREPLACE, ANONYMOUS, GROWSDOWN = 0x1, 0x2, 0x100000, 0x20, 0x100

def mapping(pages, prot, flags, fd=-1, offset=0, address=None):
    result = libc.mmap(address, pages * PAGE, prot, flags, fd, offset * PAGE)
    if result is None or result == ctypes.c_void_p(-1).value:
        raise OSError(ctypes.get_errno(), "mmap")
    return result

def file_of(path, pages):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, pages * PAGE)
    return fd

def global_pid():
    # This process's pid outside any pid namespace it is in (/proc is not remounted).
    with open("/proc/self/status") as f:
        return int(f.read().split("NSpid:")[1].split()[0])

def maps_length(prefix):
    # What task_vma prints for this process, without the [vsyscall] line.
    with open("/proc/self/maps", "rb") as f:
        lines = f.read().splitlines(keepends=True)
    return sum(len(prefix) + len(line) for line in lines if not line.endswith(b" [vsyscall]\n"))

def fill(directory, low, high, prefix=""):
    # Maps files until maps_length(prefix) is from low to high.
    base = len(prefix) + 74 + len(directory) + 1    # a new line, but for its file name
    for counter in range(200):
        have = maps_length(prefix)
        need = (low + high) // 2 - have
        if low <= have <= high or need <= base:
            return have
        name_length = need - base if need - base <= 255 else min(255, need - 2 * base - 1)
        name = ("%d-" % counter).ljust(name_length, "x")
        mapping(1, R, SHARED, file_of(os.path.join(directory, name), 1))
    return have

def ready(**info):
    print(json.dumps(dict(info, global_pid=global_pid())), flush=True)
    sys.stdin.read()
"""

PLAIN = PRELUDE + r"""
ready()
"""

# Hundreds of mappings of every kind /proc names differently.
MAPPER = PRELUDE + r"""
directory = sys.argv[1]
data = file_of(os.path.join(directory, "data"), 64)
protections = [R, R | W, R | X, 0, R | W | X, W]
for i in range(400):
    flags = SHARED if i // len(protections) % 2 else PRIVATE
    mapping(1 + i % 3, protections[i % len(protections)], flags, data, i % 60)
for i in range(200):
    flags = (SHARED if i // len(protections) % 2 else PRIVATE) | ANONYMOUS
    mapping(1 + i % 4, protections[i % len(protections)], flags)
mapping(16, R | W, PRIVATE | ANONYMOUS | GROWSDOWN)
for name in ("with space", "new\nline", "deleted"):
    mapping(2, R, SHARED, file_of(os.path.join(directory, name), 2))
os.unlink(os.path.join(directory, "deleted"))
memfd = os.memfd_create("iterfs-vma")
os.ftruncate(memfd, 4 * PAGE)
mapping(4, R | W, SHARED, memfd)
far = os.memfd_create("iterfs-far")        # an offset of eleven hex digits
os.ftruncate(far, (1 << 40) + PAGE)
mapping(1, R, PRIVATE, far, (1 << 40) // PAGE)
zero = os.open("/dev/zero", os.O_RDWR)
mapping(3, R | W, PRIVATE, zero)
mapping(5, R | W, SHARED, zero)

# prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME): EINVAL without CONFIG_ANON_VMA_NAME.
named = {}
for label, flags in (("iterfs private", PRIVATE), ("iterfs shared", SHARED)):
    address = mapping(2, R | W, flags | ANONYMOUS)
    failed = libc.prctl(0x53564d41, 0, address, 2 * PAGE, label.encode())
    named[label] = 0 if not failed else ctypes.get_errno()

# A page right after the heap: not [heap] (the heap is start_brk to brk).
brk = libc.sbrk(0)
try:
    mapping(1, R, PRIVATE | ANONYMOUS | FIXED_NOREPLACE, address=-(-brk // PAGE) * PAGE)
except OSError:
    pass
ready(named=named)
"""

# Threads, one of which has a file table of its own: the kernel's walk of a
# process visits that one too, with the same mm.
THREADS = PRELUDE + r"""
CLONE_FILES = 0x400
tids, started = [], threading.Barrier(4)

def thread(own_files):
    if own_files and libc.unshare(CLONE_FILES) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    tids.append(threading.get_native_id())
    started.wait()
    threading.Event().wait()

for own_files in (False, True, False):
    threading.Thread(target=thread, args=(own_files,), daemon=True).start()
started.wait()
ready(tids=tids)
"""

# The main thread exits (exit(2), not exit_group(2)); another thread lives on.
LEADER_EXITS = PRELUDE + r"""
SYS_exit = 60

def thread():
    print(json.dumps({"tid": threading.get_native_id()}), flush=True)
    threading.Event().wait()

threading.Thread(target=thread).start()
libc.syscall(SYS_exit, 0)
"""


def maps(task_id):
    return Path(f"/proc/{task_id}/maps").read_bytes()


def has_gate():
    """Whether /proc shows a [vsyscall] line: not with vsyscall=none, which
    Debian's cloud kernels have by default (CONFIG_LEGACY_VSYSCALL_NONE)."""
    return maps("self").endswith(b" [vsyscall]\n")


def view(mount, name):
    return (mount.mountpoint / "task_vma" / str(name)).read_bytes()


def state(task_directory):
    """A task's state letter, as /proc/<id>/stat shows it: T stopped, Z zombie..."""
    return Path(task_directory, "stat").read_text().rsplit(")", 1)[1].split()[0]


def thread_states(pid):
    states = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):
            states.append(state(f"/proc/{pid}/task/{tid}"))
    return states


def stop(pid):
    """SIGSTOP, and wait until every thread is stopped (or a zombie)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while not all(state in "TZ" for state in thread_states(pid)):
        assert time.monotonic() < deadline, thread_states(pid)
        time.sleep(0.01)


@contextlib.contextmanager
def started(script, *args, stopped=True):
    """A Python process running `script`, once it printed its JSON line, stopped."""
    process = subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line, f"{script[-300:]} failed"
        process.info = json.loads(line)
        if stopped:
            stop(process.pid)
        yield process
    finally:
        kill_quietly(process)
        process.stdin.close()
        process.stdout.close()


@pytest.fixture
def plain():
    with started(PLAIN) as process:
        yield process


@pytest.fixture
def mapper(tmp_path):
    with started(MAPPER, tmp_path) as process:
        yield process


def lines(data):
    return data.decode(errors="surrogateescape").splitlines()


@pytest.mark.kernel
def test_plain_process_is_its_maps(mount, plain):
    ours = view(mount, plain.pid)
    assert ours == maps(plain.pid)
    text = ours.decode()
    for name in ("[heap]", "[stack]", "[vdso]", "[vvar]"):
        assert f" {name}\n" in text
    # The gate VMA, which the kernel's walk never visits, last as in /proc.
    assert lines(ours)[-1].endswith(" [vsyscall]") == has_gate()


@pytest.mark.kernel
def test_hundreds_of_mappings_of_every_kind(mount, mapper):
    ours = view(mount, mapper.pid)
    assert ours == maps(mapper.pid)
    text = ours.decode()
    # More than the kernel's buffer holds: a VMA that does not fit is shown again.
    assert len(ours) > 2 * SEQ_BUFFER
    assert len(text.splitlines()) > 600
    for end in ("/with space", "/new\\012line", "/deleted (deleted)",
                "/memfd:iterfs-vma (deleted)", "/dev/zero (deleted)"):
        assert any(line.endswith(end) for line in text.splitlines()), end
    data = [line.split() for line in text.splitlines() if line.endswith("/data")]
    assert {fields[1] for fields in data} >= {"r--p", "rw-s", "r-xp", "---p", "rwxs", "-w-p"}
    assert {fields[2] for fields in data} > {"00000000"}       # offsets in the file
    assert any(line.split()[2] == "10000000000" for line in text.splitlines())
    assert len({fields[3] for fields in data}) == 1           # one device
    anonymous = [line.split() for line in text.splitlines() if len(line.split()) == 5]
    assert {fields[1] for fields in anonymous} >= {"rw-p", "---p", "r-xp"}
    shared = [line.split() for line in text.splitlines() if line.endswith("/dev/zero (deleted)")]
    assert {fields[1] for fields in shared} >= {"rw-s", "---s", "r-xs"}


@pytest.mark.kernel
def test_named_anonymous_mappings(mount, mapper):
    named = mapper.info["named"]
    if named["iterfs private"]:
        assert set(named.values()) == {22}, named      # EINVAL
        pytest.skip("this kernel has no CONFIG_ANON_VMA_NAME (prctl PR_SET_VMA fails)")
    ours = view(mount, mapper.pid)
    assert ours == maps(mapper.pid)
    assert b" [anon:iterfs private]\n" in ours
    if named["iterfs shared"] == 9:     # EBADF: shared anonymous memory is named from 6.2
        assert b" [anon_shmem:" not in ours
    else:
        assert named["iterfs shared"] == 0, named
        assert b" [anon_shmem:iterfs shared]\n" in ours


def test_reads_of_any_size_agree(mount, mapper):
    expected = maps(mapper.pid).decode()
    for size in (333, 4096, 1 << 20):
        assert read_in_chunks(mount.mountpoint / "task_vma" / str(mapper.pid), size) == expected


def test_threads_share_one_listing(mount):
    with started(THREADS) as process:
        tids = process.info["tids"]
        expected = maps(process.pid)
        assert expected.endswith(b" [vsyscall]\n") == has_gate()
        # Once, not once per thread the kernel visits (one has its own files).
        assert view(mount, process.pid) == expected
        for tid in tids:
            assert tid != process.pid
            assert maps(tid) == expected
            assert view(mount, tid) == expected


def test_process_whose_leader_exited(mount):
    """/proc/<pid>/maps of a process whose main thread exited is empty; the
    thread that lives on still has its own."""
    with started(LEADER_EXITS, stopped=False) as process:
        tid = process.info["tid"]
        deadline = time.monotonic() + 10
        while state(f"/proc/{process.pid}") != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        stop(process.pid)
        assert maps(process.pid) == b"" == view(mount, process.pid)
        assert maps(tid) != b""
        assert view(mount, tid) == maps(tid)


READ_SELF = r"""
import json, os, sys
path = os.path.join(sys.argv[1], "task_vma", "self")
for _ in range(20):
    before = open("/proc/self/maps", "rb").read()
    with open(path, "rb") as f:
        ours = f.read()
    after = open("/proc/self/maps", "rb").read()
    if before == after:
        break
print(json.dumps({"pid": os.getpid(), "same": before == after, "equal": ours == before,
                  "ours": ours.decode(), "maps": before.decode()}))
"""


@pytest.mark.kernel
def test_self_is_the_reader(mount):
    out = subprocess.run([sys.executable, "-c", READ_SELF, str(mount.mountpoint)],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    assert result["same"], "the reader's own maps kept changing"
    assert result["ours"] == result["maps"]
    assert result["equal"]


def parse_all(text):
    """{tgid: bytes of its lines without the tgid}, checking each process's lines
    come together."""
    blocks = {}
    last = None
    for line in text.splitlines(keepends=True):
        tgid, rest = line.split(b" ", 1)
        tgid = int(tgid)
        assert tgid == last or tgid not in blocks, f"{tgid} comes twice"
        blocks[tgid] = blocks.get(tgid, b"") + rest
        last = tgid
    return blocks


def readable_maps():
    """{tgid: maps} of every process whose maps /proc lets us read (this
    machine's kernel hides pid 1 from BPF task iterators and denies its maps)."""
    result = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(PermissionError, FileNotFoundError, ProcessLookupError):
                result[int(name)] = maps(name)
    return result


def test_all_is_every_process_with_its_tgid(mount, plain, mapper):
    with started(THREADS) as threads:
        before = readable_maps()
        blocks = parse_all(view(mount, "all"))
        after = readable_maps()
        for process in (plain, mapper, threads):
            assert blocks[process.pid] == maps(process.pid)
    checked = 0
    for tgid in before.keys() & after.keys():
        if before[tgid] != after[tgid]:
            continue            # changing while read: the reader, the daemon...
        assert blocks.get(tgid, b"") == before[tgid], tgid    # kernel threads: none
        checked += bool(before[tgid])
    assert checked >= 5


def test_process_exiting_while_open_ends_cleanly(mount):
    """The walk starts at open(): the process, killed after it, is either shown
    whole as it was or not at all, and the read ends cleanly."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.1)         # exec done: its maps stay as they are
        expected = Path(f"/proc/{child.pid}/maps").read_bytes()
        with open(mount.mountpoint / "task_vma" / str(child.pid), "rb") as f:
            child.kill()
            child.wait()
            assert f.read() in (b"", expected)
    finally:
        kill_quietly(child)


def test_process_exiting_mid_walk_ends_cleanly(mapper):
    """Killed after the kernel printed part of it: the rest is not there, and no
    [vsyscall] line is added after the cut."""
    expected = maps(mapper.pid)
    with bpf.load(OBJECT) as obj:
        with obj.program("task_vma").attach_iterator(pid=mapper.pid) as link:
            with link.open() as stream:
                first = stream.read(4096)
                kill_quietly(mapper)
                rest = stream.fill(1 << 20)
    text = first + rest
    assert len(text) < len(expected)
    assert expected.startswith(text)
    assert text.endswith(b"\n")


# A process whose lines fill the iterator's first read to within the size of
# the [vsyscall] line, so that the line written in the final call does not fit
# and the kernel calls the program again.
FILLER = PRELUDE + r"""
ready(length=fill(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def test_final_line_repeated_when_it_does_not_fit(mount, tmp_path):
    if not has_gate():
        pytest.skip("no [vsyscall] line on this kernel: nothing written in the final call")
    low, high = SEQ_BUFFER - 60, SEQ_BUFFER - 20
    with started(FILLER, tmp_path, low, high) as process:
        expected = maps(process.pid)
        gate = expected.splitlines(keepends=True)[-1]
        assert gate.endswith(b" [vsyscall]\n")
        assert low <= len(expected) - len(gate) <= high, process.info
        with bpf.load(OBJECT) as obj:
            with obj.program("task_vma").attach_iterator(pid=process.pid) as link:
                with link.open() as stream:
                    first = stream.read(1 << 16)
                    rest = stream.fill(1 << 16)
        assert first == expected[:-len(gate)]           # the final line did not fit
        assert rest == gate
        assert view(mount, process.pid) == expected


# Files mapped through overlayfs: the VMA holds the file of the layer below (a
# backing file); /proc shows the overlay's path and device.
OVERLAY_MAPPER = PRELUDE + r"""
merged = sys.argv[1]
lower = os.open(os.path.join(merged, "lower file"), os.O_RDONLY)
mapping(1, R, PRIVATE, lower)
mapping(1, R, SHARED, lower, 1)
for name in ("upper file", "new\nline", "deleted"):
    mapping(1, R | W, SHARED, file_of(os.path.join(merged, name), 1))
os.unlink(os.path.join(merged, "deleted"))
ready()
"""


@pytest.fixture
def overlay(tmp_path):
    layers = {name: tmp_path / "overlay" / name for name in ("lower", "upper", "work", "merged")}
    for path in layers.values():
        path.mkdir(parents=True)
    (layers["lower"] / "lower file").write_bytes(b"x" * 8192)
    options = "lowerdir={lower},upperdir={upper},workdir={work}".format(**layers)
    mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options,
                              str(layers["merged"])], capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"no overlayfs: {mounted.stderr.strip()}")
    try:
        yield layers["merged"]
    finally:
        subprocess.run(["umount", "-l", str(layers["merged"])], check=True)


@pytest.mark.kernel
def test_files_mapped_through_overlayfs(mount, overlay):
    with started(OVERLAY_MAPPER, overlay) as process:
        ours = view(mount, process.pid)
        assert ours == maps(process.pid)
    # The overlay's device from 6.8 ("fs/proc: show correct device and inode
    # numbers in /proc/pid/maps"); before, the device of the layers below.
    release = tuple(int(n) for n in os.uname().release.split("-")[0].split(".")[:2])
    device = os.stat(overlay if release >= (6, 8) else overlay.parent / "upper").st_dev
    device = f"{os.major(device):02x}:{os.minor(device):02x}"
    shown = [line.split(None, 5) for line in lines(ours) if str(overlay) in line]
    assert {fields[5] for fields in shown} == {
        f"{overlay}/lower file", f"{overlay}/upper file", f"{overlay}/new\\012line",
        f"{overlay}/deleted (deleted)"}
    assert {fields[3] for fields in shown} == {device}


# One kind of mapped file named by d_path() in its own way: argv[1] the kind,
# argv[2] a directory to make files in. Prints the names /proc should show, or,
# for a kind the kernel or the system may lack, why it could not be made.
# Syscall numbers are x86-64's.
NAMELESS = PRELUDE + r"""
import platform, socket, struct
kind, directory = sys.argv[1], sys.argv[2]
libc.syscall.restype = ctypes.c_long
libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
kept = []       # what must stay open while the mapping is shown

def syscall(number, *args):
    if platform.machine() != "x86_64":
        raise OSError(0, "the syscall numbers here are x86-64's")
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    result = libc.syscall(ctypes.c_long(number), *args)
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result

def memfd():
    fd = os.memfd_create("iterfs\nmemfd")
    os.ftruncate(fd, PAGE)
    mapping(1, R | W, SHARED, fd)
    return ["/memfd:iterfs\\012memfd (deleted)"]

def shared_anonymous():
    mapping(2, R | W, SHARED | ANONYMOUS)
    return ["/dev/zero (deleted)"]

def dev_zero():
    zero = os.open("/dev/zero", os.O_RDWR)
    mapping(1, R | W, SHARED, zero)
    mapping(1, R | W, PRIVATE, zero)
    return ["/dev/zero (deleted)", "/dev/zero"]

def sysv_shm():
    shm = libc.shmget(0, PAGE, 0o1600)          # IPC_PRIVATE, IPC_CREAT | 0600
    if shm < 0 or libc.shmat(shm, None, 0) in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "shmget, shmat")
    libc.shmctl(shm, 0, None)                   # IPC_RMID: gone at the last detach
    return ["/SYSV00000000 (deleted)"]

def deleted_file():
    os.mkdir(os.path.join(directory, "gone dir"))
    for name in ("gone", "gone dir/gone too"):
        mapping(1, R, SHARED, file_of(os.path.join(directory, name), 1))
        os.unlink(os.path.join(directory, name))
    os.rmdir(os.path.join(directory, "gone dir"))
    return [f"{directory}/gone (deleted)", f"{directory}/gone dir/gone too (deleted)"]

def newline_path():
    os.mkdir(os.path.join(directory, "new\ndir"))
    mapping(1, R, PRIVATE, file_of(os.path.join(directory, "new\ndir", "new\nline"), 1))
    return [f"{directory}/new\\012dir/new\\012line"]

def perf_event():
    attr = ctypes.create_string_buffer(struct.pack("IIQ", 1, 64, 9), 64)  # software, dummy
    fd = syscall(298, attr, 0, -1, -1, 8)      # perf_event_open(..., PERF_FLAG_FD_CLOEXEC)
    mapping(2, R | W, SHARED, fd)              # the control page and one of data
    return ["anon_inode:[perf_event]"]

def io_uring():
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    fd = syscall(425, 4, params)               # io_uring_setup
    mapping(1, R | W, SHARED, fd)              # IORING_OFF_SQ_RING
    return ["anon_inode:[io_uring]"]

def bpf_map():
    attr = struct.pack("IIIII", 2, 4, 8, PAGE // 8, 1 << 10)   # array, BPF_F_MMAPABLE
    fd = syscall(321, 0, ctypes.create_string_buffer(attr, 128), 128)    # BPF_MAP_CREATE
    mapping(1, R | W, SHARED, fd)
    return ["anon_inode:bpf-map"]

def packet_ring():
    packet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    kept.append(packet)
    packet.setsockopt(263, 5, struct.pack("IIII", PAGE, 1, PAGE, 1))   # PACKET_RX_RING
    mapping(1, R | W, SHARED, packet.fileno())
    return ["socket:[%d]" % os.fstat(packet.fileno()).st_ino]

def aio():
    context = ctypes.c_ulong(0)
    syscall(206, 1, ctypes.byref(context))     # io_setup maps the ring
    return ["/[aio] (deleted)"]

def secretmem():
    fd = syscall(447, 0)                       # memfd_secret
    os.ftruncate(fd, PAGE)
    mapping(1, R | W, SHARED, fd)
    return ["/secretmem (deleted)"]

def dmabuf():
    libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
    heap = os.open("/dev/dma_heap/system", os.O_RDWR)
    data = ctypes.create_string_buffer(struct.pack("QIIQ", PAGE, 0, os.O_RDWR | os.O_CLOEXEC, 0))
    name = ctypes.create_string_buffer(b"iterfs")
    if libc.ioctl(heap, 0xc0184800, data) < 0:                 # DMA_HEAP_IOCTL_ALLOC
        raise OSError(ctypes.get_errno(), "DMA_HEAP_IOCTL_ALLOC")
    fd = struct.unpack_from("QIIQ", data.raw)[1]
    if libc.ioctl(fd, 0x40086201, name) < 0:                   # DMA_BUF_SET_NAME_B
        raise OSError(ctypes.get_errno(), "DMA_BUF_SET_NAME")
    mapping(1, R | W, SHARED, fd)
    return ["/dmabuf:iterfs"]

always = (memfd, shared_anonymous, dev_zero, sysv_shm, deleted_file, newline_path)
make = globals()[kind]
try:
    names = make()
except OSError as e:
    if make in always:
        raise
    ready(missing=str(e))
else:
    ready(names=names)
"""

NAMELESS_KINDS = ["memfd", "shared_anonymous", "dev_zero", "sysv_shm", "deleted_file",
                  "newline_path", "perf_event", "io_uring", "bpf_map", "packet_ring", "aio",
                  "secretmem", "dmabuf"]


@pytest.mark.kernel
@pytest.mark.parametrize("kind", NAMELESS_KINDS)
def test_names_as_d_path_gives_them(mount, tmp_path, kind):
    """Files of a filesystem that names them itself (d_op->d_dname: shmem's,
    anon_inode's, sockfs's, dma-buf's), unlinked files, newlines: the names
    /proc gives, byte for byte."""
    with started(NAMELESS, kind, tmp_path) as process:
        if "missing" in process.info:
            pytest.skip(f"cannot make a {kind} mapping here: {process.info['missing']}")
        ours = view(mount, process.pid)
        assert ours == maps(process.pid)
    shown = {line.split(None, 5)[5] for line in lines(ours) if len(line.split(None, 5)) == 6}
    assert set(process.info["names"]) <= shown


# In a pid namespace of its own, where a walk of all tasks is this process (pid
# 1), then `after` (pid 2), then the reader (pid 3): this process fills the
# iterator's first read so that its [vsyscall] line, written with the next
# process's first line, does not fit, and the kernel shows that line again.
NAMESPACE = PRELUDE + r"""
import subprocess
root, objects, directory = sys.argv[1], sys.argv[2], sys.argv[3]
after = subprocess.Popen([sys.executable, "-c", sys.argv[4]], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
after_pid = json.loads(after.stdout.readline())["global_pid"]
with open("/proc/%d/maps" % after_pid, "rb") as f:
    after_maps = f.read()
reader = subprocess.Popen([sys.executable, "-c", sys.argv[5], root, objects,
                           os.path.join(directory, "read")], stdin=subprocess.PIPE)
prefix = "%d " % global_pid()
gate = len(prefix) + len(after_maps.splitlines(keepends=True)[-1])
first = len("%d " % after_pid) + len(after_maps.splitlines(keepends=True)[0])
low, high = 8 * 4096 - gate - first + 5, 8 * 4096 - 1 - 5
os.mkdir(os.path.join(directory, "files"))
have = fill(os.path.join(directory, "files"), low, high, prefix)
with open("/proc/self/maps", "rb") as f:
    before = f.read()
reader.stdin.write(b"go\n")
reader.stdin.flush()
reader.wait()               # idle while the reader reads: these maps stay as they are
with open("/proc/self/maps", "rb") as f:
    mine = f.read()
with open(os.path.join(directory, "read"), "rb") as f:
    read = json.load(f)
after.kill()
print(json.dumps(dict(read, pid=global_pid(), after=after_pid, low=low, high=high, have=have,
                      before=before.decode(), mine=mine.decode(), after_maps=after_maps.decode())))
"""

READER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from iterfs import bpf
with bpf.load(sys.argv[2]) as obj:
    with obj.program("task_vma").attach_iterator() as link:
        sys.stdin.readline()
        with link.open() as stream:
            chunks = []
            while chunk := stream.read(1 << 16):
                chunks.append(chunk)
with open(sys.argv[3], "w") as f:
    json.dump({"first": len(chunks[0]), "text": b"".join(chunks).decode()}, f)
"""


def test_all_shows_a_boundary_again_whole(tmp_path):
    """The [vsyscall] line of one process goes out with the next process's first
    line; when those do not fit, the kernel shows that line again, and the
    [vsyscall] line must come again with it."""
    command = ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-c", NAMESPACE,
               str(ROOT), str(OBJECT), str(tmp_path), PLAIN, READER]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = process.communicate(timeout=120)
    finally:
        kill_quietly(process)
    result = json.loads(out)
    assert result["before"] == result["mine"], "the process's maps changed while read"
    assert result["low"] <= result["have"] <= result["high"], result["have"]
    blocks = parse_all(result["text"].encode())
    assert list(blocks)[:2] == [result["pid"], result["after"]]
    assert blocks[result["pid"]] == result["mine"].encode()
    assert blocks[result["after"]] == result["after_maps"].encode()
    # The first read ended where the second process's first line did not fit.
    assert result["first"] == result["have"]
