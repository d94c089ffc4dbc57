"""iterfs as a service: the systemd unit, crash recovery, load, leaks and shutdown."""

import concurrent.futures
import contextlib
import errno
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import (FILE_HOLDER, OBJECTS, ROOT, TEST_OBJECTS, Daemon, hold_sockets,
                      iterator_links, kill_quietly, mount_copies, running_daemon, stop_process)

UNIT = ROOT / "systemd" / "iterfs.service"
STOP_LIMIT = 5          # seconds from a signal or an unmount to the daemon's exit
CAPABILITY_BITS = {"CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21,
                   "CAP_SYSLOG": 34, "CAP_PERFMON": 38, "CAP_BPF": 39}


def unit_settings(path):
    """{key: value} of the unit's [Service] section (the last value of a key)."""
    settings, section = {}, None
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings[key] = value
    return settings


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`make install` into a DESTDIR, with the default PREFIX /usr/local."""
    destination = tmp_path_factory.mktemp("destdir")
    subprocess.run(["make", "-s", "install", f"DESTDIR={destination}"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return destination


def with_install(destination, command):
    """`command` in a mount namespace of its own where the installed tree is at
    /usr/local, as if installed there, without touching the host's /usr/local."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0/usr/local" /usr/local && exec "$@"', str(destination), *command]


def test_install_lays_out_command_views_and_unit(installed):
    prefix = installed / "usr/local"
    assert os.access(prefix / "sbin/iterfs", os.X_OK)
    installed_views = sorted(p.name for p in (prefix / "lib/iterfs/progs").glob("*.bpf.o"))
    assert installed_views == sorted(p.name for p in OBJECTS.glob("*.bpf.o"))
    # What the daemon runs itself (the process listing), beside the views.
    internal = sorted(p.name for p in (prefix / "lib/iterfs/internal").glob("*.bpf.o"))
    assert internal == sorted(p.name for p in (OBJECTS.parent / "internal").glob("*.bpf.o"))
    assert internal
    # What views of one's own include, for the daemon to compile them with.
    installed_headers = sorted(p.name for p in (prefix / "lib/iterfs/include").glob("*.h"))
    assert installed_headers == sorted(p.name for p in (ROOT / "progs").glob("*.h"))
    assert '--headers "$lib/include"' in (prefix / "sbin/iterfs").read_text()
    unit = (prefix / "lib/systemd/system/iterfs.service").read_text()
    assert unit == UNIT.read_text()         # PREFIX is /usr/local: nothing rewritten


