"""What the running kernel takes, told apart from our bugs.

Every built-in view is served where the kernel offers its iterator target and
takes a program for it, and `unsupported` with the kernel's reason where it
does not: never `rejected`, which would mean the kernel refused a program of
ours that it should take. Views that read kernel config values load and print
what /proc prints when no kernel config can be read.
"""

import gzip
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iterfs import bpf, kconfig

from conftest import (ALL_VIEWS, MOUNT_PY, MOUNT_TIMEOUT, OBJECTS, ROOT, STATUS,
                      kernel_refusal, needs_view, parse_status, view_target)

pytestmark = pytest.mark.kernel

KCONFIG_EXTERN = re.compile(r"^extern\s[^;]*?\b(CONFIG_\w+)\s+__kconfig", re.M)


def test_every_built_in_view_is_served_or_unsupported(mount):
    entries = parse_status((mount.mountpoint / STATUS).read_text())
    log = mount.log()
    for view in ALL_VIEWS:
        state, target, _, lines = entries[view]
        assert target == view_target(view)
        reason = kernel_refusal(target)
        if reason is None:
            assert (state, lines) == ("serving", []), (view, lines)
        else:
            assert (state, lines) == ("unsupported", [f"reason: {reason}"])
            assert f"iterfs.views INFO: view {view} unsupported: {reason}" in log
    assert " ERROR: " not in log, log


def test_probe_tells_a_missing_target_from_a_present_one():
    with bpf.KernelTargets() as targets:
        assert targets.refusal("task") is None          # every kernel with iterators
        assert targets.refusal("no_such_target") == (
            "iterator target no_such_target is not in this kernel "
            "(no bpf_iter_no_such_target in its BTF)")


# -- without a kernel config -------------------------------------------------

def kconfig_externs():
    sources = [*ROOT.glob("progs/*.[ch]"), *ROOT.glob("progs/internal/*.c")]
    return {name for path in sources for name in KCONFIG_EXTERN.findall(path.read_text())}


def test_every_config_value_a_view_reads_is_derived():
    """libbpf reads the config file as soon as one extern is left: every one
    the views declare must have a derived value."""
    externs = kconfig_externs()
    assert "CONFIG_HZ" in externs
    assert externs <= set(kconfig.derived())


def system_config():
    """The running kernel's config as {name: value}, '' for `is not set`."""
    for path in kconfig.config_paths():
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        config = {}
        for line in data.decode().splitlines():
            if match := re.fullmatch(r"(CONFIG_\w+)=(.*)", line):
                config[match[1]] = match[2]
            elif match := re.fullmatch(r"# (CONFIG_\w+) is not set", line):
                config[match[1]] = "n"
        if config:
            return config
    pytest.skip("no kernel config readable to compare with")


def vsyscall_mode(config):
    """What the [vsyscall] line is under these values: none, xonly or emulate."""
    if config.get("CONFIG_X86_VSYSCALL_EMULATION", "n") != "y" or \
            config.get("CONFIG_LEGACY_VSYSCALL_NONE", "n") == "y":
        return "none"
    return "xonly" if config.get("CONFIG_LEGACY_VSYSCALL_XONLY", "n") == "y" else "emulate"


def test_derived_values_are_the_kernels_own():
    """Equal to the config's, but for [vsyscall], which is derived from what the
    kernel does (a vsyscall= boot parameter included): the same line either way."""
    config = system_config()
    derived = {name: str(value) for name, value in kconfig.derived().items()}
    for name, value in derived.items():
        if name in config and "VSYSCALL" not in name:   # CONFIG_PAGE_SHIFT is 6.8's
            assert value == config[name], name
    if "vsyscall=" not in Path("/proc/cmdline").read_text():
        assert vsyscall_mode(derived) == vsyscall_mode(config)


