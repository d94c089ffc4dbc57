"""metrics/: the metric views, in Prometheus's text format, against the kernel
and read by the real node_exporter and Prometheus from Debian.

The sockets are made in a network namespace of the test's own, so that every
count is known: what the test made, and what /proc/<pid>/net/* lists there."""

import collections
import contextlib
import itertools
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import test_kmem_cache as slabinfo
from test_bpf_objects import fdinfo_id
from conftest import (ALL_METRICS, METRIC_VIEWS, METRICS, ROOT, ROOT_ENTRIES, STATUS,
                      Holders, kernel_refusal, needs_target, network_namespace_of, parse_status,
                      running_daemon, stop_process, view_target)
from iterfs.libbpf import ffi, lib
from iterfs.views import ROOT_ONLY_TARGETS

pytestmark = pytest.mark.kernel

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
# How long the real programs get to start, and Prometheus to scrape what is expected.
START_TIMEOUT = 30
SCRAPE_TIMEOUT = 60

TCP_STATES = ["established", "syn_sent", "syn_recv", "fin_wait1", "fin_wait2", "time_wait",
              "close", "close_wait", "last_ack", "listen", "closing"]   # 1 to 11, as /proc's st
THREAD_STATES = "RSDTtXZPI"
STILL_STATES = "TtZXP"          # what does not flicker on its own (R, S, D, I do)

# In a network namespace of its own (lo up), sockets in known states; prints
# "ready" once the kernel shows them all so.
SOCKETS = r"""
import os, socket, subprocess, sys, time
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
held = []
def keep(sock):
    held.append(sock)
    return sock
def listener(family, host):
    sock = keep(socket.socket(family))
    sock.bind((host, 0))
    sock.listen(16)
    return sock
def connection(family, host, server):
    client = keep(socket.socket(family))
    client.connect((host, server.getsockname()[1]))
    return client, keep(server.accept()[0])

# tcp6: 2 listening, 7 established, 1 fin_wait2 (a full socket), 1 close_wait
tcp6 = listener(socket.AF_INET6, "::1")
for _ in range(3):
    connection(socket.AF_INET6, "::1", tcp6)
client, _ = connection(socket.AF_INET6, "::1", tcp6)
client.shutdown(socket.SHUT_WR)
dual = listener(socket.AF_INET6, "::")          # IPv4 clients: their accepted sockets are tcp6
connection(socket.AF_INET, "127.0.0.1", dual)   # ...and the client tcp's

# tcp: 1 listening, 5 established (with the one above), 1 fin_wait2 (a time-wait
# socket: closed before its peer), 1 close_wait, 1 time_wait
tcp = listener(socket.AF_INET, "127.0.0.1")
for _ in range(2):
    connection(socket.AF_INET, "127.0.0.1", tcp)
client, _ = connection(socket.AF_INET, "127.0.0.1", tcp)
held.remove(client)
client.close()
client, server = connection(socket.AF_INET, "127.0.0.1", tcp)
held.remove(client)
client.close()
time.sleep(0.2)
held.remove(server)
server.close()

# udp: 2 close, 1 established; udp6: 1 close, 2 established
def udp(family, host, peer=None):
    sock = keep(socket.socket(family, socket.SOCK_DGRAM))
    sock.bind((host, 0))
    if peer is not None:
        sock.connect(peer.getsockname()[:2])
    return sock
first = udp(socket.AF_INET, "127.0.0.1")
udp(socket.AF_INET, "127.0.0.1")
udp(socket.AF_INET, "127.0.0.1", first)
first6 = udp(socket.AF_INET6, "::1")
udp(socket.AF_INET6, "::1", first6)
udp(socket.AF_INET6, "::1", first6)

# unix: 1 listening, 4 established, 1 close
a, b = socket.socketpair()
held += [a, b]
unix = keep(socket.socket(socket.AF_UNIX))
unix.bind("\0iterfs-metrics-%d" % os.getpid())
unix.listen(4)
keep(socket.socket(socket.AF_UNIX)).connect(unix.getsockname())
keep(unix.accept()[0])
keep(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))

def states(name):
    with open(name) as f:
        return sorted(line.split()[3] for line in f.readlines()[1:])
expected = {"/proc/self/net/tcp": sorted(["0A"] + ["01"] * 5 + ["05", "08", "06"]),
            "/proc/self/net/tcp6": sorted(["0A"] * 2 + ["01"] * 7 + ["05", "08"])}
deadline = time.monotonic() + 10
while any(states(name) != wanted for name, wanted in expected.items()):
    if time.monotonic() > deadline:
        sys.exit("the sockets never settled: %s" % {name: states(name) for name in expected})
    time.sleep(0.05)
print("ready", flush=True)
sys.stdin.read()
"""

