"""udp, udp6: /proc/net/udp and /proc/net/udp6 reproduced by BPF programs, compared
line for line."""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import OpenSockets, ROOT, needs_view, read_in_chunks, read_quiet

pytestmark = needs_view('udp', 'udp6')

# udp4_seq_show pads every line to 127 characters (seq_setwidth); udp6 does not pad.
UDP_WIDTH = 127
HEADERS = {
    "udp": ("   sl  local_address rem_address   st tx_queue rx_queue tr tm->when "
            "retrnsmt   uid  timeout inode ref pointer drops").ljust(UDP_WIDTH),
    "udp6": ("  sl  local_address                         remote_address                "
             "        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref "
             "pointer drops"),
}
FAMILIES = {"udp": socket.AF_INET, "udp6": socket.AF_INET6}
LOOPBACK = {"udp": "127.0.0.1", "udp6": "::1"}
WILDCARD = {"udp": "0.0.0.0", "udp6": "::"}
UDP_CORK = 1
OTHER_UID = 12345
# UDP sockets show TCP's state numbers: connected, or not.
TCP_ESTABLISHED, TCP_CLOSE = "01", "07"
# A whole line of each file, for reads with no quiet moment to compare with /proc.
LINE = {
    "udp": re.compile(r"^ *\d+: [0-9A-F]{8}:[0-9A-F]{4} [0-9A-F]{8}:[0-9A-F]{4} [0-9A-F]{2} "
                      r"[0-9A-F]{8}:[0-9A-F]{8} 00:00000000 00000000 +\d+ +0 \d+ -?\d+ "
                      r"[0-9a-f]{16} \d+ *$"),
    "udp6": re.compile(r"^ *\d+: [0-9A-F]{32}:[0-9A-F]{4} [0-9A-F]{32}:[0-9A-F]{4} [0-9A-F]{2} "
                       r"[0-9A-F]{8}:[0-9A-F]{8} 00:00000000 00000000 +\d+ +0 \d+ -?\d+ "
                       r"[0-9a-f]{16} \d+$"),
}
REF = re.compile(r"^(\s*\d+:(?: +\S+){9} +)-?\d+ ")


def without_ref(lines):
    """Lines with the ref column blanked: it counts the references held at the
    moment, and another reader's iterator holds the sockets it is showing."""
    return [REF.sub(r"\1- ", line) for line in lines]


class Row:
    """One line of /proc/net/udp{,6}, split into its columns."""

    def __init__(self, line):
        fields = line.split()
        self.line = line
        self.sl = int(fields[0].rstrip(":"))
        self.local, self.remote, self.state = fields[1], fields[2], fields[3]
        tx_queue, rx_queue = fields[4].split(":")
        self.tx_queue, self.rx_queue = int(tx_queue, 16), int(rx_queue, 16)
        self.uid, self.inode, self.ref = int(fields[7]), fields[9], int(fields[10])
        self.drops = int(fields[12])

    @property
    def key(self):
        return self.inode if self.inode != "0" else (self.local, self.remote)


def rows(lines):
    return [Row(line) for line in lines[1:]]


def by_key(lines):
    return {row.key: row.line for row in rows(lines)}


def inode(sock):
    return str(os.fstat(sock.fileno()).st_ino)


def read_view(mount, view):
    return read_quiet(f"/proc/net/{view}", mount.mountpoint / view)


def read_view_in_chunks(mount, view, size, attempts=10):
    """(proc lines, our lines) read in `size` chunks at a quiet moment."""
    proc_path = Path(f"/proc/net/{view}")
    for _ in range(attempts):
        before = proc_path.read_text()
        ours = read_in_chunks(mount.mountpoint / view, size)
        after = proc_path.read_text()
        if before == after:
            return before.splitlines(), ours.splitlines()
        time.sleep(0.05)
    pytest.fail(f"{proc_path} kept changing")


class Sockets(OpenSockets):
    """UDP sockets the test opens, closed at exit."""

    def open(self, family, reuseport=False, v6only=None):
        sock = self.keep(socket.socket(family, socket.SOCK_DGRAM))
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if v6only is not None:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        return sock

    def bound(self, family, host, port=0, **options):
        sock = self.open(family, **options)
        sock.bind((host, port))
        return sock

    def connected(self, family, host, port, **options):
        sock = self.open(family, **options)
        sock.connect((host, port))
        return sock

@pytest.fixture
def sockets():
    with Sockets() as s:
        yield s


