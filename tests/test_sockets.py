"""sockets/: who holds which socket, compared with ss, psutil and /proc/<pid>/fd.

The sockets compared are made by two processes of the test's own in a network
namespace of their own, so that ss and psutil, run there, list exactly them.
"""

import collections
import contextlib
import json
import os
import re
import socket
import subprocess
import sys

import pytest

from conftest import needs_view

pytestmark = needs_view("sockets")

HEADER = ["tgid", "fd", "netns", "family", "type", "protocol", "state", "local", "remote",
          "recv-q", "send-q", "inode", "uid", "comm"]
# The comm of the processes the tests start, as exec gives it: the file's name.
COMM = os.path.basename(sys.executable)[:15]
Row = collections.namedtuple("Row", [name.replace("-", "_") for name in HEADER])

# Runs as root in the host's network namespace, holds one UDP socket there, then
# moves to a namespace of its own and makes every kind of socket in it, with a
# child process (the client) holding the other ends. A TCP Fast Open request
# whose handshake can never finish gives an accepted socket in SYN-RECV: the SYN
# is sent from a raw socket, from an address routed to a veth device where the
# SYN-ACK goes unanswered. Prints what it made as JSON; holds on until stdin closes.
WORLD = r"""
import ctypes, json, os, select, signal, socket, struct, subprocess, sys

libc = ctypes.CDLL(None, use_errno=True)
directory = sys.argv[1]
host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
host.bind(("127.0.0.1", 0))
if libc.unshare(0x40000000):        # CLONE_NEWNET
    raise OSError(ctypes.get_errno(), "unshare")
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
veth = subprocess.run(
    "ip link add iterfs0 type veth peer name iterfs1 && ip addr add 10.255.0.2/24 dev iterfs0 "
    "&& ip link set iterfs0 up && ip link set iterfs1 up", shell=True,
    stderr=subprocess.DEVNULL).returncode == 0
with open("/proc/sys/net/ipv4/tcp_fastopen", "w") as f:
    f.write(str(0x202))             # server on, no cookie needed

def listener(family, address, backlog):
    sock = socket.socket(family)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(address)
    sock.listen(backlog)
    return sock

tcp4 = listener(socket.AF_INET, ("127.0.0.1", 0), 8)
tcp6 = listener(socket.AF_INET6, ("::1", 0), 7)
dual = listener(socket.AF_INET6, ("::", 0), 6)
udp4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp4.bind(("127.0.0.1", 0))
udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
udp6.bind(("::1", 0))
path = os.path.join(directory, "stream")
unix_listener = socket.socket(socket.AF_UNIX)
unix_listener.bind(path)
unix_listener.listen(3)
abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
abstract.bind("\0iterfs-test\0" + str(os.getpid()))
seqpacket = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
pair = socket.socketpair()
unnamed = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
netlink = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
netlink.bind((0, 0))
packet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
# A filter that takes no packet ("ret #0"): its queue then stays as ss finds it.
drop_all = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))
packet.setsockopt(socket.SOL_SOCKET, 26, struct.pack("HL", 1, ctypes.addressof(drop_all)))
packet_lo = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
packet_lo.bind(("lo", 0x0800))
icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
udp4.sendto(b"queued", udp4.getsockname())

ready_r, ready_w = os.pipe()
client = os.fork()
if client == 0:
    libc.prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG: ends with the holder
    held = [socket.create_connection(tcp4.getsockname()),
            socket.create_connection(tcp6.getsockname()[:2]),
            socket.create_connection(("127.0.0.1", dual.getsockname()[1]))]
    held[0].sendall(b"x" * 1000)
    connected = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    connected.connect(udp6.getsockname()[:2])
    stream = socket.socket(socket.AF_UNIX)
    stream.connect(path)
    stream.sendall(b"abc")
    stream.sendall(b"defgh")
    datagram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    datagram.connect(abstract.getsockname())
    datagram.send(b"12345678")
    held += [connected, stream, datagram]
    os.write(ready_w, b"!")
    select.select([sys.stdin], [], [])
    os._exit(0)
os.read(ready_r, 1)
accepted = [tcp4.accept()[0], tcp6.accept()[0], dual.accept()[0], unix_listener.accept()[0]]

def checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff

syn_recv = None
if veth:    # not on 127.0.0.1: the kernel routes no reply from there out of a device
    fastopen = listener(socket.AF_INET, ("10.255.0.2", 0), 5)
    fastopen.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 5)
    source, destination = socket.inet_aton("10.255.0.1"), socket.inet_aton("10.255.0.2")
    segment = struct.pack("!HHIIBBHHH", 40000, fastopen.getsockname()[1], 1, 0, 5 << 4, 0x02,
                          65535, 0, 0) + b"early!"
    pseudo = source + destination + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(segment))
    segment = segment[:16] + struct.pack("!H", checksum(pseudo + segment)) + segment[18:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 0, 0, 64,
                         socket.IPPROTO_TCP, 0, source, destination)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.sendto(header + segment, ("10.255.0.2", 0))
    raw.close()
    fastopen.settimeout(5)
    syn_recv = fastopen.accept()[0]
    accepted.append(syn_recv)
print(json.dumps({"pid": os.getpid(), "client": client,
                  "syn_recv": syn_recv.fileno() if syn_recv else None,
                  "host": host.fileno(), "path": path}), flush=True)
sys.stdin.read()
"""