EXPECTED_SOCKETS = {
    ("tcp", "listen"): 1, ("tcp", "established"): 5, ("tcp", "fin_wait2"): 1,
    ("tcp", "close_wait"): 1, ("tcp", "time_wait"): 1,
    ("tcp6", "listen"): 2, ("tcp6", "established"): 7, ("tcp6", "fin_wait2"): 1,
    ("tcp6", "close_wait"): 1,
    ("udp", "close"): 2, ("udp", "established"): 1,
    ("udp6", "close"): 1, ("udp6", "established"): 2,
    ("unix", "listen"): 1, ("unix", "established"): 4, ("unix", "close"): 1,
}
SERIES = {"tcp.prom": [(family, state) for family in ("tcp", "tcp6") for state in TCP_STATES],
          "udp.prom": [(family, state) for family in ("udp", "udp6")
                       for state in ("established", "close")],
          "unix.prom": [("unix", state) for state in ("established", "close", "listen")]}


@pytest.fixture
def sockets():
    """A process in a network namespace of its own, holding the sockets above
    (a test's own: its time-wait sockets last a minute)."""
    process = subprocess.Popen(["unshare", "--net", sys.executable, "-c", SOCKETS],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        yield process
    finally:
        process.kill()
        process.wait()


Sample = collections.namedtuple("Sample", "name labels value")


def unescape(value):
    """A label value as the text format escapes it (backslash, quote, newline)."""
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse(text):
    """The samples of a text in the exposition format, each family's HELP and
    TYPE checked to come before its samples."""
    samples, described = [], set()
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, kind, name, text = line.split(None, 3)
            described.add((kind, name, text if kind == "TYPE" else None))
            continue
        match = re.fullmatch(r'([a-z_]+)(?:\{(.*)\})? (\d+(?:\.\d+)?)', line)
        assert match, line
        name, labels, value = match.groups()
        labels = {name: unescape(value) for name, value
                  in re.findall(r'(\w+)="((?:[^"\\\n]|\\[\\"n])*)"', labels or "")}
        assert ("HELP", name, None) in described, line
        assert ("TYPE", name, "counter" if name.endswith("_total") else "gauge") in described, line
        samples.append(Sample(name, labels, int(value) if "." not in value else value))
    return samples


def metric_names(samples):
    """The metrics of `samples` in order, each once: each metric's samples together."""
    names = [name for name, _ in itertools.groupby(s.name for s in samples)]
    assert len(names) == len(set(names)), names
    return names


def read_metric(mount, name, pid=None):
    """metrics/<name>, read in process `pid`'s network namespace (the test's if None)."""
    path = mount.mountpoint / METRICS / name
    if pid is None:
        return path.read_text()
    with network_namespace_of(pid):
        return path.read_text()


def socket_counts(text):
    return {(s.labels["family"], s.labels["state"]): s.value for s in parse(text)
            if s.name == "iterfs_sockets"}


def proc_states(pid, name):
    """Counter of the `st` column of /proc/<pid>/net/<name>, by state name."""
    lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
    return collections.Counter(TCP_STATES[int(line.split()[3], 16) - 1] for line in lines)


# -- the directory ------------------------------------------------------------

def test_metrics_directory_holds_the_metrics_alone(mount):
    m = mount.mountpoint
    assert sorted(os.listdir(m)) == ROOT_ENTRIES
    assert sorted(os.listdir(m / METRICS)) == METRIC_VIEWS
    assert set(ALL_METRICS) >= {"tcp.prom", "udp.prom", "unix.prom", "tasks.prom",
                                "files.prom", "slab.prom", "bpf_programs.prom"}
    directory = os.stat(m / METRICS)
    assert stat.S_ISDIR(directory.st_mode) and stat.S_IMODE(directory.st_mode) == 0o555
    for name in METRIC_VIEWS:
        attributes = os.stat(m / METRICS / name)
        # Root's alone where the view of its target is, as /proc/slabinfo is.
        mode = 0o400 if view_target(name) in ROOT_ONLY_TARGETS else 0o444
        assert stat.S_ISREG(attributes.st_mode) and stat.S_IMODE(attributes.st_mode) == mode
        assert not (m / name).exists()                    # not at the root
    assert not (m / METRICS / "tcp6").exists() and not (m / METRICS / STATUS).exists()
    with pytest.raises(IsADirectoryError):
        (m / METRICS).read_text()
    with pytest.raises(OSError):
        (m / METRICS / "new.prom").write_text("")


def test_status_lists_each_metric_by_its_path(mount):
    entries = parse_status((mount.mountpoint / STATUS).read_text())
    for name in ALL_METRICS:
        state, target, source, lines = entries[f"{METRICS}/{name}"]
        assert target == view_target(name)
        assert source.endswith(f"/{name}.bpf.o")
        reason = kernel_refusal(target)
        assert (state, lines) == (("serving", []) if reason is None
                                  else ("unsupported", [f"reason: {reason}"]))


@pytest.mark.skipif(not os.path.exists(PROMTOOL), reason=f"{PROMTOOL} is not installed")
def test_every_metric_passes_promtool(mount):
    for name in METRIC_VIEWS:
        text = read_metric(mount, name)
        checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                                 capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, (name, checked.stdout, checked.stderr, text)
        assert parse(text)


# -- the numbers, against the kernel ---------------------------------------------

@pytest.mark.parametrize("name", sorted(SERIES))
def test_sockets_by_family_and_state(mount, sockets, name):
    if kernel_refusal(view_target(name)):
        pytest.skip(f"kernel: {kernel_refusal(view_target(name))}")
    counts = socket_counts(read_metric(mount, name, sockets.pid))
    assert list(counts) == SERIES[name]             # every series, in order, 0 included
    for (family, state), value in counts.items():
        assert value == EXPECTED_SOCKETS.get((family, state), 0), (family, state)
        if family != "unix":
            assert value == proc_states(sockets.pid, family)[state], (family, state)
    if name == "unix.prom":
        lines = Path(f"/proc/{sockets.pid}/net/unix").read_text().splitlines()[1:]
        assert sum(counts.values()) == len(lines)
        listening = [line for line in lines if int(line.split()[3], 16) & 0x10000]
        assert counts["unix", "listen"] == len(listening)


def test_a_reader_sees_its_own_network_namespace(mount, sockets):
    """The host's counts are not the namespace's: the test's listener is there."""
    with socket.socket(socket.AF_INET6) as listener:
        listener.bind(("::1", 0))
        listener.listen()
        here = socket_counts(read_metric(mount, "tcp.prom"))
        there = socket_counts(read_metric(mount, "tcp.prom", sockets.pid))
        assert here["tcp6", "listen"] >= 1
        assert there["tcp6", "listen"] == EXPECTED_SOCKETS["tcp6", "listen"]


# On some machines (this one's sandbox) the kernel's task iterators do not show
# pid 1 and its threads; elsewhere they do. Each count is compared with /proc's
# both with and without pid 1's part, the same way for every count.
PID_1 = "1"


def proc_tasks(with_pid_1):
    """(threads by state letter, processes) from a walk of /proc."""
    threads, processes = collections.Counter(), 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or (pid == PID_1 and not with_pid_1):
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        processes += 1
        for tid in tids:
            try:
                stat_line = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            threads[stat_line.rpartition(")")[2].split()[0]] += 1
    return threads, processes


STOPPED_AND_ZOMBIES = r"""
import os, signal, sys
zombies = [os.fork() for _ in range(3)]
if 0 in zombies:
    os._exit(0)
stopped = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        signal.pause()
        os._exit(0)
    os.kill(pid, signal.SIGSTOP)
    stopped.append(pid)
for pid in stopped:
    os.waitpid(pid, os.WUNTRACED)
for pid in zombies:
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
print(" ".join(map(str, stopped + zombies)), flush=True)
sys.stdin.read()
for pid in stopped:
    os.kill(pid, signal.SIGKILL)
"""


def test_threads_by_state_and_processes(mount):
    """Against a walk of /proc just before and just after, at a moment when
    the two agree on what does not flicker (the machine is shared): stopped
    and zombie tasks the test makes, every thread, every process."""
    process = subprocess.Popen([sys.executable, "-c", STOPPED_AND_ZOMBIES],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert len(process.stdout.readline().split()) == 5
        def still(walk):
            threads, processes = walk
            return processes, sum(threads.values()), [threads[s] for s in STILL_STATES]
        for _ in range(40):
            before = proc_tasks(with_pid_1=True)
            samples = parse(read_metric(mount, "tasks.prom"))
            after = proc_tasks(with_pid_1=True)
            if still(before) == still(after):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the tasks never held still for two walks of /proc")
        threads = {s.labels["state"]: s.value for s in samples if s.name == "iterfs_threads"}
        assert list(threads) == list(THREAD_STATES)
        (processes,) = [s.value for s in samples if s.name == "iterfs_processes"]
        if processes != before[1]:
            before = proc_tasks(with_pid_1=False)       # pid 1 stands still
        proc_threads, proc_processes = before
        assert sum(threads.values()) == sum(proc_threads.values())
        assert processes == proc_processes
        assert threads["T"] >= 2 and threads["Z"] >= 3
        for state in STILL_STATES:
            assert threads[state] == proc_threads[state], (state, threads, proc_threads)
    finally:
        process.stdin.close()
        process.wait(timeout=10)


def proc_fds(with_pid_1):
    """File descriptors in every process's table, from a walk of /proc."""
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit() and (pid != PID_1 or with_pid_1):
            try:
                count += len(os.listdir(f"/proc/{pid}/fd"))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass
    return count


def open_files(mount):
    (sample,) = parse(read_metric(mount, "files.prom"))
    assert sample.name == "iterfs_open_files" and not sample.labels
    return sample.value


# How far apart two walks of /proc may be and still count as one moment, on a
# machine whose other processes open and close files meanwhile.
FILES_CHURN = 32
FILES_HOLDER = r"""
import os, sys
held = [os.open("/dev/null", os.O_RDONLY) for _ in range(int(sys.argv[1]))]
print("ready", flush=True)
sys.stdin.read()
"""


def test_open_files_in_all(mount):
    """Against walks of /proc before and after (a few the reading itself holds:
    the reader's file, the daemon's link and iterator), and a process holding
    5,000 more."""
    for _ in range(40):
        before = proc_fds(with_pid_1=True)
        counted = open_files(mount)
        after = proc_fds(with_pid_1=True)
        if abs(before - after) <= FILES_CHURN:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the open files never held still for two walks of /proc")
    pid_1 = before - proc_fds(with_pid_1=False)
    low, high = min(before, after) - FILES_CHURN, max(before, after) + FILES_CHURN
    assert low <= counted <= high or low - pid_1 <= counted <= high - pid_1, \
        (before, after, pid_1, counted)
    holder = subprocess.Popen([sys.executable, "-c", FILES_HOLDER, "5000"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        held = open_files(mount)
    finally:
        holder.kill()
        holder.wait()
    released = open_files(mount)
    # What else opened or closed meanwhile, on a shared machine: a little.
    assert abs((held - released) - 5003) < 500, (held, released)


# -- slab caches --------------------------------------------------------------------

SLAB_METRICS = ("iterfs_slab_objects", "iterfs_slab_object_size_bytes", "iterfs_slab_bytes")
SLAB_ATTEMPTS = 20


def slab_metrics(mount):
    """{metric: {cache: value}} of slab.prom, each metric's samples together and
    each cache once."""
    samples = parse(read_metric(mount, "slab.prom"))
    assert sorted(metric_names(samples)) == sorted(SLAB_METRICS)
    metrics = {name: {} for name in SLAB_METRICS}
    for sample in samples:
        assert list(sample.labels) == ["cache"]
        assert sample.labels["cache"] not in metrics[sample.name], sample
        metrics[sample.name][sample.labels["cache"]] = sample.value
    return metrics


def slab_compared(mount):
    """(/proc/slabinfo before, slab.prom, /proc/slabinfo after), by cache name,
    read where the caches were the same in both reads of /proc and every cache's
    slab bytes lay between them (counters any allocation moves: read again
    where one moved up and back down meanwhile)."""
    for _ in range(SLAB_ATTEMPTS):
        before = {c.name: c for c in slabinfo.parse(slabinfo.read_text(slabinfo.SLABINFO))}
        ours = slab_metrics(mount)
        after = {c.name: c for c in slabinfo.parse(slabinfo.read_text(slabinfo.SLABINFO))}
        if before.keys() != after.keys():
            continue                        # a cache created or destroyed meanwhile
        if not all(cache.keys() == before.keys() for cache in ours.values()):
            continue
        page = os.sysconf("SC_PAGE_SIZE")
        if all(min(before[n].num_slabs, after[n].num_slabs) * before[n].pagesperslab * page
               <= ours["iterfs_slab_bytes"][n] <=
               max(before[n].num_slabs, after[n].num_slabs) * before[n].pagesperslab * page
               for n in before):
            return before, ours, after
    pytest.fail(f"slab.prom and /proc/slabinfo never agreed in {SLAB_ATTEMPTS} reads")


@needs_target("kmem_cache")
def test_slab_caches_against_slabinfo(mount):
    """Every cache /proc/slabinfo lists, once in each metric: its object size
    equal; its slab bytes between /proc's two reads (slab_compared); its objects
    in use equal for nine of ten caches that held still between /proc's reads
    (what the kmem_cache view's test requires, for the same count made without
    SLUB's list_lock: progs/slabinfo.h), and the sum within 1% of all objects."""
    before, ours, after = slab_compared(mount)
    assert len(before) > 50
    assert ours["iterfs_slab_object_size_bytes"] == {n: c.objsize for n, c in before.items()}
    still = [n for n in before if before[n].active_objs == after[n].active_objs]
    assert len(still) > len(before) // 2
    agree = [n for n in still if ours["iterfs_slab_objects"][n] == before[n].active_objs]
    assert len(agree) >= 0.9 * len(still), set(still) - set(agree)
    low, high = sorted(sum(c.active_objs for c in caches.values()) for caches in (before, after))
    slack = slabinfo.ACTIVE_SLACK * sum(c.num_objs for c in before.values())
    assert low - slack <= sum(ours["iterfs_slab_objects"].values()) <= high + slack


@needs_target("kmem_cache")
def test_slab_cache_the_test_grows(mount):
    """uts_namespace, a cache of its own that only new UTS namespaces take from:
    with 1,000 held by the test, its objects in use equal /proc's, read while
    it holds still."""
    holders = Holders(slabinfo.UTS_HOLDER, [slabinfo.NAMESPACES])
    try:
        for _ in range(SLAB_ATTEMPTS):
            before, ours, after = slab_compared(mount)
            cache = slabinfo.GROWN_CACHE
            if before[cache].active_objs == after[cache].active_objs:
                break
        else:
            pytest.fail(f"{slabinfo.GROWN_CACHE} never held still")
    finally:
        holders.close()
    assert ours["iterfs_slab_objects"][cache] == before[cache].active_objs
    assert ours["iterfs_slab_objects"][cache] >= slabinfo.NAMESPACES
    assert ours["iterfs_slab_bytes"][cache] >= slabinfo.NAMESPACES * before[cache].objsize


# -- BPF programs' runs ----------------------------------------------------------------

BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


@contextlib.contextmanager
def bpf_stats_enabled():
    """kernel.bpf_stats_enabled at 1, and back to what it was on the way out."""
    was = BPF_STATS.read_text()
    BPF_STATS.write_text("1\n")
    try:
        yield
    finally:
        BPF_STATS.write_text(was)


def bpftool_programs():
    """{id: (name, run_cnt, run_time_ns)} of `bpftool prog show -j`."""
    shown = json.loads(subprocess.run(["bpftool", "prog", "show", "-j"], check=True,
                                      capture_output=True, text=True, timeout=60).stdout)
    return {p["id"]: (p.get("name", ""), p.get("run_cnt", 0), p.get("run_time_ns", 0))
            for p in shown}


def seconds_as_nanoseconds(value):
    """Seconds written with nine decimals, as nanoseconds, exactly."""
    whole, nanoseconds = value.split(".")
    assert len(nanoseconds) == 9, value
    return int(whole) * 10**9 + int(nanoseconds)


def bpf_program_metrics(mount):
    """{id: (name, runs, run nanoseconds)} of bpf_programs.prom, each metric's
    samples together and each program once in each."""
    return bpf_program_metrics_of(read_metric(mount, "bpf_programs.prom"))


def bpf_program_metrics_of(text):
    samples = parse(text)
    assert sorted(metric_names(samples)) == ["iterfs_bpf_program_run_seconds_total",
                                             "iterfs_bpf_program_runs_total"]
    runs = {int(s.labels["id"]): (s.labels["name"], s.value) for s in samples
            if s.name == "iterfs_bpf_program_runs_total"}
    nanoseconds = {int(s.labels["id"]): (s.labels["name"], seconds_as_nanoseconds(s.value))
                   for s in samples if s.name == "iterfs_bpf_program_run_seconds_total"}
    assert len(runs) == len([s for s in samples if s.name == "iterfs_bpf_program_runs_total"])
    assert runs.keys() == nanoseconds.keys()
    return {id: (name, count, nanoseconds[id][1]) for id, (name, count) in runs.items()}


@needs_target("bpf_prog")
def test_bpf_program_runs_against_bpftool(mount):
    """With kernel.bpf_stats_enabled set by the test (and restored): every
    program loaded throughout, by id and name, its runs and run time between
    bpftool's just before and just after; the mount's tcp6 program ran as
    twice for each time the test read /tcp6 with a socket listening (once for
    the socket, once for the final call) and more."""
    if "tcp6" not in os.listdir(mount.mountpoint):
        pytest.skip("no /tcp6 on this kernel")
    with bpf_stats_enabled(), socket.socket(socket.AF_INET6) as listener:
        listener.bind(("::1", 0))
        listener.listen()
        for _ in range(5):      # a call for the listener, and the final call
            (mount.mountpoint / "tcp6").read_bytes()
        before = bpftool_programs()
        ours = bpf_program_metrics(mount)
        after = bpftool_programs()
    throughout = before.keys() & after.keys()
    assert throughout and throughout <= ours.keys()
    assert ours.keys() <= before.keys() | after.keys()
    for id in throughout:
        name, runs, nanoseconds = ours[id]
        # The kernel keeps 15 characters of a name; bpftool finds the rest in BTF.
        assert name == before[id][0][:15] == after[id][0][:15]
        assert before[id][1] <= runs <= after[id][1], (id, before[id], ours[id], after[id])
        assert before[id][2] <= nanoseconds <= after[id][2], (id, before[id], ours[id], after[id])
    tcp6 = {id: (before[id], ours[id]) for id in throughout if ours[id][0] == "tcp6"}
    assert any(runs >= 5 * 2 and nanoseconds > 0 for _, (_, runs, nanoseconds) in tcp6.values()), \
        tcp6


SOCKET_FILTERS = 1000          # each metric's samples of them: about 70 KiB
BPF_PROG_TYPE_SOCKET_FILTER = 1
RETURN_0 = ((0xb7, 0, 0, 0), (0x95, 0, 0, 0))       # r0 = 0; exit


@contextlib.contextmanager
def socket_filters(count):
    """`count` BPF programs of the test's own (socket filters, r0 = 0), loaded
    while the with lasts: {id: name}."""
    insns = ffi.new("struct bpf_insn[]", RETURN_0)
    fds = []
    try:
        for n in range(count):
            fd = lib.bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, b"metrics_%d" % n, b"GPL",
                                   insns, len(RETURN_0), ffi.NULL)
            assert fd >= 0, os.strerror(-fd)
            fds.append(fd)
        yield {fdinfo_id(fd, "prog_id"): f"metrics_{n}" for n, fd in enumerate(fds)}
    finally:
        for fd in fds:
            os.close(fd)


@needs_target("bpf_prog")
def test_bpf_programs_past_one_seq_file_buffer(mount):
    """With 1,000 more programs loaded by the test, each metric's samples more
    than one seq_file buffer (32 KiB) holds: every one of them in both metrics,
    by id and name, and the text passes promtool."""
    with socket_filters(SOCKET_FILTERS) as loaded:
        text = read_metric(mount, "bpf_programs.prom")
    ours = bpf_program_metrics_of(text)
    assert {id: ours[id][0] for id in loaded} == loaded
    per_metric = len(text.encode()) / 2
    assert per_metric > 32 * 1024
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- a metric of one's own ---------------------------------------------------------

def readme_program(function):
    """The C program of README.md that defines `function`."""
    for block in re.findall(r"```c\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        if f"int {function}(" in block:
            return block
    raise AssertionError(f"README.md has no program {function}")


@needs_target("tcp")
def test_a_drop_in_named_prom_is_a_metric(tmp_path):
    """README's connections.prom.bpf.c, for a port the test listens on: served
    in metrics/, not at the root, its count the connections the test made; a
    program may not take the name `metrics`."""
    programs = tmp_path / "programs"
    programs.mkdir(mode=0o755)
    os.chmod(programs, 0o755)
    with socket.socket(socket.AF_INET6) as listener, contextlib.ExitStack() as held:
        listener.bind(("::1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        source = readme_program("connections").replace("#define PORT 8080",
                                                      f"#define PORT {port}")
        (programs / "connections.prom.bpf.c").write_text(source)
        (programs / "metrics.bpf.c").write_text(source)
        for _ in range(3):
            held.enter_context(socket.create_connection(("::1", port)))
            held.enter_context(listener.accept()[0])
        with running_daemon(tmp_path / "mnt", "--progs", str(programs),
                            "--cache", str(tmp_path / "cache")) as daemon:
            m = daemon.mountpoint
            assert sorted(os.listdir(m)) == ROOT_ENTRIES
            assert sorted(os.listdir(m / METRICS)) == sorted(METRIC_VIEWS + ["connections.prom"])
            # Declared world-readable: node_exporter runs as a user of its own.
            assert stat.S_IMODE(os.stat(m / METRICS / "connections.prom").st_mode) == 0o444
            text = (m / METRICS / "connections.prom").read_text()
            entries = parse_status((m / STATUS).read_text())
    assert text == ("# HELP myapp_connections TCP connections to the service.\n"
                    "# TYPE myapp_connections gauge\n"
                    f'myapp_connections{{port="{port}"}} 3\n')
    if os.path.exists(PROMTOOL):
        checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                                 capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    assert entries["metrics/connections.prom"][:3] == (
        "serving", "tcp", str(programs / "connections.prom.bpf.c"))
    assert entries["metrics"][0] == "skipped"
    assert entries["metrics"][3] == [
        "reason: metrics is the directory of the metric views, no view's name"]


# Two metrics of one target, one program each, the second defined first: their
# walks are read in the order of the programs' names. Each labels the process
# PID by its comm, escaped by metrics.h's metric_label().
COMM_METRICS = r"""
#include "metrics.h"

char LICENSE[] SEC("license") = "GPL";

#define PID 0

SEC("iter/task")
int b_pid(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct metric_label label;

	if (!task)
		return 0;
	if (ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(ctx->meta->seq, "# HELP test_pid The process's pid.\n"
			       "# TYPE test_pid gauge\n");
	if (task->pid != PID)
		return 0;
	metric_label(&label, task->comm);
	BPF_SEQ_PRINTF(ctx->meta->seq, "test_pid{comm=\"%s\"} %d\n", label.escaped, task->pid);
	return 0;
}

SEC("iter/task")
int a_threads(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct metric_label label;

	if (!task)
		return 0;
	if (ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(ctx->meta->seq, "# HELP test_threads The process's threads.\n"
			       "# TYPE test_threads gauge\n");
	if (task->pid != PID)
		return 0;
	metric_label(&label, task->comm);
	BPF_SEQ_PRINTF(ctx->meta->seq, "test_threads{comm=\"%s\"} %d\n", label.escaped,
		       task->signal->nr_threads);
	return 0;
}
"""
# Every byte the format escapes, and a quote where a sample would end.
AWKWARD_COMM = b'a"b\\c\nd} 1'


@needs_target("task")
def test_a_metric_of_two_programs_and_escaped_labels(tmp_path):
    """A drop-in metric of two programs: their walks one after another, in the
    order of their names; a comm with a quote, a backslash and a newline in a
    label, escaped as the format wants (promtool passes, and the value read
    back is the comm). Two programs make no view at the root, nor two targets
    a metric."""
    programs = tmp_path / "programs"
    programs.mkdir(mode=0o755)
    os.chmod(programs, 0o755)
    child = subprocess.Popen(
        [sys.executable, "-c", "import ctypes, sys, time\n"
         "ctypes.CDLL(None).prctl(15, ctypes.c_char_p(bytes.fromhex(sys.argv[1])))\n"
         "print(flush=True)\ntime.sleep(60)\n", AWKWARD_COMM.hex()], stdout=subprocess.PIPE)
    try:
        child.stdout.readline()             # its name is set
        assert Path(f"/proc/{child.pid}/comm").read_bytes() == AWKWARD_COMM + b"\n"
        source = COMM_METRICS.replace("#define PID 0", f"#define PID {child.pid}")
        (programs / "comm.prom.bpf.c").write_text(source)
        (programs / "two.bpf.c").write_text(source)
        (programs / "mixed.prom.bpf.c").write_text(
            source + 'SEC("iter/tcp")\nint c_tcp(struct bpf_iter__tcp *ctx)\n{\n\treturn 0;\n}\n')
        with running_daemon(tmp_path / "mnt", "--progs", str(programs),
                            "--cache", str(tmp_path / "cache")) as daemon:
            text = (daemon.mountpoint / METRICS / "comm.prom").read_text()
            entries = parse_status((daemon.mountpoint / STATUS).read_text())
    finally:
        stop_process(child)
    label = r'a\"b\\c\nd} 1'
    assert text == ("# HELP test_threads The process's threads.\n"
                    "# TYPE test_threads gauge\n"
                    f'test_threads{{comm="{label}"}} 1\n'
                    "# HELP test_pid The process's pid.\n"
                    "# TYPE test_pid gauge\n"
                    f'test_pid{{comm="{label}"}} {child.pid}\n')
    assert [s.labels["comm"] for s in parse(text)] == [AWKWARD_COMM.decode()] * 2
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert entries["metrics/comm.prom"][:2] == ("serving", "task")
    assert entries["two"][0] == "skipped"
    assert entries["two"][3] == [f"reason: {programs / 'two.bpf.c'} has 2 iterator programs, "
                                 "not one"]
    assert entries["metrics/mixed.prom"][0] == "skipped"
    assert entries["metrics/mixed.prom"][3] == [
        f"reason: {programs / 'mixed.prom.bpf.c'}: a metric's iterator programs have one "
        "target, not 2 (task, tcp)"]


# -- node_exporter and Prometheus, the real ones -------------------------------------

def free_port():
    """A port free on 127.0.0.1 in the calling thread's network namespace."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def until(what, probe, timeout, processes=()):
    """probe()'s first true answer, asked until `timeout` seconds; fails
    sooner where one of `processes` exited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for process, log in processes:
            if process.poll() is not None:
                pytest.fail(f"{process.args[0]} exited {process.returncode} waiting for "
                            f"{what}: {Path(log).read_text()[-2000:]}")
        try:
            answer = probe()
            if answer:
                return answer
            last = answer
        except OSError as error:
            last = error
        time.sleep(0.25)
    pytest.fail(f"no {what} after {timeout}s (last: {last!r})")


@contextlib.contextmanager
def started(command, log_path, netns_pid):
    """`command` in process `netns_pid`'s network namespace, its output in
    `log_path`; stopped (SIGTERM, then SIGKILL) on the way out, even after a failure."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(["nsenter", f"--net=/proc/{netns_pid}/ns/net", *command],
                                   stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process)


@pytest.mark.skipif(not (os.path.exists(NODE_EXPORTER) and os.path.exists(PROMETHEUS)),
                    reason="prometheus and prometheus-node-exporter are not installed "
                           "(make setup installs them)")
@needs_target("tcp", "udp", "unix")
def test_prometheus_scrapes_the_sockets_through_node_exporter(mount, sockets, tmp_path):
    """node_exporter's textfile collector pointed at metrics/ (its other
    collectors off) and Prometheus scraping it every second, both on
    127.0.0.1 in the sockets' network namespace: a PromQL query gives the
    counts of the sockets the test made there. Their own connections are
    IPv4 TCP: the tcp6, udp, udp6 and unix counts are the test's alone."""
    with network_namespace_of(sockets.pid):
        exporter_port, prometheus_port = free_port(), free_port()
        while prometheus_port == exporter_port:
            prometheus_port = free_port()
    exporter_log, prometheus_log = tmp_path / "node_exporter.log", tmp_path / "prometheus.log"
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({        # YAML takes JSON
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "iterfs", "static_configs": [
            {"targets": [f"127.0.0.1:{exporter_port}"]}]}]}))
    checked = subprocess.run([PROMTOOL, "check", "config", str(config)], capture_output=True,
                             text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    exporter_command = [
        NODE_EXPORTER, "--collector.disable-defaults", "--collector.textfile",
        f"--collector.textfile.directory={mount.mountpoint / METRICS}",
        f"--web.listen-address=127.0.0.1:{exporter_port}"]
    prometheus_command = [
        PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}"]
    with started(exporter_command, exporter_log, sockets.pid) as exporter, \
            started(prometheus_command, prometheus_log, sockets.pid) as prometheus:
        watched = [(exporter, exporter_log), (prometheus, prometheus_log)]
        with network_namespace_of(sockets.pid):
            exported = until("node_exporter's metrics", lambda: http_get(
                f"http://127.0.0.1:{exporter_port}/metrics"), START_TIMEOUT, watched)
            assert "node_textfile_scrape_error 0" in exported, exported
            until("Prometheus ready", lambda: http_get(
                f"http://127.0.0.1:{prometheus_port}/-/ready"), START_TIMEOUT, watched)
            query = urllib.parse.urlencode({"query": 'iterfs_sockets{family!="tcp"}'})

            def scraped():
                answer = json.loads(http_get(
                    f"http://127.0.0.1:{prometheus_port}/api/v1/query?{query}"))
                assert answer["status"] == "success", answer
                found = {(r["metric"]["family"], r["metric"]["state"]): int(r["value"][1])
                         for r in answer["data"]["result"]}
                return found if len(found) == 2 * 2 + 3 + 11 else None
            found = until("iterfs_sockets in Prometheus", scraped, SCRAPE_TIMEOUT, watched)
            result = json.loads(http_get(
                f"http://127.0.0.1:{prometheus_port}/api/v1/query?" +
                urllib.parse.urlencode({"query": "up"})))["data"]["result"]
    assert [r["value"][1] for r in result] == ["1"]
    assert found == {series: EXPECTED_SOCKETS.get(series, 0)
                     for name in SERIES for series in SERIES[name] if series[0] != "tcp"}
    for process, _ in watched:
        assert process.returncode in (0, -15), (process.args[0], process.returncode)