OWNER = r"""
import os, socket, sys
os.setgid(int(sys.argv[1]))
os.setuid(int(sys.argv[1]))
v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
v4.bind(("127.0.0.1", 0))
v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
v6.bind(("::1", 0))
print(os.fstat(v4.fileno()).st_ino, os.fstat(v6.fileno()).st_ino, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def other_owner():
    """A process of another uid holding a v4 and a v6 socket: {view: inode}."""
    with subprocess.Popen([sys.executable, "-c", OWNER, str(OTHER_UID)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as process:
        try:
            v4, v6 = process.stdout.readline().split()
            yield {"udp": v4, "udp6": v6}
        finally:
            process.kill()


def wait_for(predicate, timeout=2.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def proc_row(view, sock):
    wanted = inode(sock)
    for row in rows(Path(f"/proc/net/{view}").read_text().splitlines()):
        if row.inode == wanted:
            return row
    return None


def every_kind(sockets, view):
    """Sockets in every shape /proc/net/<view> shows differently. Returns them by kind."""
    family, loopback = FAMILIES[view], LOOPBACK[view]
    kinds = {}
    kinds["specific"] = sockets.bound(family, loopback)
    kinds["wildcard"] = sockets.bound(family, WILDCARD[view])
    kinds["connected"] = sockets.connected(family, loopback, kinds["specific"].getsockname()[1])

    # Datagrams queued and not read: rx_queue.
    queued = kinds["queued"] = sockets.bound(family, loopback)
    for _ in range(3):
        kinds["connected"].sendto(b"q" * 100, queued.getsockname())

    # A small receive buffer that overflows: drops.
    dropping = kinds["dropping"] = sockets.bound(family, loopback)
    dropping.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    sender = sockets.open(family)
    for _ in range(64):
        sender.sendto(b"d" * 1000, dropping.getsockname())

    # A corked socket holding data it has not sent: tx_queue.
    corked = kinds["corked"] = sockets.connected(family, loopback, queued.getsockname()[1])
    corked.setsockopt(socket.IPPROTO_UDP, UDP_CORK, 1)
    corked.send(b"c" * 500)

    # One address and port shared: one /proc slot, one batch of the iterator.
    group = kinds["reuseport"] = [sockets.bound(family, loopback, reuseport=True)]
    port = group[0].getsockname()[1]
    group += [sockets.bound(family, loopback, port, reuseport=True) for _ in range(4)]

    if view == "udp6":     # IPv4 traffic on IPv6 sockets is udp6's
        v4_peer = sockets.bound(socket.AF_INET, "127.0.0.1")
        kinds["mapped"] = sockets.bound(family, "::ffff:127.0.0.1", v6only=0)
        kinds["mapped_connected"] = sockets.connected(
            family, "::ffff:127.0.0.1", v4_peer.getsockname()[1], v6only=0)
        kinds["mapped_wildcard"] = sockets.bound(family, "::", v6only=0)
        v4_peer.sendto(b"m" * 100, ("127.0.0.1", kinds["mapped_wildcard"].getsockname()[1]))

    wait_for(lambda: (proc_row(view, queued).rx_queue > 0
                      and proc_row(view, dropping).drops > 0
                      and (view == "udp" or proc_row(view, kinds["mapped_wildcard"]).rx_queue)))
    return kinds


@pytest.mark.parametrize("view", ["udp", "udp6"])
@pytest.mark.kernel
def test_same_lines_as_proc(mount, sockets, other_owner, view):
    kinds = every_kind(sockets, view)
    proc, ours = read_view(mount, view)
    assert ours[0] == HEADERS[view] == proc[0]
    assert ours == proc

    shown = {row.inode: row for row in rows(ours)}
    assert shown[inode(kinds["queued"])].rx_queue > 0
    assert shown[inode(kinds["dropping"])].drops > 0
    assert shown[inode(kinds["corked"])].tx_queue > 0
    assert shown[inode(kinds["connected"])].state == TCP_ESTABLISHED
    assert shown[inode(kinds["specific"])].state == TCP_CLOSE
    assert shown[other_owner[view]].uid == OTHER_UID
    if view == "udp":
        assert all(len(line) >= UDP_WIDTH for line in ours), "udp pads every line"
    else:
        assert shown[inode(kinds["mapped_connected"])].remote.startswith(
            "0000000000000000FFFF0000")
        assert shown[inode(kinds["mapped_wildcard"])].rx_queue > 0


@pytest.mark.parametrize("view", ["udp", "udp6"])
@pytest.mark.kernel
def test_rows_match_by_inode(mount, sockets, other_owner, view):
    """Each of the test's sockets has its own line, and it is /proc's line."""
    every_kind(sockets, view)
    proc, ours = read_view(mount, view)
    ours_rows, proc_rows = by_key(ours), by_key(proc)
    mine = {inode(s) for s in sockets.all if s.family == FAMILIES[view]}
    assert mine | {other_owner[view]} <= ours_rows.keys()
    assert ours_rows == proc_rows


@pytest.mark.parametrize("view", ["udp", "udp6"])
def test_other_family_not_shown(mount, sockets, view):
    other = "udp6" if view == "udp" else "udp"
    theirs = [sockets.bound(FAMILIES[other], LOOPBACK[other]) for _ in range(5)]
    proc, ours = read_view(mount, view)
    assert ours == proc
    assert not {inode(s) for s in theirs} & by_key(ours).keys()


@pytest.mark.parametrize("view", ["udp", "udp6"])
def test_sl_is_the_port_slot(mount, sockets, view):
    """`sl` is the slot of the port in the kernel's UDP table, in table order, as
    /proc prints it: not a count, and not the iterator's own (address) slot."""
    family, loopback = FAMILIES[view], LOOPBACK[view]
    group = [sockets.bound(family, loopback, reuseport=True)]
    port = group[0].getsockname()[1]
    group += [sockets.bound(family, loopback, port, reuseport=True) for _ in range(3)]
    # Same port, other addresses: the same port slot, other address slots.
    group.append(sockets.bound(family, WILDCARD[view], port, reuseport=True))
    for _ in range(20):
        sockets.bound(family, loopback)

    proc, ours = read_view(mount, view)
    assert ours == proc
    shown = rows(ours)
    slots = [row.sl for row in shown]
    assert slots == sorted(slots)
    assert slots != list(range(len(slots)))
    group_slots = {row.sl for row in shown if row.inode in {inode(s) for s in group}}
    assert len(group_slots) == 1


