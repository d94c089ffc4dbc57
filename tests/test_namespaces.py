"""Every reader sees its own namespaces, as /proc shows them (iterfs/namespaces.py).

Containers are made with unshare(1) and keep the test's mount namespace (or a
copy of it), so the mount is visible inside; what a container reads of iterfs
is compared with what it reads of its own /proc at the same moment, by a
script run inside it (CONTAINER), which prints JSON.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import kill_quietly, parse_task_file, process_fds

NET_VIEWS = ("tcp", "tcp6", "udp", "udp6", "unix", "netlink", "ipv6_route")

# TCP listening and established, and UDP, in IPv4 and IPv6 on loopback.
MAKE_SOCKETS = r"""
import socket, sys

def make_sockets():
    held = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        listener = socket.socket(family)
        listener.bind((host, 0))
        listener.listen()
        client = socket.create_connection((host, listener.getsockname()[1]))
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.bind((host, 0))
        held += [listener, client, listener.accept()[0], udp]
    return held
"""

# Run inside a container: sockets of its own (in a new network namespace),
# then each check named on the command line, as JSON on stdout.
CONTAINER = MAKE_SOCKETS + r"""
import errno, json, os, socket, subprocess, sys, time
mount, checks = sys.argv[1], sys.argv[2].split(",")
out = {}

def same(ours_path, proc_path, normalise=lambda text: text):
    # A moment when /proc did not change across our read (as `normalise` sees it).
    for _ in range(50):
        before = normalise(open(proc_path).read())
        ours = normalise(open(ours_path).read())
        if normalise(open(proc_path).read()) == before:
            return ours, before
        time.sleep(0.05)
    raise SystemExit(f"{proc_path} kept changing")

def uids(text):
    # {(local address, remote address, inode): uid} of a socket view.
    return sorted((line.split()[1], line.split()[2], line.split()[9], line.split()[7])
                  for line in text.splitlines()[1:])

if "net" in checks:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    held = make_sockets()
    unix = socket.socket(socket.AF_UNIX)
    unix.bind("\0iterfs-namespaces-%d" % os.getpid())
    held.append(unix)
    out["ports"] = [s.getsockname()[1] for s in held if s.family != socket.AF_UNIX]
    out["net"] = {name: same(f"{mount}/{name}", f"/proc/net/{name}")
                  for name in sys.argv[3].split(",")}

if "pid" in checks:
    child = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
    time.sleep(0.1)
    out["proc_listing"] = sorted(int(n) for n in os.listdir("/proc") if n.isdigit())
    out["listing"] = os.listdir(f"{mount}/task")
    out["self"] = os.getpid()
    out["child"] = child.pid
    out["task_self"] = open(f"{mount}/task/self").read()
    out["task_all"] = open(f"{mount}/task/all").read()
    out["task_file_child"] = open(f"{mount}/task_file/{child.pid}").read()
    out["task_file_all"] = open(f"{mount}/task_file/all").read()
    out["fds_child"] = sorted(int(fd) for fd in os.listdir(f"/proc/{child.pid}/fd"))
    out["maps"] = same(f"{mount}/task_vma/{child.pid}", f"/proc/{child.pid}/maps")
    out["task_vma_all"] = open(f"{mount}/task_vma/all").read()
    pair = socket.socketpair()
    out["pair"] = [sock.fileno() for sock in pair]
    out["sockets_self"] = open(f"{mount}/sockets/self").read()
    out["sockets_all"] = open(f"{mount}/sockets/all").read()
    missing = max(out["proc_listing"]) + 1
    out["missing"] = missing
    out["missing_errors"] = []
    for path in (f"task/{missing}", f"task_file/{missing}", f"task_vma/{missing}",
                 f"sockets/{missing}"):
        try:
            open(f"{mount}/{path}").close()
            out["missing_errors"].append(0)
        except OSError as error:
            out["missing_errors"].append(error.errno)
    child.kill()
    child.wait()

if "uid" in checks:
    out["uid"] = {name: same(f"{mount}/{name}", f"/proc/net/{name}", uids)
                  for name in ("tcp", "tcp6", "udp", "udp6")}
    out["task_all"] = open(f"{mount}/task/all").read()
    out["uids"] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/status") as f:
                    out["uids"][name] = next(l.split()[1] for l in f if l.startswith("Uid:"))
            except (OSError, StopIteration):
                pass

