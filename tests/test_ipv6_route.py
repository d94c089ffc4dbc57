"""ipv6_route: /proc/net/ipv6_route reproduced by a BPF program, compared line for line.

The routes live on a device the test creates in the daemon's (the host's) network
namespace, with addresses from the documentation prefix 2001:db8::/32 only, and
nothing is sent anywhere: the device drops whatever reaches it.
"""

import ipaddress
import os
import subprocess

import pytest

from conftest import needs_view, read_in_chunks, read_quiet

pytestmark = needs_view('ipv6_route')

DEVICE = "iterfstest6rt"
PREFIX = "2001:db8:6a"             # every route the test adds is under 2001:db8:6a00::/40
ADDRESS = f"{PREFIX}00::1"
GATEWAY = f"{PREFIX}00::2"
RTF_UP = 0x0001
RTF_GATEWAY = 0x0002
RTF_REJECT = 0x0200
RTF_ANYCAST = 0x00100000
RTF_NONEXTHOP = 0x00200000
RTF_EXPIRES = 0x00400000
RTF_LOCAL = 0x80000000
NO_ADDRESS = "0" * 32

# Routes without a device of their own: the kernel gives them the loopback device,
# and deleting DEVICE does not remove them.
REJECT_ROUTES = [f"{kind} {PREFIX}{n:02x}::/48" for n, kind in
                 enumerate(("blackhole", "unreachable", "prohibit", "throw"), start=0x10)]


def ip(*args, check=True):
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    assert not check or result.returncode == 0, f"ip {' '.join(args)}: {result.stderr}"
    return result


def create_device():
    """A device that transmits nothing: dummy, or ifb where the kernel has no dummy."""
    for kind in ("dummy", "ifb"):
        result = ip("link", "add", DEVICE, "type", kind, check=False)
        if result.returncode == 0:
            return
    pytest.fail(f"cannot create {DEVICE}: {result.stderr}")


def free_nexthop_ids(count):
    """Nexthop ids that nobody uses: they are global to the namespace."""
    used = {int(line.split()[1]) for line in ip("nexthop", "show").stdout.splitlines()
            if line.startswith("id ")}
    base = 0x49460000 + (os.getpid() & 0xffff) * 16
    ids = [i for i in range(base, base + 16 * count) if i not in used][:count]
    assert len(ids) == count
    return ids


def hex_address(address):
    return ipaddress.IPv6Address(address).packed.hex()


class Routes:
    """What the test added, removed at exit even after a failure."""

    def __init__(self):
        self.nexthops = []
        self.reject_routes = []
        self.device = False

    def setup(self):
        create_device()
        self.device = True
        # No address generation: no link-local address, no DAD, no solicitations.
        ip("link", "set", DEVICE, "addrgenmode", "none")
        ip("link", "set", DEVICE, "up")
        ip("-6", "addr", "add", f"{ADDRESS}/64", "dev", DEVICE, "nodad")
        ip("-6", "route", "add", f"{PREFIX}01::/48", "via", GATEWAY, "dev", DEVICE,
           "metric", "7")
        ip("-6", "route", "add", f"{PREFIX}02::/48", "dev", DEVICE, "expires", "600")
        ip("-6", "route", "add", f"{PREFIX}03::/48", "from", f"{PREFIX}04::/56",
           "dev", DEVICE)
        ip("-6", "route", "add", f"{PREFIX}05::/48",
           "nexthop", "via", GATEWAY, "dev", DEVICE,
           "nexthop", "via", f"{PREFIX}00::3", "dev", DEVICE)
        via, other, blackhole, group = free_nexthop_ids(4)
        ip("-6", "nexthop", "add", "id", str(via), "via", f"{PREFIX}00::4", "dev", DEVICE)
        self.nexthops.append(via)
        ip("-6", "nexthop", "add", "id", str(other), "via", f"{PREFIX}00::5", "dev", DEVICE)
        self.nexthops.append(other)
        ip("-6", "nexthop", "add", "id", str(blackhole), "blackhole")
        self.nexthops.append(blackhole)
        # /proc shows a group's route with the group's first member.
        ip("nexthop", "add", "id", str(group), "group", f"{via}/{other}")
        self.nexthops.append(group)
        ip("-6", "route", "add", f"{PREFIX}06::/48", "nhid", str(via))
        ip("-6", "route", "add", f"{PREFIX}07::/48", "nhid", str(blackhole))
        self.reject_routes.append(f"{PREFIX}07::/48")
        ip("-6", "route", "add", f"{PREFIX}08::/48", "nhid", str(group))
        for route in REJECT_ROUTES:
            ip("-6", "route", "add", *route.split())
            self.reject_routes.append(route)

    def teardown(self):
        for route in self.reject_routes:
            ip("-6", "route", "del", *route.split(), check=False)
        if self.device:
            ip("link", "del", DEVICE, check=False)       # its routes go with it
        for nexthop in reversed(self.nexthops):
            ip("nexthop", "del", "id", str(nexthop), check=False)