@pytest.mark.parametrize("view", ["udp", "udp6"])
def test_ref_does_not_count_the_iterator(mount, sockets, view):
    """The iterator holds a reference on each socket of the batch it is showing
    (one address slot); /proc holds none. A reuseport group is one batch."""
    family, loopback = FAMILIES[view], LOOPBACK[view]
    group = [sockets.bound(family, loopback, reuseport=True)]
    port = group[0].getsockname()[1]
    group += [sockets.bound(family, loopback, port, reuseport=True) for _ in range(7)]
    proc, ours = read_view(mount, view)
    ours_rows, proc_rows = by_key(ours), by_key(proc)
    for sock in group:
        assert ours_rows[inode(sock)] == proc_rows[inode(sock)]
        assert Row(ours_rows[inode(sock)]).ref == 2     # its file and its hash tables


NAMESPACE_READER = r"""
import json, os, socket, sys
sys.path.insert(0, sys.argv[1])
from iterfs import bpf

def read_view(view):
    with bpf.load(os.path.join(sys.argv[1], "build", "progs", view + ".bpf.o")) as obj:
        with obj.program(view).attach_iterator() as link:
            with link.open() as stream:
                return stream.read().decode()

def both():
    return {view: [read_view(view), open("/proc/net/" + view).read()]
            for view in ("udp", "udp6")}

empty = both()
held = [socket.socket(family, socket.SOCK_DGRAM) for family in
        (socket.AF_INET, socket.AF_INET, socket.AF_INET6, socket.AF_INET6)]
for sock, host in zip(held, ("0.0.0.0", "0.0.0.0", "::", "::")):
    sock.bind((host, 0))
inodes = [str(os.fstat(sock.fileno()).st_ino) for sock in held]
print(json.dumps({"empty": empty, "held": both(), "inodes": inodes}))
"""


@pytest.mark.kernel
def test_only_the_readers_network_namespace(sockets):
    """The kernel's UDP table is shared by all network namespaces: a reader in a
    new one sees only its own sockets, and an empty table is the header alone."""
    outside = [sockets.bound(socket.AF_INET, "0.0.0.0"),
               sockets.bound(socket.AF_INET6, "::")]
    result = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", NAMESPACE_READER, str(ROOT)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    for view in ("udp", "udp6"):
        ours, proc = seen["empty"][view]
        assert ours == proc == HEADERS[view] + "\n"
        ours, proc = seen["held"][view]
        assert ours == proc
        shown = by_key(ours.splitlines()).keys()
        assert len(shown) == 2 and shown <= set(seen["inodes"])
    assert not {inode(s) for s in outside} & set(seen["inodes"])