print(json.dumps(out))
"""


def in_container(mount, prefix, *checks, views=NET_VIEWS, id_map=None):
    """Run CONTAINER under `prefix` (an unshare command line) with `checks`.
    `id_map`: the uid_map and gid_map written for it (a new user namespace in
    `prefix`) before it starts."""
    command = [*prefix, sys.executable, "-c", CONTAINER, str(mount.mountpoint),
               ",".join(checks), ",".join(views)]
    if id_map is None:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    else:
        # unshare execs the shell in its own process: its pid is the namespace's.
        command = [*prefix, "sh", "-c", 'read go && exec "$@"', "sh", *command[len(prefix):]]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(100):
                if os.stat(f"/proc/{process.pid}/ns/user").st_ino != \
                        os.stat("/proc/self/ns/user").st_ino:
                    break
                time.sleep(0.02)
            for kind in ("uid_map", "gid_map"):
                with open(f"/proc/{process.pid}/{kind}", "w") as f:
                    f.write(id_map)
            stdout, stderr = process.communicate("go\n", timeout=60)
        finally:
            kill_quietly(process)
        result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def columns(text, index):
    """Column `index` of each line after the header."""
    return [line.split()[index] for line in text.splitlines()[1:]]


def hex_port(port):
    return f":{port:04X} "


@pytest.fixture(autouse=True)
def no_errors_logged(mount):
    """Whatever a container does, the daemon logs no error for it."""
    start = len(mount.log())
    yield
    logged = mount.log()[start:]
    assert " ERROR" not in logged and "Traceback" not in logged, logged


# -- network ----------------------------------------------------------------


@pytest.mark.kernel
def test_network_views_show_the_readers_namespace(mount):
    with socket.socket() as host_listener:
        host_listener.bind(("127.0.0.1", 0))
        host_listener.listen()
        host_port = host_listener.getsockname()[1]
        found = in_container(mount, ["unshare", "--net"], "net")
        on_host = (mount.mountpoint / "tcp").read_text()
    for name, (ours, proc) in found["net"].items():
        assert ours == proc, name
    tcp_text = found["net"]["tcp"][0] + found["net"]["tcp6"][0]
    udp_text = found["net"]["udp"][0] + found["net"]["udp6"][0]
    assert all(hex_port(port) in tcp_text + udp_text for port in found["ports"])
    assert hex_port(host_port) not in tcp_text
    assert "@iterfs-namespaces-" in found["net"]["unix"][0]
    # The host's reader sees the host, not the namespace.
    assert hex_port(host_port) in on_host
    assert not any(hex_port(port) in on_host for port in found["ports"][:1])


@contextlib.contextmanager
def named_network_namespace():
    """A network namespace as `ip netns add` makes it, deleted at the end."""
    name = f"iterfs-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


SOCKET_SERVER = MAKE_SOCKETS + r"""
held = make_sockets()
print(" ".join(str(s.getsockname()[1]) for s in held), flush=True)
sys.stdin.read()
"""


@pytest.mark.kernel
def test_netstat_in_a_named_network_namespace(mount, tmp_path):
    """netstat under `ip netns exec`, reading iterfs through a bound net/, prints
    what plain netstat prints in that namespace."""
    net = tmp_path / "net"
    net.mkdir()
    for name in ("tcp", "tcp6", "udp", "udp6", "unix"):
        (net / name).symlink_to(mount.mountpoint / name)
    with named_network_namespace() as name:
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c",
                                   SOCKET_SERVER], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            ports = server.stdout.readline().split()
            assert len(ports) == 8
            plain = ["ip", "netns", "exec", name, "netstat", "-tuanW"]
            bound = ["ip", "netns", "exec", name, "unshare", "--mount", "sh", "-c",
                     'mount --bind "$1" "/proc/$$/net" && exec netstat -tuanW', "sh", str(net)]
            for _ in range(10):
                before = subprocess.run(plain, check=True, capture_output=True, text=True).stdout
                ours = subprocess.run(bound, check=True, capture_output=True, text=True).stdout
                after = subprocess.run(plain, check=True, capture_output=True, text=True).stdout
                if before == after:
                    break
            else:
                pytest.fail("netstat's output kept changing")
        finally:
            server.stdin.close()
            server.wait(timeout=10)
    assert ours == before
    assert all(f":{port} " in ours for port in ports)
    assert "LISTEN" in ours and "ESTABLISHED" in ours
    host = subprocess.run(["netstat", "-tuanW"], check=True, capture_output=True, text=True)
    assert not any(f":{port} " in host.stdout for port in ports[:1])


# -- pids -------------------------------------------------------------------


@pytest.mark.kernel
def test_a_pid_namespace_sees_its_own_processes(mount):
    found = in_container(mount, ["unshare", "--pid", "--fork", "--mount-proc"], "pid")
    listed = [int(name) for name in found["listing"] if name.isdigit()]
    assert sorted(found["listing"][:2]) == ["all", "self"]
    assert listed == found["proc_listing"]
    assert found["self"] == 1
    assert [int(tid) for tid in columns(found["task_self"], 1)] == [1]
    tids = {int(tid) for tid in columns(found["task_all"], 1)}
    assert tids == set(found["proc_listing"]), "task/all: only the namespace's tasks"
    ppids = dict(zip(columns(found["task_all"], 1), columns(found["task_all"], 2)))
    assert ppids["1"] == "0" and ppids[str(found["child"])] == "1"
    child_fds = parse_task_file(found["task_file_child"])
    assert {(line.tgid, line.pid) for line in child_fds} == {(found["child"], found["child"])}
    assert sorted(line.fd for line in child_fds) == found["fds_child"]
    assert {line.tgid for line in parse_task_file(found["task_file_all"])} <= \
        set(found["proc_listing"])
    ours, proc = found["maps"]
    assert ours == proc
    prefixes = {int(line.split()[0]) for line in found["task_vma_all"].splitlines()}
    assert prefixes <= set(found["proc_listing"]) and found["child"] in prefixes
    own = [line.split() for line in found["sockets_self"].splitlines()[1:]]
    assert {int(fields[0]) for fields in own} == {1}
    assert set(found["pair"]) <= {int(fields[1]) for fields in own}
    tgids = {int(line.split()[0]) for line in found["sockets_all"].splitlines()[1:]}
    assert 1 in tgids and tgids <= set(found["proc_listing"])
    assert found["missing_errors"] == [2, 2, 2, 2], "a pid it does not number: ENOENT"


@pytest.mark.kernel
def test_a_name_means_the_readers_process(mount):
    """The kernel caches a looked-up name for every reader: the same name read
    at once from the host and from a pid namespace leads each to its own."""
    path = mount.mountpoint / "task" / "2"
    host_before = path.read_text()
    inside = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
         # Until the child has exec'd, its comm is the shell's.
         "sleep 60 & until [ \"$(cat /proc/2/comm)\" = sleep ]; do :; done; "
         f"cat {path}; cat /proc/2/comm; kill $!"],
        capture_output=True, text=True, timeout=30, check=True).stdout
    host_after = path.read_text()
    with open("/proc/2/comm") as f:
        host_comm = f.read().strip()
    assert host_before.split()[-1] == host_after.split()[-1] == host_comm
    lines = inside.splitlines()
    assert lines[1].split()[:2] == ["2", "2"] and lines[1].split()[-1] == "sleep"
    assert lines[2] == "sleep"


# -- users ------------------------------------------------------------------

UID_HOLDER = r"""
import socket, sys
tcp = socket.socket()
tcp.bind(("127.0.0.1", 0))
tcp.listen()
udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
udp.bind(("::1", 0))
print(tcp.getsockname()[1], udp.getsockname()[1], flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def sockets_of_uid(uid):
    """A process of `uid` (not root) holding a TCP listener and a UDP socket."""
    holder = subprocess.Popen(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
         "/usr/bin/python3", "-c", UID_HOLDER],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield [int(port) for port in holder.stdout.readline().split()]
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)


