"""tcp: /proc/net/tcp reproduced by a BPF program, compared line for line."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (kill_quietly, needs_view, network_namespace_of, process_fds,
                      read_in_chunks, read_quiet, running_daemon)

pytestmark = needs_view('tcp')
from test_tcp6 import TCP_DEFER_ACCEPT, Sockets, normalised

HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
          "timeout inode")
WIDTH = 149             # tcp4_seq_show: seq_setwidth(seq, TMPSZ - 1), then seq_pad
LOOPBACK = "127.0.0.1"
NOBODY = 65534
TCP_FASTOPEN = 23


def read_tcp(mount):
    return read_quiet("/proc/net/tcp", mount.mountpoint / "tcp", normalised)


def same_as_proc(mount, attempts=5):
    """(proc, ours) once they are equal, or the last pair read. A counter that
    moves and moves back between the reads (a zero-window probe answered) is
    not seen by read_quiet, so a difference is read again before it counts."""
    for _ in range(attempts):
        proc, ours = read_tcp(mount)
        if ours == proc:
            break
        time.sleep(0.1)
    return proc, ours


class ChunkedRead:
    """read_quiet's `read`: the file through os.read() calls of `size` bytes.
    It keeps the text last read, newlines and all, which read_quiet splits."""

    def __init__(self, size):
        self.size = size
        self.text = None

    def __call__(self, path):
        self.text = read_in_chunks(path, self.size)
        return self.text


def rows_by_key(lines):
    """{inode, or (local, remote, st) where the inode is 0: the line after sl}."""
    rows = {}
    for line in lines[1:]:
        fields = line.split()
        key = fields[9] if fields[9] != "0" else tuple(fields[1:4])
        rows[key] = line.split(":", 1)[1]
    return rows


def inode(sock):
    return str(os.fstat(sock.fileno()).st_ino)


def listener(sockets, host=LOOPBACK, backlog=16, receive_buffer=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sockets.keep(s)
    if receive_buffer:                  # inherited by the sockets it accepts
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    s.bind((host, 0))
    s.listen(backlog)
    return s


def pair(sockets, listener):
    return sockets.pair(listener, host=LOOPBACK)


def fill(sock):
    """Send until the peer, which never reads, closes its window."""
    sock.setblocking(False)
    try:
        while True:
            sock.send(b"x" * 65536)
    except BlockingIOError:
        pass


@pytest.fixture
def sockets():
    with Sockets() as s:
        yield s


NOBODYS_SOCKETS = r"""
import encodings.idna, os, socket, sys   # idna: before the interpreter is out of reach
os.setgid(65534)
os.setuid(65534)        # only now: the interpreter may live where nobody cannot read
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)
deferred = socket.socket()
deferred.setsockopt(socket.IPPROTO_TCP, 9, 30)      # TCP_DEFER_ACCEPT
deferred.bind(("127.0.0.1", 0))
deferred.listen(8)
client = socket.create_connection(listener.getsockname())
server, _ = listener.accept()
print(deferred.getsockname()[1], flush=True)
sys.stdin.read()
"""


@pytest.fixture
def nobody():
    """A process of uid 65534 holding a listener, a connection and a deferring
    listener: its lines, and its request socket's, show uid 65534."""
    with subprocess.Popen([sys.executable, "-c", NOBODYS_SOCKETS], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as process:
        try:
            process.deferred_port = int(process.stdout.readline())
            yield process
        finally:
            kill_quietly(process)


def every_state(sockets, nobody):
    """Sockets in each state and with each timer /proc/net/tcp distinguishes."""
    main = listener(sockets)
    listener(sockets, host="0.0.0.0")
    listener(sockets).setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 5)   # last column: 5
    for _ in range(3):
        pair(sockets, main)                                         # ESTABLISHED
    client, _ = pair(sockets, main)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)   # keepalive timer (2)
    client, _ = pair(sockets, main)
    client.send(b"x" * 3000)                                        # rx_queue
    sockets.keep(socket.create_connection((LOOPBACK, main.getsockname()[1])))  # unaccepted

    client, server = pair(sockets, listener(sockets))
    server.close()          # FIN_WAIT2 as a time-wait socket, inode 0; client CLOSE_WAIT
    client, server = pair(sockets, listener(sockets))
    client.shutdown(socket.SHUT_WR)     # FIN_WAIT2, a full socket; server CLOSE_WAIT
    client, server = pair(sockets, listener(sockets))
    client.close()
    server.close()                      # the client's side goes to TIME_WAIT

    # Peers that never read: data waits behind a zero window (tx_queue, timer 4).
    closed_window = listener(sockets, receive_buffer=4096)
    client, _ = pair(sockets, closed_window)
    fill(client)                                                    # ESTABLISHED
    client, _ = pair(sockets, closed_window)
    fill(client)
    client.close()                      # FIN_WAIT1: the FIN waits behind the data
    client, server = pair(sockets, closed_window)
    server.shutdown(socket.SHUT_WR)     # the client is in CLOSE_WAIT ...
    fill(client)
    client.close()                      # ... and goes to LAST_ACK

    syn_sent(sockets)
    syn_recv(sockets)
    sockets.keep(socket.create_connection((LOOPBACK, nobody.deferred_port)))  # of uid 65534
    time.sleep(0.2)


