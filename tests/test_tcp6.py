"""tcp6: /proc/net/tcp6 reproduced by a BPF program, compared line for line."""

import os
import re
import socket
import subprocess
import time

import pytest

from conftest import (OpenSockets, hold_sockets, needs_view, network_namespace_of,
                      read_in_chunks, read_quiet, running_daemon)

pytestmark = needs_view('tcp6')

HEADER = ("  sl  local_address                         remote_address                        "
          "st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode")
TIMER = re.compile(r"^(\s*\d+: \S+ \S+ \S\S \S+ \S\S:)[0-9A-F]{8}")
TCP_DEFER_ACCEPT = 9


def normalised(lines):
    """Lines with the timer column blanked: it ticks between two reads."""
    return [TIMER.sub(r"\1--------", line) for line in lines]


def read_tcp6(mount):
    return read_quiet("/proc/net/tcp6", mount.mountpoint / "tcp6", normalised)


class Sockets(OpenSockets):
    """TCP sockets in every state /proc/net/tcp6 distinguishes, closed at exit."""

    def listener(self, family=socket.AF_INET6, host="::1", backlog=16):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind((host, 0))
        s.listen(backlog)
        return self.keep(s)

    def pair(self, listener, host="::1"):
        client = socket.create_connection((host, listener.getsockname()[1]))
        server, _ = listener.accept()
        return self.keep(client, server)

@pytest.fixture
def sockets():
    with Sockets() as s:
        yield s


def every_state(sockets):
    listener = sockets.listener()
    sockets.listener(host="::")
    sockets.listener(family=socket.AF_INET, host="127.0.0.1")   # not shown in tcp6
    for _ in range(3):
        sockets.pair(listener)
    client, _ = sockets.pair(listener)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)       # keepalive timer
    client, _ = sockets.pair(listener)
    client.send(b"x" * 3000)                                            # rx_queue
    client, server = sockets.pair(sockets.listener())
    server.close()                      # FIN_WAIT2, orphaned: inode 0; client CLOSE_WAIT
    client, server = sockets.pair(sockets.listener())
    client.close()
    server.close()                      # the client's side goes to TIME_WAIT
    deferred = sockets.listener()
    deferred.setsockopt(socket.IPPROTO_TCP, TCP_DEFER_ACCEPT, 30)
    sockets.keep(socket.create_connection(("::1", deferred.getsockname()[1])))  # SYN_RECV
    sockets.keep(socket.create_connection(("::1", listener.getsockname()[1])))  # unaccepted
    sockets.pair(sockets.listener(host="::"), host="127.0.0.1")   # IPv4-mapped addresses
    time.sleep(0.2)


@pytest.mark.kernel
def test_same_lines_as_proc(mount, sockets):
    every_state(sockets)
    proc, ours = read_tcp6(mount)
    assert ours[0] == HEADER == proc[0]
    assert ours == proc
    states = {line.split()[3] for line in ours[1:]}
    assert {"01", "06", "08", "0A", "05", "03"} <= states, states


@pytest.mark.kernel
def test_rows_match_by_inode(mount, sockets):
    """Each of the test's sockets has its own /proc line, found by inode."""
    every_state(sockets)
    proc, ours = read_tcp6(mount)

    def by_key(lines):
        rows = {}
        for line in lines[1:]:
            fields = line.split()
            key = fields[9] if fields[9] != "0" else tuple(fields[1:4])
            rows[key] = line.split(":", 1)[1]     # without sl: it is checked apart
        return rows

    inodes = {str(os.fstat(s.fileno()).st_ino) for s in sockets.all
              if s.family == socket.AF_INET6 and s.fileno() >= 0}
    ours_rows, proc_rows = by_key(ours), by_key(proc)
    assert inodes <= ours_rows.keys()
    assert ours_rows == proc_rows


def test_sl_counts_only_ipv6_sockets(mount, sockets):
    v4 = sockets.listener(family=socket.AF_INET, host="127.0.0.1")
    for _ in range(5):
        sockets.pair(v4, host="127.0.0.1")
    listener = sockets.listener()
    for _ in range(5):
        sockets.pair(listener)
    lines = (mount.mountpoint / "tcp6").read_text().splitlines()[1:]
    assert [int(line.split(":")[0]) for line in lines] == list(range(len(lines)))
    assert len(lines) >= 11


def test_empty_table_still_has_header(tmp_path):
    # A reader in a network namespace with no socket at all (the daemon's own).
    with running_daemon(tmp_path / "mnt", prefix=("unshare", "--net")) as daemon, \
            network_namespace_of(daemon.pid):
        assert (daemon.mountpoint / "tcp6").read_text() == HEADER + "\n"


def test_thousands_of_sockets_stream_in_any_read_size(mount, sockets):
    listener = sockets.listener(backlog=4096)
    for _ in range(1500):
        sockets.pair(listener)
    for size in (4096, 1 << 20, 333):
        proc, ours = read_quiet("/proc/net/tcp6", mount.mountpoint / "tcp6", normalised,
                                read=lambda path: read_in_chunks(path, size))
        assert len(proc) > 3000
        assert ours == proc, f"read size {size}"


def test_thirty_thousand_sockets_through_cat_and_any_read_size(mount):
    holders = hold_sockets(30000)
    try:
        for read in (lambda path: subprocess.run(["cat", str(path)], check=True,
                                                 capture_output=True, text=True).stdout,
                     lambda path: read_in_chunks(path, 4096),
                     lambda path: read_in_chunks(path, 1 << 20)):
            proc, ours = read_quiet("/proc/net/tcp6", mount.mountpoint / "tcp6",
                                    normalised, read=read)
            assert len(proc) > 30000
            assert ours == proc
    finally:
        holders.close()