@pytest.mark.kernel
@pytest.mark.parametrize("id_map, expected", [("0 0 1\n", "65534"),
                                               ("0 0 1\n2000 1000 1\n", "2000")],
                         ids=["unmapped", "mapped"])
def test_uids_as_the_readers_user_namespace_maps_them(mount, id_map, expected):
    """A user namespace where root is root, and uid 1000 is unmapped or 2000."""
    with sockets_of_uid(1000) as ports:
        found = in_container(mount, ["unshare", "--user"], "uid", id_map=id_map)
    for name, (ours, proc) in found["uid"].items():
        # Compared: each socket's uid. (Socket addresses, %pK, are zeros for a
        # reader without CAP_SYSLOG, where /proc at kptr_restrict 0 prints a
        # hashed value: README, the socket views.)
        assert ours == proc, name
    shown = {local: uid for local, _, _, uid in found["uid"]["tcp"][0]}
    assert shown[f"0100007F:{ports[0]:04X}"] == expected
    shown = {local: uid for local, _, _, uid in found["uid"]["udp6"][0]}
    assert shown[f"00000000000000000000000001000000:{ports[1]:04X}"] == expected
    task_uids = dict(zip(columns(found["task_all"], 1), columns(found["task_all"], 3)))
    compared = [tid for tid in task_uids if tid in found["uids"]]
    assert len(compared) > 10
    assert all(task_uids[tid] == found["uids"][tid] for tid in compared)
    assert expected in {task_uids[tid] for tid in compared}


# -- what is held ------------------------------------------------------------