def syn_sent(sockets):
    """A connection whose SYNs a full accept queue drops: SYN_SENT, timer 1."""
    full = listener(sockets, backlog=0)
    sockets.keep(socket.create_connection((LOOPBACK, full.getsockname()[1])))
    time.sleep(0.05)
    client = sockets.keep(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    client.setblocking(False)
    client.connect_ex((LOOPBACK, full.getsockname()[1]))
    return client


def syn_recv(sockets):
    """A connection that never sends: the deferring listener keeps a request
    socket (SYN_RECV) and the client's port names it."""
    deferred = listener(sockets)
    deferred.setsockopt(socket.IPPROTO_TCP, TCP_DEFER_ACCEPT, 30)
    return sockets.keep(socket.create_connection((LOOPBACK, deferred.getsockname()[1])))


@pytest.mark.kernel
def test_same_lines_as_proc(mount, sockets, nobody):
    every_state(sockets, nobody)
    proc, ours = same_as_proc(mount)
    assert ours[0] == HEADER.ljust(WIDTH) == proc[0]
    assert ours == proc
    fields = [line.split() for line in ours[1:]]
    states = {f[3] for f in fields}
    assert {"01", "02", "03", "04", "05", "06", "08", "09", "0A"} <= states, states
    assert "5" in {f[-1] for f in fields if f[3] == "0A"}     # fastopen queue length
    timers = {f[5][:2] for f in fields}
    assert {"00", "01", "02", "03", "04"} <= timers, timers
    assert {("0A", "65534"), ("01", "65534"), ("03", "65534")} <= {(f[3], f[7]) for f in fields}


def test_retransmissions_counted(mount, sockets):
    """retrnsmt once SYN and SYN-ACK have been sent again (after a second)."""
    ports = {"%04X" % syn_sent(sockets).getsockname()[1],
             "%04X" % syn_recv(sockets).getsockname()[1]}
    deadline = time.monotonic() + 10
    while True:
        proc, ours = same_as_proc(mount)
        fields = [line.split() for line in proc[1:]]
        counts = {f[3]: int(f[6], 16) for f in fields
                  if f[3] in ("02", "03") and {f[1][-4:], f[2][-4:]} & ports}
        if (len(counts) == 2 and min(counts.values()) >= 1) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(counts) == 2 and min(counts.values()) >= 1, counts
    assert ours == proc


def test_lines_padded_as_proc_pads_them(mount, sockets):
    pair(sockets, listener(sockets))
    text = (mount.mountpoint / "tcp").read_bytes()
    assert text.endswith(b"\n") and b"\0" not in text
    for line in text.decode().split("\n")[:-1]:
        assert len(line) == WIDTH or (len(line) > WIDTH and line[-1] != " "), repr(line)


@pytest.mark.kernel
def test_rows_match_by_inode(mount, sockets, nobody):
    """Each of the test's sockets has its own /proc line, found by inode."""
    every_state(sockets, nobody)
    proc, ours = same_as_proc(mount)
    ours_rows, proc_rows = rows_by_key(ours), rows_by_key(proc)
    inodes = {inode(s) for s in sockets.all if s.fileno() >= 0}
    inodes |= {path[len("socket:["):-1] for path in process_fds(nobody.pid).values()
               if path.startswith("socket:[")}
    assert len(inodes) > 30
    assert inodes <= ours_rows.keys()
    assert ours_rows == proc_rows


def test_ipv4_mapped_connections_belong_to_tcp6(mount, sockets):
    """An AF_INET6 socket is left to tcp6 even when its peer is IPv4."""
    dual = sockets.listener(family=socket.AF_INET6, host="::")
    client, server = pair(sockets, dual)
    v6_only = sockets.listener()
    v6_client, v6_server = sockets.pair(v6_only)
    proc, ours = same_as_proc(mount)
    assert ours == proc
    ours_rows = rows_by_key(ours)
    assert inode(client) in ours_rows
    for s in (dual, server, v6_only, v6_client, v6_server):
        assert inode(s) not in ours_rows
    tcp6_text = Path("/proc/net/tcp6").read_text()
    assert inode(server) in {line.split()[9] for line in tcp6_text.splitlines()[1:]}


def test_sl_counts_only_ipv4_sockets(mount, sockets):
    v6 = sockets.listener()
    for _ in range(5):
        sockets.pair(v6)
    v4 = listener(sockets)
    for _ in range(5):
        pair(sockets, v4)
    lines = (mount.mountpoint / "tcp").read_text().splitlines()[1:]
    assert [int(line.split(":")[0]) for line in lines] == list(range(len(lines)))
    assert len(lines) >= 11


def test_empty_table_has_the_header_alone(tmp_path):
    # A reader in a network namespace of its own sees no socket at all, whichever
    # namespace the daemon is in (here one of its own too).
    with running_daemon(tmp_path / "mnt", prefix=("unshare", "--net")) as daemon, \
            socket.socket() as host_listener:
        host_listener.bind(("127.0.0.1", 0))
        host_listener.listen()
        host_port = host_listener.getsockname()[1]
        path = daemon.mountpoint / "tcp"
        ours, proc = subprocess.run(
            ["unshare", "--net", "sh", "-c", f"cat {path} && echo = && cat /proc/net/tcp"],
            check=True, capture_output=True, text=True).stdout.split("=\n")
        from_host = path.read_text()
    assert ours == proc == HEADER.ljust(WIDTH) + "\n"
    assert f":{host_port:04X} " in from_host


STILL_SOCKETS = r"""
import socket, time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)
any_address = socket.socket()
any_address.bind(("0.0.0.0", 0))
any_address.listen(8)
held = [socket.create_connection(listener.getsockname()) for _ in range(4)]
held += [listener.accept()[0] for _ in range(3)]
held[0].send(b"x" * 3000)
# The delayed-ACK timer holds a reference for a while: wait for a still file.
still, since = None, time.monotonic()
while time.monotonic() - since < 0.5:
    if (text := open("/proc/net/tcp").read()) != still:
        still, since = text, time.monotonic()
    time.sleep(0.02)
print("ready", flush=True)
input()
"""


def test_byte_for_byte_where_nothing_else_moves(tmp_path):
    """In a network namespace of its own nobody else's sockets come and go and
    these run no timer: the file is compared whole, unnormalised."""
    with running_daemon(tmp_path / "mnt", prefix=("unshare", "--net")) as daemon:
        with subprocess.Popen(
                ["nsenter", f"--net=/proc/{daemon.pid}/ns/net", "sh", "-c",
                 'ip link set lo up && exec "$0" -c "$1"', sys.executable, STILL_SOCKETS],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
            try:
                assert holder.stdout.readline() == "ready\n"
                for size in (4096, 1 << 20, 333):
                    read = ChunkedRead(size)
                    with network_namespace_of(daemon.pid):
                        proc, ours = read_quiet("/proc/thread-self/net/tcp",
                                                daemon.mountpoint / "tcp", read=read)
                    assert read.text == "".join(line + "\n" for line in proc), size
            finally:
                kill_quietly(holder)
    assert len(proc) == 1 + 2 + 4 + 4         # the unaccepted one has its line too
    assert {line.split()[3] for line in proc[1:]} == {"0A", "01"}
    assert any(line.split()[4] == "00000000:00000BB8" for line in proc)  # rx_queue 3000
    assert all(line.split()[5] == "00:00000000" for line in proc[1:])


def test_thousands_of_sockets_stream_in_any_read_size(mount, sockets):
    many = listener(sockets, backlog=4096)
    for _ in range(1500):
        pair(sockets, many)
    for size in (4096, 1 << 20, 333):
        read = ChunkedRead(size)
        # Slow reads on a busy machine: more tries before churn counts as failure.
        proc, ours = read_quiet("/proc/net/tcp", mount.mountpoint / "tcp", normalised,
                                read=read, attempts=50)
        assert len(proc) > 3000
        assert ours == proc, f"read size {size}"
        assert read.text.endswith("\n") and read.text.count("\n") == len(ours)