def test_installed_command_runs_no_code_of_the_working_directory(installed, tmp_path):
    """Root runs `iterfs` wherever it stands: a package named iterfs there, or on
    PYTHONPATH, or in the user's site-packages, must not be what runs."""
    planted = tmp_path / "planted"
    (planted / "iterfs").mkdir(parents=True)
    marker = tmp_path / "ran"
    (planted / "iterfs" / "__init__.py").write_text("")
    (planted / "iterfs" / "__main__.py").write_text(f"open({str(marker)!r}, 'w')\n")
    command = installed / "usr/local/sbin/iterfs"
    environment = dict(os.environ, PYTHONPATH=str(planted), PYTHONUSERBASE=str(planted))
    result = subprocess.run([str(command), "--help"], cwd=planted, env=environment,
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("usage:"), result
    assert not marker.exists()


def test_install_rewrites_the_unit_for_another_prefix(tmp_path):
    subprocess.run(["make", "-s", "install", f"DESTDIR={tmp_path}", "PREFIX=/opt/iterfs"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    settings = unit_settings(tmp_path / "opt/iterfs/lib/systemd/system/iterfs.service")
    assert settings["ExecStart"] == "/opt/iterfs/sbin/iterfs /iterfs"
    assert os.access(tmp_path / "opt/iterfs/sbin/iterfs", os.X_OK)


def test_unit_verifies_clean(installed):
    result = subprocess.run(with_install(installed, ["systemd-analyze", "verify", str(UNIT)]),
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result


def test_unit_keeps_the_mount_in_the_host_namespace():
    """Each of these gives the service a mount namespace of its own, where the
    mount would be invisible to everyone else."""
    settings = unit_settings(UNIT)
    private = {"PrivateTmp", "PrivateDevices", "PrivateMounts", "ProtectSystem", "ProtectHome",
               "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
               "ProtectControlGroups", "ProtectProc", "ReadOnlyPaths", "InaccessiblePaths",
               "TemporaryFileSystem", "BindPaths", "RootDirectory", "MountFlags"}
    assert not private & set(settings)
    assert settings["Type"] == "notify"
    assert settings["Restart"] == "on-failure"
    assert settings["ExecReload"] == "/usr/local/sbin/iterfs --reload $MAINPID /iterfs"
    assert "RequiresMountsFor" not in settings
    assert int(settings["OOMScoreAdjust"]) < 0


# A view of one's own that includes iterfs.h: the installed headers must serve.
MAP_NAMES = """// SPDX-License-Identifier: GPL-2.0
#include "iterfs.h"

char LICENSE[] SEC("license") = "GPL";

SEC("iter/bpf_map")
int map_names(struct bpf_iter__bpf_map *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct bpf_map *map = ctx->map;

	if (!map)
		return 0;
	if (ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(seq, "%8s %s\\n", "id", "name");
	BPF_SEQ_PRINTF(seq, "%8u %s\\n", map->id, map->name);
	return 0;
}
"""


def test_exec_start_says_ready_once_the_mount_answers(installed, tmp_path):
    """The unit's ExecStart, with its capability bounding set and a NOTIFY_SOCKET
    of the test's: READY=1 arrives when the mount already answers. Its
    ExecReload then loads a view dropped into a program directory, and returns
    once the view is served."""
    settings = unit_settings(UNIT)
    programs = tmp_path / "programs"
    programs.mkdir(mode=0o755)
    os.chmod(programs, 0o755)
    command = [str(tmp_path / "mnt") if word == "/iterfs" else word
               for word in shlex.split(settings["ExecStart"])]
    command += ["--progs", str(programs), "--cache", str(tmp_path / "cache")]
    capabilities = settings["CapabilityBoundingSet"].split()
    bounding = "-all," + ",".join("+" + c[len("CAP_"):].lower() for c in capabilities)
    (tmp_path / "mnt").mkdir()
    notify_path = tmp_path / "notify"
    environment = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    environment["NOTIFY_SOCKET"] = str(notify_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(30)
        log = open(tmp_path / "daemon.log", "w+")
        daemon = subprocess.Popen(
            with_install(installed, ["setpriv", "--bounding-set", bounding, *command]),
            env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            assert notify.recv(4096) == b"READY=1"
            # unshare, sh and setpriv each exec the next: this pid is the daemon's.
            answer = subprocess.run(
                ["nsenter", f"--target={daemon.pid}", "--mount", "cat",
                 str(tmp_path / "mnt" / "netlink")],
                capture_output=True, text=True, timeout=10)
            assert answer.returncode == 0 and answer.stdout.startswith("sk "), answer
            # Root reads the kernel's addresses, as from /proc/kallsyms.
            answer = subprocess.run(
                ["nsenter", f"--target={daemon.pid}", "--mount", "head", "-1",
                 str(tmp_path / "mnt" / "ksym")],
                capture_output=True, text=True, timeout=10)
            with open("/proc/kallsyms") as kallsyms:
                first = kallsyms.readline()
            assert int(first.split()[0], 16) != 0
            assert answer.returncode == 0 and answer.stdout == first, answer
            status = Path(f"/proc/{daemon.pid}/status").read_text()
            held = int(re.search(r"^CapBnd:\s*(\w+)", status, re.M).group(1), 16)
            assert held == sum(1 << CAPABILITY_BITS[c] for c in capabilities)
            # systemctl reload runs ExecReload with the daemon as $MAINPID, in
            # the daemon's mount namespace here (the mount and /usr/local are there).
            (programs / "map_names.bpf.c").write_text(MAP_NAMES)
            reload = [{"$MAINPID": str(daemon.pid), "/iterfs": str(tmp_path / "mnt")}.get(w, w)
                      for w in shlex.split(settings["ExecReload"])]
            reloaded = subprocess.run(
                ["nsenter", f"--target={daemon.pid}", "--mount", *reload],
                capture_output=True, text=True, timeout=90)
            assert reloaded.returncode == 0 and reloaded.stderr == "", reloaded
            # No waiting: when ExecReload returns, the view is served.
            answer = subprocess.run(
                ["nsenter", f"--target={daemon.pid}", "--mount", "cat",
                 str(tmp_path / "mnt" / "map_names")],
                capture_output=True, text=True, timeout=10)
            assert answer.returncode == 0 and answer.stdout.startswith("      id name\n"), \
                (answer, (tmp_path / "daemon.log").read_text())
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=STOP_LIMIT) == 0
        finally:
            kill_quietly(daemon)
            log.seek(0)
            output = log.read()
            log.close()
        assert "Traceback" not in output, output
        # Nothing fell back: the process listing program was found and loaded.
        assert " WARNING: " not in output and " ERROR: " not in output, output


def test_restart_after_sigkill_detaches_the_dead_mount(tmp_path):
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    killed = Daemon(mountpoint).wait_mounted()
    try:
        os.kill(killed.pid, signal.SIGKILL)
        killed.process.wait()
        with pytest.raises(OSError) as dead:
            os.listdir(mountpoint)
        assert dead.value.errno == errno.ENOTCONN
        with running_daemon(mountpoint) as daemon:
            assert (mountpoint / "netlink").read_text().startswith("sk ")
            detached = [line for line in daemon.log().splitlines() if "dead iterfs mount" in line]
            assert len(detached) == 1, daemon.log()
        assert not os.path.ismount(mountpoint)
    finally:
        killed.stop()


def test_a_live_mount_is_not_taken_over(tmp_path):
    with running_daemon(tmp_path / "mnt") as daemon:
        second = subprocess.run([sys.executable, str(ROOT / "mount.py"), str(daemon.mountpoint)],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 2
        assert second.stderr.strip().endswith("is already a mount"), second.stderr
        assert (daemon.mountpoint / "netlink").read_text().startswith("sk ")


@pytest.fixture
def failing_mount(tmp_path):
    """The built-in views plus `failing`, whose every read fails with EAGAIN."""
    objects = tmp_path / "objects"
    objects.mkdir()
    for path in OBJECTS.glob("*.bpf.o"):
        (objects / path.name).symlink_to(path)
    (objects / "failing.bpf.o").symlink_to(TEST_OBJECTS / "failing.bpf.o")
    with running_daemon(tmp_path / "mnt", objects=objects) as daemon:
        yield daemon


def test_errors_are_one_line_naming_the_file_and_errno(failing_mount):
    m = failing_mount.mountpoint
    fd = os.open(m / "failing", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as failed:     # one read: one request
            os.read(fd, 4096)
    finally:
        os.close(fd)
    assert failed.value.errno == errno.EAGAIN
    for name in ("999999999", "self", "all"):          # ENOENT, and two that succeed
        try:
            (m / "task" / name).read_bytes()
        except FileNotFoundError:
            pass
    assert not (m / "nothing_here").exists()
    errors = [line for line in failing_mount.log().splitlines() if " ERROR: " in line]
    assert errors == [errors[0]] and errors[0].endswith("failing: read: "
                                                        f"{os.strerror(errno.EAGAIN)} (EAGAIN)")
    assert (m / "netlink").read_text().startswith("sk ")


def test_debug_logs_each_request(tmp_path):
    with running_daemon(tmp_path / "mnt", "--debug") as daemon:
        (daemon.mountpoint / "netlink").read_text()
        # FUSE sends release() after close() returns: it may come a moment later.
        deadline = time.monotonic() + 5
        while "iterfs.fs DEBUG: release " not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()[-2000:]
            time.sleep(0.01)
        assert "iterfs.fs DEBUG: open " in daemon.log()


def test_no_timestamps_under_journald(tmp_path):
    environment = dict(os.environ, JOURNAL_STREAM="8:12345")
    result = subprocess.run([sys.executable, str(ROOT / "mount.py"), str(tmp_path / "missing")],
                            env=environment, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr == f"iterfs: mount point {tmp_path / 'missing'} does not exist\n"


# -- load, leaks, shutdown ---------------------------------------------------

TCP6_HEADER = (b"  sl  local_address                         remote_address                "
               b"        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode")
TCP6_TEXT = re.compile(re.escape(TCP6_HEADER) + rb"\n(?: *\d+: [0-9A-F]{32}:[0-9A-F]{4} "
                       rb"[0-9A-F]{32}:[0-9A-F]{4} [0-9A-F]{2} [0-9A-F]{8}:[0-9A-F]{8} "
                       rb"[0-9A-F]{2}:[0-9A-F]{8} [0-9A-F]{8} +\d+ +\d+ \d+ [^\n]*\n)*")
TASK_FILE_TEXT = re.compile(rb" +tgid +pid +fd +flags +pos path\n"
                            rb"(?: *\d+ +\d+ +\d+ +0[0-7]+ +-?\d+ [^\n]*\n)*")
READERS = 32
ROUNDS = 50
SOCKETS = 30000


def daemon_idle_state(daemon):
    """(fd count, iterator links) once the daemon is idle: a close() returns
    before the daemon has the release (FUSE sends it asynchronously), so wait
    until two looks a moment apart agree."""
    deadline = time.monotonic() + 10
    state = None
    while time.monotonic() < deadline:
        previous, state = state, daemon_state(daemon)
        if state == previous:
            break
        time.sleep(0.2)
    return state


def holder_ports(holders):
    """Each socket holder's listening port, as /proc/net/tcp6 writes it: b":PPPP "."""
    inodes = set()
    for process in holders.processes:
        for fd in os.listdir(f"/proc/{process.pid}/fd"):
            link = os.readlink(f"/proc/{process.pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    ports = []
    for line in Path("/proc/net/tcp6").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[9]) in inodes:      # LISTEN
            ports.append(b":" + fields[1].split(":")[1].encode() + b" ")
    assert len(ports) == len(holders.processes)
    return ports


def daemon_state(daemon):
    return daemon.fd_count(), iterator_links(daemon.program_ids())


def test_32_readers_get_complete_files(tmp_path):
    """32 readers, each reading /tcp6 over 30,000 sockets, task_file/all and small
    per-process files 50 times: no error, every file whole, nothing left open."""
    sockets = hold_sockets(SOCKETS)
    (tmp_path / "held").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", FILE_HOLDER, str(tmp_path / "held")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with running_daemon(tmp_path / "mnt") as daemon:
            m = daemon.mountpoint
            idle = daemon_idle_state(daemon)
            small = {path: path.read_bytes() for path in
                     (m / "task_file" / str(holder.pid), m / "task_vma" / str(holder.pid))}
            # Other sockets come and go; the held ones stay, each line naming its
            # holder's listening port once.
            ports = holder_ports(sockets)
            proc_tcp6 = Path("/proc/net/tcp6").read_bytes()
            held = {port: proc_tcp6.count(port) for port in ports}
            assert sum(held.values()) == SOCKETS + len(ports)
            # Processes whose files do not change: each must be there whole, each time.
            steady = {b"\n%8d %8d " % (pid, pid): len(os.listdir(f"/proc/{pid}/fd"))
                      for pid in [holder.pid] + [p.pid for p in sockets.processes]}

            def reader():
                for _ in range(ROUNDS):
                    tcp6 = (m / "tcp6").read_bytes()
                    assert TCP6_TEXT.fullmatch(tcp6), "tcp6 malformed"
                    lines = tcp6.count(b"\n") - 1
                    last = tcp6[tcp6.rindex(b"\n", 0, -1) + 1:]
                    assert int(last.split(b":", 1)[0]) == lines - 1, "tcp6 numbering"
                    for port, count in held.items():
                        assert tcp6.count(port) == count, "tcp6 incomplete"
                    files = (m / "task_file" / "all").read_bytes()
                    assert TASK_FILE_TEXT.fullmatch(files), "task_file/all malformed"
                    for prefix, count in steady.items():
                        assert files.count(prefix) == count, "task_file/all incomplete"
                    for path, expected in small.items():
                        assert path.read_bytes() == expected, path
                return True

            with concurrent.futures.ThreadPoolExecutor(READERS) as pool:
                results = [pool.submit(reader) for _ in range(READERS)]
                assert all(result.result() for result in results)
            assert daemon_idle_state(daemon) == idle
    finally:
        kill_quietly(holder)
        sockets.close()


def daemon_rss_kib(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s*(\d+) kB", status, re.M).group(1))


def test_100000_opens_leak_nothing(tmp_path):
    """100,000 open/read/close cycles over views of every shape: the daemon's fds
    and links are back where they were, and its memory grew by under 5 MiB."""
    cycles, workers = 100_000, 4
    with running_daemon(tmp_path / "mnt") as daemon:
        m = daemon.mountpoint
        paths = [m / "netlink", m / "ipv6_route", m / "task" / "self",
                 m / "task_file" / str(os.getpid()), m / "task_vma" / "self", m / "udp"]

        def cycle(count):
            for i in range(count):
                fd = os.open(paths[i % len(paths)], os.O_RDONLY)
                try:
                    assert os.read(fd, 65536)
                finally:
                    os.close(fd)

        def run(count):
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                for result in [pool.submit(cycle, count // workers) for _ in range(workers)]:
                    result.result()

        run(5_000)                  # warm up: thread pools, allocator arenas
        fds, links = daemon_idle_state(daemon)
        rss = daemon_rss_kib(daemon.pid)
        run(cycles)
        assert daemon_idle_state(daemon) == (fds, links)
        grown = daemon_rss_kib(daemon.pid) - rss
        assert grown < 5 * 1024, f"resident memory grew by {grown} KiB"


@contextlib.contextmanager
def readers_mid_read(tmp_path, count=8):
    """A daemon whose /tcp6 (30,000 sockets) `count` readers are in the middle of
    reading, 4 KiB at a time; yields (daemon, outcomes), outcomes filled in as
    each reader ends: "eof" or the errno's name. The daemon must exit 0."""
    sockets = hold_sockets(SOCKETS)
    try:
        mountpoint = tmp_path / "mnt"
        mountpoint.mkdir()
        daemon = Daemon(mountpoint).wait_mounted()
        started = threading.Barrier(count + 1)
        outcomes = []

        def reader():
            try:
                with open(mountpoint / "tcp6", "rb", buffering=0) as f:
                    f.read(4096)
                    started.wait()
                    while f.read(4096):
                        pass
                outcomes.append("eof")
            except OSError as error:
                outcomes.append(errno.errorcode[error.errno])

        threads = [threading.Thread(target=reader) for _ in range(count)]
        try:
            for thread in threads:
                thread.start()
            started.wait(timeout=30)
            yield daemon, outcomes
        finally:
            status = daemon.stop()
            for thread in threads:
                thread.join(timeout=30)
        assert status == 0 and "Traceback" not in daemon.log(), daemon.log()
    finally:
        sockets.close()


def test_unmount_with_8_readers_mid_read(tmp_path):
    """Lazy unmount: each reader's open file reads on to its end, then the daemon
    exits 0 within the limit."""
    with readers_mid_read(tmp_path) as (daemon, outcomes):
        subprocess.run(["fusermount3", "-u", "-z", str(daemon.mountpoint)], check=True)
        unmounted = time.monotonic()
        assert daemon.process.wait(timeout=STOP_LIMIT + 10) == 0, daemon.log()
        assert time.monotonic() - unmounted < STOP_LIMIT
    assert outcomes == ["eof"] * 8, outcomes


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_with_8_readers_mid_read(tmp_path, signum):
    """The readers' files end (at EOF, or with an error once the mount is gone)
    and the daemon exits 0 within the limit."""
    with readers_mid_read(tmp_path) as (daemon, outcomes):
        signalled = time.monotonic()
        daemon.process.send_signal(signum)
        assert daemon.process.wait(timeout=STOP_LIMIT + 10) == 0, daemon.log()
        assert time.monotonic() - signalled < STOP_LIMIT
    assert len(outcomes) == 8, outcomes


def test_a_mount_another_namespace_holds_outlives_a_lazy_unmount(tmp_path):
    """A process that unshared its mounts while iterfs was mounted holds a copy
    of the mount: after a lazy unmount here it is still served there (the
    kernel frees a detached mount with its last user), so the daemon runs on;
    SIGTERM ends it with 0 within the limit (conftest's Daemon.stop() relies
    on this)."""
    with running_daemon(tmp_path / "mnt") as daemon:
        holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                   "echo ready; exec sleep 60"], stdout=subprocess.PIPE)
        try:
            assert holder.stdout.readline() == b"ready\n"
            copy = Path(f"/proc/{holder.pid}/root") / daemon.mountpoint.relative_to("/")
            subprocess.run(["fusermount3", "-u", "-z", str(daemon.mountpoint)], check=True)
            assert not os.path.ismount(daemon.mountpoint)
            assert mount_copies(daemon.device) == [holder.pid]
            time.sleep(STOP_LIMIT)
            assert daemon.process.poll() is None, daemon.log()
            assert (copy / "tcp").read_bytes().startswith(b"  sl  local_address")
            signalled = time.monotonic()
            daemon.process.terminate()
            assert daemon.process.wait(timeout=STOP_LIMIT + 10) == 0, daemon.log()
            assert time.monotonic() - signalled < STOP_LIMIT
        finally:
            stop_process(holder)