@pytest.mark.kernel
def test_nothing_is_held_once_readers_are_done(mount):
    """The namespaces a container's reads held are let go with its files."""
    baseline = mount.fd_count()
    for _ in range(3):
        in_container(mount, ["unshare", "--net", "--pid", "--fork", "--mount-proc"],
                     "net", "pid")
    for _ in range(50):
        if mount.fd_count() <= baseline:
            break
        time.sleep(0.1)
    assert mount.fd_count() <= baseline


@pytest.mark.kernel
def test_the_hosts_reader_sees_the_host(mount):
    ours = [int(name) for name in os.listdir(mount.mountpoint / "task") if name.isdigit()]
    assert os.getpid() in ours
    text = (mount.mountpoint / "task_file" / str(os.getpid())).read_text()
    assert {line.tgid for line in parse_task_file(text)} == {os.getpid()}
    # Shown: every fd held before and after, and the one the read itself used.
    assert set(process_fds(os.getpid())) <= {line.fd for line in parse_task_file(text)}


# -- a daemon that may not look ----------------------------------------------

UNPRIVILEGED_CONTAINER = r"""
import json, socket, subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
print(json.dumps({"port": listener.getsockname()[1],
                  "ours": open(sys.argv[1] + "/tcp").read(),
                  "proc": open("/proc/net/tcp").read()}))
"""


@pytest.mark.kernel
def test_a_daemon_without_cap_sys_ptrace_finds_namespaces(tmp_path):
    """Without CAP_SYS_PTRACE the daemon may not open a reader's namespace files
    (the ptrace read check): it opens a user's as the user, and finds root's,
    whose capabilities it lacks, from the kernel."""
    from test_access import reachable_mount
    prefix = ["setpriv", "--bounding-set", "-sys_ptrace"]
    with reachable_mount("--allow-other", prefix=prefix) as daemon, \
            socket.socket() as host_listener:
        host_listener.bind(("127.0.0.1", 0))
        host_listener.listen()
        host_port = host_listener.getsockname()[1]
        status = open(f"/proc/{daemon.pid}/status").read()
        assert not int(status.split("CapEff:")[1].split()[0], 16) >> 19 & 1
        # A user's container: its own user and network namespaces.
        result = subprocess.run(
            ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
             "unshare", "--user", "--map-root-user", "--net",
             "/usr/bin/python3", "-c", UNPRIVILEGED_CONTAINER, str(daemon.mountpoint)],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        inside = json.loads(result.stdout)
        # Root on the host, with every capability the daemon lacks.
        on_host = (daemon.mountpoint / "tcp").read_text()
        quiet_log = daemon.log()
        # Such a root in a network namespace of its own: neither the daemon nor
        # root may open the other's namespace files, so it cannot be served.
        refused = subprocess.run(["unshare", "--net", "cat", str(daemon.mountpoint / "tcp")],
                                 capture_output=True, text=True, timeout=60)
        log = daemon.log()[len(quiet_log):]
    assert columns(inside["ours"], 1) == columns(inside["proc"], 1) == \
        [f"0100007F:{inside['port']:04X}"]
    assert hex_port(host_port) in on_host
    assert " ERROR" not in quiet_log, quiet_log
    assert refused.returncode != 0 and "Permission denied" in refused.stderr
    assert len(log.splitlines()) == 1 and "finding its namespaces" in log and "EACCES" in log


# -- views of one's own -------------------------------------------------------

UDP_PORTS = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("iter/udp")
int udp_ports(struct bpf_iter__udp *ctx)
{
	struct udp_sock *udp = ctx->udp_sk;

	if (udp)
		BPF_SEQ_PRINTF(ctx->meta->seq, "%u\n", udp->inet.sk.__sk_common.skc_num);
	return 0;
}
"""

PORT_READER = r"""
import socket, sys
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))
print(udp.getsockname()[1], open(sys.argv[1]).read().split())
"""


def test_a_view_of_ones_own_shows_the_readers_network_namespace(tmp_path):
    """Any view's walk is created in the reader's network namespace (not a kernel
    test: compiling a view in an emulated VM costs minutes)."""
    from test_dropin import dropin_daemon
    directory = tmp_path / "programs"
    directory.mkdir(mode=0o755)
    (directory / "udp_ports.bpf.c").write_text(UDP_PORTS)
    with dropin_daemon(tmp_path, directory) as daemon, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as host_socket:
        host_socket.bind(("127.0.0.1", 0))
        view = daemon.mountpoint / "udp_ports"
        result = subprocess.run(["unshare", "--net", sys.executable, "-c", PORT_READER,
                                 str(view)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr + daemon.log()
        on_host = view.read_text().split()
        host_port = str(host_socket.getsockname()[1])
    port, shown = result.stdout.split(" ", 1)
    assert eval(shown) == [port]
    assert host_port in on_host and port not in on_host
