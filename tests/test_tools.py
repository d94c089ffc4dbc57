"""Real tools read iterfs's /proc/net views unchanged.

- netstat (net-tools) parses /proc/net/{tcp,tcp6,udp,udp6}, reading 4 KiB at a
  time. It is run with /proc/<its pid>/net bind-mounted from a directory whose
  files lead to iterfs, inside a private mount namespace (a bind over a single
  /proc/net file does not stick; over the whole per-process net directory it does).
- psutil, the library most monitoring agents use, parses the same files plus
  /proc/net/unix through its PROCFS_PATH setting, and maps sockets to processes
  through /proc/<pid>/fd.
"""

import os
import socket
import subprocess
import time

import psutil
import pytest

from test_tcp6 import Sockets

NET_VIEWS = ("tcp", "tcp6", "udp", "udp6", "unix")


@pytest.fixture
def net_dir(mount, tmp_path):
    """A directory standing in for /proc/net: its files are iterfs's views."""
    net = tmp_path / "net"
    net.mkdir()
    for name in NET_VIEWS:
        (net / name).symlink_to(mount.mountpoint / name)
    return net


@pytest.fixture
def sockets(tmp_path):
    """TCP in several states, UDP bound and connected, unix of every kind."""
    with Sockets() as s:
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            listener = s.listener(family=family, host=host)
            for _ in range(3):
                s.pair(listener, host=host)
            client, server = s.pair(s.listener(family=family, host=host), host=host)
            client.close()
            server.close()                          # TIME_WAIT
            bound = s.keep(socket.socket(family, socket.SOCK_DGRAM))
            bound.bind((host, 0))
            connected = s.keep(socket.socket(family, socket.SOCK_DGRAM))
            connected.connect(bound.getsockname()[:2])
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET):
            s.keep(*socket.socketpair(socket.AF_UNIX, kind))
            named = s.keep(socket.socket(socket.AF_UNIX, kind))
            named.bind(str(tmp_path / f"unix-{kind}"))
            abstract = s.keep(socket.socket(socket.AF_UNIX, kind))
            abstract.bind(f"\0iterfs-tools-{os.getpid()}-{kind}")
        time.sleep(0.1)
        yield s


def netstat(net_dir=None):
    if net_dir is None:
        command = ["netstat", "-tuanW"]
    else:
        # exec keeps the shell's pid, so /proc/self/net is the bound directory.
        script = 'mount --bind "$1" "/proc/$$/net" && exec netstat -tuanW'
        command = ["unshare", "--mount", "sh", "-c", script, "sh", str(net_dir)]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def test_netstat_reads_the_bound_directory(tmp_path):
    """The bind really replaces what netstat reads: empty files, no sockets."""
    empty = tmp_path / "empty-net"
    empty.mkdir()
    for name in NET_VIEWS:
        (empty / name).write_text("")
    assert "LISTEN" in netstat()
    assert "LISTEN" not in netstat(empty) and "tcp" not in netstat(empty).split()


def test_netstat_prints_the_same(net_dir, sockets):
    for _ in range(10):
        before = netstat()
        through_iterfs = netstat(net_dir)
        after = netstat()
        if before == after:
            break
        time.sleep(0.05)
    else:
        pytest.fail("netstat's output kept changing")
    assert through_iterfs == before
    ports = {str(sock.getsockname()[1]) for sock in sockets.all
             if sock.fileno() >= 0 and sock.family != socket.AF_UNIX}
    shown = through_iterfs.split()
    assert all(any(word.endswith(":" + port) for word in shown) for port in ports)
    assert "TIME_WAIT" in shown and "LISTEN" in shown and "ESTABLISHED" in shown


def test_psutil_sees_the_same_connections(net_dir, tmp_path, sockets):
    """psutil over a proc root whose net/ is iterfs, against psutil over /proc."""
    root = tmp_path / "proc"
    root.mkdir()
    (root / "net").symlink_to(net_dir)
    (root / str(os.getpid())).symlink_to(f"/proc/{os.getpid()}")
    for _ in range(10):
        before = sorted(psutil.Process().net_connections(kind="all"))
        psutil.PROCFS_PATH = str(root)
        try:
            through_iterfs = sorted(psutil.Process().net_connections(kind="all"))
        finally:
            psutil.PROCFS_PATH = "/proc"
        if before == sorted(psutil.Process().net_connections(kind="all")):
            break
    else:
        pytest.fail("psutil's answer kept changing")
    assert through_iterfs == before
    open_sockets = [sock for sock in sockets.all if sock.fileno() >= 0]
    assert len(through_iterfs) >= len(open_sockets)
    kinds = {(c.family, c.type) for c in through_iterfs}
    assert {(socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET6, socket.SOCK_DGRAM),
            (socket.AF_UNIX, socket.SOCK_SEQPACKET)} <= kinds