END_READER = r"""
import json, os, socket, sys
sys.path.insert(0, sys.argv[1])
from iterfs import bpf

held = []

def bind_more():
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")) * 2:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        held.append(sock)

bind_more()
seen = {}
for view in ("udp", "udp6"):
    with bpf.load(os.path.join(sys.argv[1], "build", "progs", view + ".bpf.o")) as obj:
        with obj.program(view).attach_iterator() as link:
            with link.open() as stream:
                whole = os.read(stream.fileno(), 1 << 20)
                proc = open("/proc/net/" + view).read()
                bind_more()
                after = os.read(stream.fileno(), 1 << 20)
    seen[view] = [whole.decode(), proc, after.decode()]
print(json.dumps(seen))
"""


@pytest.mark.kernel
def test_the_read_at_the_end_returns_nothing(sockets):
    """The read() after the last line, which says end of file, ends the file even
    if sockets came meanwhile. Before 6.5 the kernel's iterator finds its place
    again by counting sockets from the table's start, so it finds those and calls
    the program again after its final call: the walk must not start over."""
    result = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", END_READER, str(ROOT)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    for view in ("udp", "udp6"):
        whole, proc, after = seen[view]
        assert whole == proc and len(whole.splitlines()) > 1
        assert after == ""


def test_readers_do_not_mix(mount, sockets):
    """Two readers of one view, read in turns, each get the whole file: each walk
    is its own. More text than the daemon reads ahead, so the walks interleave."""
    for _ in range(2500):
        sockets.bound(socket.AF_INET, "127.0.0.1")
    path = mount.mountpoint / "udp"
    for _ in range(10):
        before = Path("/proc/net/udp").read_text()
        first, second = os.open(path, os.O_RDONLY), os.open(path, os.O_RDONLY)
        try:
            texts = [[], []]
            while True:
                a, b = os.read(first, 4096), os.read(second, 1000)
                texts[0].append(a)
                texts[1].append(b)
                if not a and not b:
                    break
        finally:
            os.close(first)
            os.close(second)
        if Path("/proc/net/udp").read_text() == before:
            break
        time.sleep(0.05)
    else:
        pytest.fail("/proc/net/udp kept changing")
    assert len(before) > 2 * 128 * 1024
    for text in texts:
        assert without_ref(b"".join(text).decode().splitlines()) == without_ref(
            before.splitlines())


@pytest.mark.parametrize("view", ["udp", "udp6"])
def test_thousands_of_sockets_stream_in_any_read_size(mount, sockets, view):
    family, loopback = FAMILIES[view], LOOPBACK[view]
    for _ in range(2500):
        sockets.bound(family, loopback)
    for _ in range(500):
        sockets.bound(family, WILDCARD[view])
    group = [sockets.bound(family, loopback, reuseport=True)]
    port = group[0].getsockname()[1]
    group += [sockets.bound(family, loopback, port, reuseport=True) for _ in range(300)]

    for size in (333, 4096, 1 << 20):
        proc, ours = read_view_in_chunks(mount, view, size)
        assert len(proc) > 3300
        assert ours == proc, f"read size {size}"


@pytest.mark.parametrize("view", ["udp", "udp6"])
def test_reading_while_sockets_come_and_go(mount, sockets, view):
    """No quiet moment to compare with: the file still has one header, whole
    lines and /proc's slot order, whatever the read size."""
    family, loopback = FAMILIES[view], LOOPBACK[view]
    for _ in range(1500):
        sockets.bound(family, loopback)
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            batch = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(100)]
            try:
                for sock in batch:
                    sock.bind((loopback, 0))
            finally:
                for sock in batch:
                    sock.close()

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        for size in (333, 4096, 1 << 20) * 3:
            lines = read_in_chunks(mount.mountpoint / view, size).splitlines()
            assert lines[0] == HEADERS[view]
            assert all(LINE[view].match(line) and (view == "udp6" or len(line) >= UDP_WIDTH)
                       for line in lines[1:]), f"read size {size}"
            slots = [int(line.split(":")[0]) for line in lines[1:]]
            assert slots == sorted(slots) and len(slots) >= 1500
    finally:
        stop.set()
        churner.join()