class HiddenConfigDaemon:
    """mount.py in a mount namespace of its own where neither /boot/config-*
    nor /proc/config.gz can be read; its mount is read from inside it."""

    HIDE = ("mount -t tmpfs iterfs-test /boot && "
            "{ [ ! -e /proc/config.gz ] || mount --bind /dev/null /proc/config.gz; } && "
            'exec "$0" "$@"')

    def __init__(self, tmp_path):
        self.mountpoint = tmp_path / "mnt"
        self.mountpoint.mkdir()
        self.log_path = tmp_path / "mnt.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", self.HIDE,
                 sys.executable, str(MOUNT_PY), str(self.mountpoint), "--objects", str(OBJECTS)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def inside(self, *argv, **kwargs):
        return subprocess.run(["nsenter", "-t", str(self.process.pid), "-m", "--", *argv],
                              capture_output=True, **kwargs)

    def read(self, path):
        result = self.inside("cat", str(self.mountpoint / path), text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def wait_mounted(self):
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while self.inside("mountpoint", "-q", str(self.mountpoint)).returncode != 0:
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.05)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        """SIGTERM unmounts; the namespace goes with the process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@pytest.fixture(scope="module")
def hidden_config_mount(tmp_path_factory):
    daemon = HiddenConfigDaemon(tmp_path_factory.mktemp("hidden-config"))
    try:
        daemon.wait_mounted()
        yield daemon
    finally:
        status = daemon.stop()
        assert status == 0, daemon.log()
        assert "Traceback" not in daemon.log(), daemon.log()


def test_views_are_served_without_a_kernel_config(hidden_config_mount):
    daemon = hidden_config_mount
    assert "no kernel config readable" in daemon.log()
    entries = parse_status(daemon.read(STATUS))
    for view in ALL_VIEWS:
        expected = "unsupported" if kernel_refusal(view_target(view)) else "serving"
        assert entries[view][0] == expected, (view, entries[view])


def socket_line(text, local, remote, state):
    """The line of /proc/net/tcp's format for the connection between these two
    ports in this state. The local port alone is not enough: after the suite's
    connections, an ephemeral port is often in TIME_WAIT towards another peer."""
    wanted = [line.split() for line in text.splitlines()[1:]
              if line.split()[1].endswith(f":{local:04X}")
              and line.split()[2].endswith(f":{remote:04X}")
              and line.split()[3] == state]
    assert len(wanted) == 1, (local, remote, state, wanted)
    return wanted[0]


@needs_view("tcp")
def test_tcp_timers_without_a_kernel_config(hidden_config_mount):
    """The timer column is jiffies scaled by CONFIG_HZ: a TIME_WAIT socket's
    60 s must read as /proc reads it, so the measured HZ must be the kernel's."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        port = client.getsockname()[1]
        server_port = listener.getsockname()[1]
        peer, _ = listener.accept()
        client.close()                      # the client's side goes to TIME_WAIT
        peer.close()
        time.sleep(0.1)
        ours = socket_line(hidden_config_mount.read("tcp"), port, server_port, "06")
        proc = socket_line(Path("/proc/net/tcp").read_text(), port, server_port, "06")
    timer, when = ours[5].split(":")
    assert (timer, proc[5].split(":")[0]) == ("03", "03")
    # USER_HZ ticks left; the two reads are well under a second apart.
    assert abs(int(when, 16) - int(proc[5].split(":")[1], 16)) < 100, (ours, proc)
    assert 5000 < int(when, 16) <= 6000
    assert ours[:5] + ours[6:] == proc[:5] + proc[6:]


@needs_view("task_vma")
def test_task_vma_without_a_kernel_config(hidden_config_mount):
    """Page size and the [vsyscall] line come from config values."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        # sleep maps its locale files as it starts, later in an emulated VM:
        # ours is compared once /proc says the same before and after it.
        for _ in range(50):
            maps = Path(f"/proc/{sleeper.pid}/maps").read_text()
            ours = hidden_config_mount.read(f"task_vma/{sleeper.pid}")
            if Path(f"/proc/{sleeper.pid}/maps").read_text() == maps:
                break
            time.sleep(0.1)
        assert ours == maps
    finally:
        sleeper.kill()
        sleeper.wait()