@pytest.fixture
def world(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", WORLD, str(tmp_path)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        made = json.loads(process.stdout.readline())
        made["netns"] = os.stat(f"/proc/{made['pid']}/ns/net").st_ino
        yield made
    finally:
        process.kill()
        process.wait()


def parse(text):
    lines = text.splitlines()
    assert lines[0].split() == HEADER
    rows = []
    for line in lines[1:]:
        fields = line.split()
        assert len(fields) == len(HEADER), line
        rows.append(Row(*fields))
    return rows


def ours(rows, world):
    """The world's sockets in its namespace, by (pid, fd)."""
    return {(int(row.tgid), int(row.fd)): row for row in rows
            if int(row.tgid) in (world["pid"], world["client"])
            and int(row.netns) == world["netns"]}


def in_world(world, *command):
    return subprocess.run(["nsenter", f"--net=/proc/{world['pid']}/ns/net", *command],
                          check=True, capture_output=True, text=True).stdout


NETIDS = {("unix", "stream"): "u_str", ("unix", "dgram"): "u_dgr",
          ("unix", "seqpacket"): "u_seq", ("packet", "raw"): "p_raw",
          ("packet", "dgram"): "p_dgr"}
USER = re.compile(r'\("[^"]*",pid=(\d+),fd=(\d+)\)')


def netid(row):
    if row.family in ("inet", "inet6"):
        return "raw" if row.type == "raw" else row.protocol
    return NETIDS.get((row.family, row.type))


def ss_sockets(world):
    """{(pid, fd): (netid, state, recv-q, send-q, local, remote)} from
    `ss -tuanxp` (and -w, -0 for raw and packet sockets), run in the world."""
    result = {}
    for line in in_world(world, "ss", "-tuwxan0p").splitlines()[1:]:
        fields = line.split()
        if fields[0].startswith("u_"):      # unix: "name port" for each end
            local, remote = f"{fields[4]}:{fields[5]}", f"{fields[6]}:{fields[7]}"
        else:
            local, remote = fields[4], fields[5]
        # ss 6.1 names a raw socket ??? on some kernels (6.12), raw on others.
        kind = "raw" if fields[0] == "???" else fields[0]
        for pid, fd in USER.findall(line):
            result[int(pid), int(fd)] = (kind, *fields[1:4], local, remote)
    return result


@pytest.mark.kernel
def test_every_socket_is_as_ss_shows_it(mount, world):
    shown = ours(parse((mount.mountpoint / "sockets" / "all").read_text()), world)
    expected = ss_sockets(world)
    listed = {key: (netid(row), row.state, row.recv_q, row.send_q, row.local, row.remote)
              for key, row in shown.items() if row.family != "netlink"}
    assert listed == expected
    # Every kind the world made is there, as ss spells it.
    kinds = {(value[0], value[1]) for value in listed.values()}
    assert {("tcp", "LISTEN"), ("tcp", "ESTAB"), ("udp", "UNCONN"), ("udp", "ESTAB"),
            ("u_str", "LISTEN"), ("u_str", "ESTAB"), ("u_dgr", "UNCONN"), ("u_dgr", "ESTAB"),
            ("u_seq", "ESTAB"), ("p_raw", "UNCONN"), ("p_dgr", "UNCONN"),
            ("raw", "UNCONN")} <= kinds
    if world["syn_recv"] is not None:
        row = shown[world["pid"], world["syn_recv"]]
        assert (row.state, row.remote, row.recv_q) == ("SYN-RECV", "10.255.0.1:40000", "6")
    # Bound to ::1 a socket is IPv6-only: ss writes its "any" as [::]; a
    # dual-stack socket's as *.
    assert any(row.local.startswith("[::1]:") and row.remote == "[::]:*" and row.send_q == "7"
               for row in shown.values())
    assert any(row.local.startswith("*:") and row.remote == "*:*" and row.send_q == "6"
               for row in shown.values())
    assert any(row.local.startswith("@iterfs-test@") for row in shown.values())
    assert any(row.local == f"{world['path']}:{row.inode}" for row in shown.values())
    assert "1000" in {row.recv_q for row in shown.values()}     # the client's unread bytes
    assert "8" in {row.recv_q for row in shown.values()}        # abc + defgh, in a stream


@pytest.mark.kernel
def test_syn_recv_held_by_a_process(mount, world):
    if world["syn_recv"] is None:
        pytest.skip("no veth device here to leave a handshake unanswered")
    shown = ours(parse((mount.mountpoint / "sockets" / str(world["pid"])).read_text()), world)
    row = shown[world["pid"], world["syn_recv"]]
    assert (row.family, row.type, row.protocol, row.state) == ("inet", "stream", "tcp", "SYN-RECV")


@pytest.mark.kernel
def test_netlink_sockets_are_as_proc_net_netlink_shows_them(mount, world):
    shown = ours(parse((mount.mountpoint / "sockets" / "all").read_text()), world)
    netlink = {row.inode: row for row in shown.values() if row.family == "netlink"}
    assert netlink
    # sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode, in the world's namespace
    proc = {fields[9]: fields for fields in
            (line.split() for line in in_world(world, "cat", "/proc/net/netlink").splitlines()[1:])}
    for inode, row in netlink.items():
        fields = proc[inode]
        assert (row.local, row.remote, row.state) == (f"{fields[1]}:{fields[2]}", "*", "UNCONN")
        assert (row.recv_q, row.protocol) == (fields[4], fields[1])


PSUTIL = "import json, psutil; print(json.dumps([(c.pid, c.fd) for c in psutil.net_connections('all')]))"


@pytest.mark.kernel
def test_pids_and_fds_are_psutils(mount, world):
    shown = ours(parse((mount.mountpoint / "sockets" / "all").read_text()), world)
    theirs = {tuple(pair) for pair in json.loads(in_world(world, sys.executable, "-c", PSUTIL))
              if pair[0] in (world["pid"], world["client"])}
    held = {key: row.inode for key, row in shown.items()
            if row.family in ("inet", "inet6", "unix") and row.type != "raw"}
    # psutil names one holder of a socket, the last process it read of those
    # that hold it (the client inherited the holder's first sockets).
    assert theirs <= set(held)
    assert sorted(held[key] for key in theirs) == sorted(set(held.values()))
    assert {pid for pid, fd in theirs} == {world["pid"], world["client"]}


def socket_links(pid):
    links = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                links[int(fd)] = link[len("socket:["):-1]
    return links


@pytest.mark.kernel
def test_a_process_file_is_its_socket_fds(mount, world):
    for pid in (world["pid"], world["client"]):
        rows = parse((mount.mountpoint / "sockets" / str(pid)).read_text())
        assert {int(row.fd): row.inode for row in rows} == socket_links(pid)
        assert {(row.tgid, row.uid, row.comm) for row in rows} == {(str(pid), "0", COMM)}


@pytest.mark.kernel
def test_a_socket_of_another_namespace_shows_that_namespace(mount, world):
    rows = parse((mount.mountpoint / "sockets" / str(world["pid"])).read_text())
    namespaces = {int(row.fd): int(row.netns) for row in rows}
    host = os.stat("/proc/self/ns/net").st_ino
    assert namespaces.pop(world["host"]) == host
    assert set(namespaces.values()) == {world["netns"]} != {host}


# A process named with a blank, holding unix sockets whose names hold a blank,
# a newline, a backslash and (abstract) NULs.
ODD_NAMES = r"""
import ctypes, os, socket, sys
ctypes.CDLL(None).prctl(15, b"odd name\\x")      # PR_SET_NAME
held = []
for name in (os.path.join(sys.argv[1], "a b\nc\\d"), "\0odd\0name x"):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(name)
    held.append(sock)
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.kernel
def test_no_field_holds_a_blank(mount, tmp_path):
    process = subprocess.Popen([sys.executable, "-c", ODD_NAMES, str(tmp_path)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        rows = parse((mount.mountpoint / "sockets" / str(process.pid)).read_text())
    finally:
        process.kill()
        process.wait()
    assert {row.comm for row in rows} == {"odd\\040name\\134x"}
    assert sorted(row.local.rsplit(":", 1)[0] for row in rows) == \
        sorted([f"{tmp_path}/a\\040b\\012c\\134d", "@odd@name\\040x"])


def test_self_is_the_readers_own_sockets(mount):
    pair = socket.socketpair()
    try:
        fds = {sock.fileno() for sock in pair}
        links = socket_links(os.getpid())
        rows = parse((mount.mountpoint / "sockets" / "self").read_text())
    finally:
        for sock in pair:
            sock.close()
    assert {int(row.fd): row.inode for row in rows} == links
    assert fds <= set(links)


# Addresses whose text glibc's inet_ntop() makes in each of its ways: no run of
# zeros, a run at either end, the first of two equal runs, a lone zero group
# (not shortened), the longer of two runs, and the last four bytes dotted for
# the IPv4-mapped form and the IPv4-compatible one (::1:2, but not ::2).
IPV6_ADDRESSES = ["1:2:3:4:5:6:7:8", "2001:db8::1", "2001:db8::", "1:0:0:2:0:0:3:4",
                  "1:0:2:3:4:5:6:7", "1:0:0:2:0:0:0:3", "::2", "::1:2", "::ffff:1.2.3.4",
                  "::ffff:0:1.2.3.4", "abcd:ef01::9", "::fffe:1.2.3.4", "0:0:0:0:0:1:0:0"]
IPV6_FREEBIND = 78


@pytest.mark.kernel
def test_ipv6_addresses_are_as_inet_ntop_writes_them(mount):
    held = []
    try:
        for address in IPV6_ADDRESSES:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            held.append(sock)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
            sock.bind((address, 0))
        rows = {int(row.fd): row for row in
                parse((mount.mountpoint / "sockets" / "self").read_text())}
        for sock in held:
            address, port = sock.getsockname()[:2]
            text = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, address))
            assert rows[sock.fileno()].local == f"[{text}]:{port}"
    finally:
        for sock in held:
            sock.close()
    assert {text for text in (socket.inet_ntop(socket.AF_INET6, socket.inet_pton(
        socket.AF_INET6, a)) for a in IPV6_ADDRESSES)} >= \
        {"::0.1.0.2", "::2", "::ffff:1.2.3.4", "1::2:0:0:3:4", "1:0:0:2::3", "::1:0:0"}