@pytest.fixture(scope="module")
def routes():
    r = Routes()
    try:
        r.setup()
        yield r
    finally:
        r.teardown()


def read_routes(mount):
    return read_quiet("/proc/net/ipv6_route", mount.mountpoint / "ipv6_route")


def parse(line):
    """(destination, length, source, length, gateway, metric, refcount, use, flags, device)"""
    fields = line.split()
    assert len(fields) == 10, line
    return (*fields[:5], *(int(f, 16) for f in fields[5:9]), fields[9])


def find(lines, destination, length, device=None):
    found = [parse(line) for line in lines
             if line.startswith(f"{hex_address(destination)} {length:02x} ")]
    return [row for row in found if device is None or row[9] == device]


@pytest.mark.kernel
def test_same_lines_as_proc(mount, routes):
    proc, ours = read_routes(mount)
    assert ours == proc
    assert len(find(ours, f"{PREFIX}01::", 48)) == 1


@pytest.mark.kernel
def test_each_route_as_the_kernel_shows_it(mount, routes):
    proc, ours = read_routes(mount)
    assert ours == proc
    prefix = find(ours, f"{PREFIX}00::", 64)
    gateway = find(ours, f"{PREFIX}01::", 48)
    expires = find(ours, f"{PREFIX}02::", 48)
    source = find(ours, f"{PREFIX}03::", 48)
    multipath = find(ours, f"{PREFIX}05::", 48)
    by_nexthop = find(ours, f"{PREFIX}06::", 48)
    by_blackhole_nexthop = find(ours, f"{PREFIX}07::", 48)
    by_group = find(ours, f"{PREFIX}08::", 48)
    local = find(ours, ADDRESS, 128)
    multicast = find(ours, "ff00::", 8, DEVICE)

    assert [r[4] for r in prefix] == [NO_ADDRESS]
    assert [(r[5], r[8], r[9]) for r in prefix] == [(256, RTF_UP, DEVICE)]
    assert [(r[4], r[5], r[8]) for r in gateway] == \
        [(hex_address(GATEWAY), 7, RTF_UP | RTF_GATEWAY)]
    assert [r[8] for r in expires] == [RTF_UP | RTF_EXPIRES]
    assert [r[2:4] for r in source] == [(hex_address(f"{PREFIX}04::"), "38")]
    assert sorted(r[4] for r in multipath) == \
        [hex_address(GATEWAY), hex_address(f"{PREFIX}00::3")]
    assert [(r[4], r[8], r[9]) for r in by_nexthop + by_group] == \
        [(hex_address(f"{PREFIX}00::4"), RTF_UP | RTF_GATEWAY, DEVICE)] * 2
    # A blackhole nexthop rejects in the nexthop: the route's own flags are plain.
    assert [(r[4], r[8], r[9]) for r in by_blackhole_nexthop] == [(NO_ADDRESS, RTF_UP, "lo")]
    assert [(r[8], r[9]) for r in local] == [(RTF_LOCAL | RTF_NONEXTHOP | RTF_UP, DEVICE)]
    assert [(r[5], r[8]) for r in multicast] == [(256, RTF_UP)]
    for n, route in enumerate(REJECT_ROUTES, start=0x10):
        rows = find(ours, f"{PREFIX}{n:02x}::", 48)
        assert [(r[4], r[8], r[9]) for r in rows] == \
            [(NO_ADDRESS, RTF_NONEXTHOP | RTF_REJECT, "lo")], route
    for line in ours:
        assert parse(line)[7] == 0      # "use": the kernel prints 0 for every route


def test_device_name_is_padded_to_eight(mount, routes):
    proc, ours = read_routes(mount)
    assert ours == proc
    assert any(line.endswith(" " * 7 + "lo") for line in ours)
    assert any(line.endswith(f" {DEVICE}") for line in ours)


@pytest.fixture
def many_routes(routes):
    """Two thousand routes on DEVICE, so the file spans many kernel buffers."""
    batch = "".join(f"route add {PREFIX}80:{n:x}::/64 dev {DEVICE}\n" for n in range(2000))
    try:
        subprocess.run(["ip", "-6", "-batch", "-"], input=batch, text=True, check=True,
                       capture_output=True)
        yield
    finally:
        subprocess.run(["ip", "-6", "-force", "-batch", "-"], text=True, capture_output=True,
                       input=batch.replace("route add", "route del"))


def test_thousands_of_routes_stream_in_any_read_size(mount, many_routes):
    for size in (4096, 1 << 20, 333):
        for _ in range(10):
            before = open("/proc/net/ipv6_route").read()
            ours = read_in_chunks(mount.mountpoint / "ipv6_route", size)
            if open("/proc/net/ipv6_route").read() == before:
                break
        else:
            pytest.fail("/proc/net/ipv6_route kept changing")
        assert before.count("\n") > 2000
        assert ours == before, f"read size {size}"
