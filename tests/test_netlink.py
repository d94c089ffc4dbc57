"""netlink: /proc/net/netlink reproduced by a BPF program, compared line for line."""

import os
import socket
import struct

import pytest

from conftest import OpenSockets, needs_view, read_in_chunks, read_quiet

pytestmark = needs_view('netlink')

HEADER = ("sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    "
          "Drops    Inode")
NETLINK_ROUTE = 0
NETLINK_USERSOCK = 2
NETLINK_GENERIC = 16
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NLM_F_REQUEST_DUMP = 0x301
RTM_GETLINK = 18
RTMGRP_LINK = 0x1
RTMGRP_IPV6_ROUTE = 0x400
RTNLGRP_NEXTHOP = 32           # bit 31 of the first word
RTNLGRP_BRVLAN = 33            # bit 32: past the u32 that /proc prints
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
USERSOCK_GROUP = 23            # a multicast group of NETLINK_USERSOCK the test floods


def read_netlink(mount):
    return read_quiet("/proc/net/netlink", mount.mountpoint / "netlink")


def parse(lines):
    """{inode: (protocol, portid, groups, rmem, wmem, dump, locks, drops)} of the rows."""
    assert lines[0] == HEADER
    rows = {}
    for line in lines[1:]:
        sk, *numbers = line.split()
        assert len(numbers) == 9, line
        rows[int(numbers[8])] = (int(numbers[0]), int(numbers[1]), int(numbers[2], 16),
                                 *map(int, numbers[3:8]))
    return rows


def inode(sock):
    return os.fstat(sock.fileno()).st_ino


class Sockets(OpenSockets):
    """Netlink sockets the test opens, closed at exit."""

    def open(self, protocol, groups=None):
        sock = self.keep(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol))
        if groups is not None:
            sock.bind((0, groups))       # portid 0: the kernel picks one
        return sock

@pytest.fixture
def sockets():
    with Sockets() as s:
        yield s


def open_every_kind(sockets):
    """Sockets that between them set every column /proc prints."""
    made = {}
    # Bound with groups in both words of the bitmap, and a dump left unread:
    # Dump 1 and Rmem > 0 until the dump is read.
    route = made["route"] = sockets.open(NETLINK_ROUTE, RTMGRP_LINK | RTMGRP_IPV6_ROUTE)
    for group in (RTNLGRP_NEXTHOP, RTNLGRP_BRVLAN):
        route.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
    route.send(struct.pack("=IHHII", 32, RTM_GETLINK, NLM_F_REQUEST_DUMP, 1, 0) + bytes(16))
    generic = made["generic"] = sockets.open(NETLINK_GENERIC, 0)
    generic.send(struct.pack("=IHHII", 20, GENL_ID_CTRL, NLM_F_REQUEST_DUMP, 1, 0)
                 + struct.pack("=BBH", CTRL_CMD_GETFAMILY, 1, 0))
    made["generic_idle"] = sockets.open(NETLINK_GENERIC, 0)   # autobound: a negative portid
    # A listener too small for what the sender multicasts: Drops > 0.
    listener = made["listener"] = sockets.open(NETLINK_USERSOCK)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)
    listener.bind((0, 1 << (USERSOCK_GROUP - 1)))
    sender = made["sender"] = sockets.open(NETLINK_USERSOCK, 0)
    for _ in range(50):
        try:
            sender.sendto(b"x" * 500, (0, 1 << (USERSOCK_GROUP - 1)))
        except ConnectionRefusedError:
            pass        # the unicast half to portid 0: there is no kernel socket
    made["unbound"] = sockets.open(NETLINK_ROUTE)   # not in any table until bound
    return made


@pytest.mark.kernel
def test_same_lines_as_proc(mount, sockets):
    open_every_kind(sockets)
    proc, ours = read_netlink(mount)
    assert ours[0] == HEADER == proc[0]
    assert ours == proc


@pytest.mark.kernel
def test_each_socket_as_the_kernel_shows_it(mount, sockets):
    made = open_every_kind(sockets)
    proc, ours = read_netlink(mount)
    rows, proc_rows = parse(ours), parse(proc)
    assert rows == proc_rows

    def row(name):
        return rows[inode(made[name])]

    def portid(name):
        return made[name].getsockname()[0]

    protocol, pid, groups, rmem, wmem, dump, locks, drops = row("route")
    assert (protocol, pid) == (NETLINK_ROUTE, portid("route"))
    assert groups == RTMGRP_LINK | RTMGRP_IPV6_ROUTE | 1 << (RTNLGRP_NEXTHOP - 1)
    assert dump == 1 and rmem > 0
    protocol, pid, groups, rmem, wmem, dump, locks, drops = row("generic")
    assert (protocol, pid, groups, dump) == (NETLINK_GENERIC, portid("generic"), 0, 1)
    assert rmem > 0
    protocol, pid, groups, rmem, wmem, dump, locks, drops = row("generic_idle")
    assert (protocol, pid, groups, rmem, dump, drops) == \
        (NETLINK_GENERIC, portid("generic_idle"), 0, 0, 0, 0)
    protocol, pid, groups, rmem, wmem, dump, locks, drops = row("listener")
    assert (protocol, groups) == (NETLINK_USERSOCK, 1 << (USERSOCK_GROUP - 1))
    assert drops > 0 and rmem > 0
    assert inode(made["unbound"]) not in rows
    # Kernel sockets are there too, with the inode of a socket that has no file.
    assert any(pid == 0 and protocol == NETLINK_ROUTE
               for protocol, pid, *_ in rows.values())


def test_order_is_the_kernels(mount, sockets):
    """Protocol by protocol, in the hash table's order, as /proc walks them."""
    made = open_every_kind(sockets)
    proc, ours = read_netlink(mount)
    order = [int(line.split()[-1]) for line in ours[1:]]
    assert order == [int(line.split()[-1]) for line in proc[1:]]
    protocols = [int(line.split()[1]) for line in ours[1:]]
    assert protocols == sorted(protocols)
    assert {inode(made[name]) for name in ("route", "generic", "listener")} <= set(order)


def test_thousands_of_sockets_stream_in_any_read_size(mount, sockets):
    for _ in range(1500):
        sockets.open(NETLINK_USERSOCK, 0)
    for size in (4096, 1 << 20, 333):
        for _ in range(10):
            before = open("/proc/net/netlink").read()
            ours = read_in_chunks(mount.mountpoint / "netlink", size)
            if open("/proc/net/netlink").read() == before:
                break
        else:
            pytest.fail("/proc/net/netlink kept changing")
        assert before.count("\n") > 1500
        assert ours == before, f"read size {size}"
