"""The installed unit under a real systemd: a Debian 12 root (systemd 252)
booted with systemd-nspawn, driven with systemctl from inside, as users run it.

One container for the module; the tests run in order, each from the state the
previous one left, and each starts the service itself if it needs it running.
What each step logged is taken from the journal after a cursor read before it."""

import re
import subprocess
import time
from pathlib import Path

from container import wait_until

ROOT = Path(__file__).resolve().parents[2]
UNIT = "iterfs.service"
MOUNT = "/iterfs"
DROP_IN = "/etc/iterfs/progs.d"
STOP_TIMEOUT = 10                   # the unit's TimeoutStopSec
RESTART_TIMEOUT = 30
CAPABILITIES = {"CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21,
                "CAP_SYSLOG": 34, "CAP_PERFMON": 38, "CAP_BPF": 39}
BPF = "\t[bpf]"
FAILED_UNMOUNT = "failed to unmount"


def unit_setting(key):
    """The unit file's value for `key` (its last)."""
    values = [line.split("=", 1)[1] for line in (ROOT / "systemd" / UNIT).read_text().splitlines()
              if line.startswith(f"{key}=")]
    return values[-1]


def started(container):
    """The service running, started now if it was not: its main pid."""
    if container.unit(UNIT, "ActiveState")["ActiveState"] != "active":
        container.run(["systemctl", "start", UNIT])
    return int(container.unit(UNIT, "MainPID")["MainPID"])


def of(lines, identifier):
    """The lines of one writer: systemd (PID 1), iterfs (the daemon's output).
    journald may take two writers' lines in another order than they were
    written a moment apart, so their order is checked within each."""
    return [line for line in lines if line.startswith(identifier + ": ")]


def ordered(lines, *wanted):
    """Whether a line containing each of `wanted` is there, in that order."""
    position = 0
    for text in wanted:
        position = next((i for i in range(position, len(lines)) if text in lines[i]), None)
        if position is None:
            return False
        position += 1
    return True


def clean(lines):
    """No traceback, error, or failed unmount among the unit's lines."""
    bad = [line for line in lines
           if "Traceback" in line or " ERROR: " in line or FAILED_UNMOUNT in line
           or "Invalid argument" in line]
    return not bad


def test_start_returns_once_the_mount_answers(container, record_property):
    record_property("boot", f"{container.first_boot_seconds:.1f} s")
    cursor = container.journal_cursor()
    began = time.monotonic()
    # READY=1 comes after the mount answers: a read right after start succeeds.
    answer = container.shell(f"systemctl start {UNIT} && head -1 {MOUNT}/netlink")
    record_property("start", f"{time.monotonic() - began:.1f} s")
    assert answer.stdout.startswith("sk ")
    state = container.unit(UNIT, "ActiveState", "SubState", "Type")
    assert state == {"ActiveState": "active", "SubState": "running", "Type": "notify"}
    lines = container.journal_until(cursor, UNIT, ["Started iterfs.service",
                                                   "INFO: mounted /iterfs: "])
    assert ordered(of(lines, "systemd"), "Starting iterfs.service", "Started iterfs.service")
    assert clean(lines), lines


def test_the_daemon_holds_the_unit_s_capabilities(container):
    pid = started(container)
    status = container.run(["cat", f"/proc/{pid}/status"]).stdout
    held = int(re.search(r"^CapBnd:\s*(\w+)", status, re.M).group(1), 16)
    assert held == sum(1 << CAPABILITIES[c] for c in unit_setting("CapabilityBoundingSet").split())


def without_bpf(text):
    return [line for line in text.splitlines() if not line.endswith(BPF)]


def test_ksym_for_root_equals_proc_kallsyms(container, record_property):
    """Under the unit's bounding set (CAP_SYSLOG in it) root reads the kernel's
    addresses, not zeros: /iterfs/ksym between two reads of /proc/kallsyms,
    equal to them byte for byte, but for the [bpf] lines, which come and go
    with every program loaded on the host (tests/test_ksym.py)."""
    started(container)
    separator = "--- iterfs test ---"
    for attempt in range(1, 11):
        texts = container.shell(f"cat /proc/kallsyms; echo '{separator}'; cat {MOUNT}/ksym; "
                                f"echo '{separator}'; cat /proc/kallsyms").stdout
        before, ours, after = texts.split(separator + "\n")
        if before == ours == after:
            break
    record_property("ksym", f"{len(ours.splitlines())} lines, equal on attempt {attempt}")
    assert without_bpf(before) == without_bpf(ours) == without_bpf(after)
    first = ours.splitlines()[0]
    assert int(first.split()[0], 16) != 0, first


def test_reload_serves_a_new_view_when_it_returns(container, record_property):
    """The issue's `systemctl reload iterfs && cat /iterfs/new`, for a view
    dropped into progs.d (a compiled one: the root has no clang), then for the
    same view removed."""
    started(container)
    container.run(["install", "-d", "-m", "0755", DROP_IN])
    object_file = ROOT / "build" / "progs" / "netlink.bpf.o"
    container.path(f"{DROP_IN}/netlink_again.bpf.o").write_bytes(object_file.read_bytes())
    cursor = container.journal_cursor()
    began = time.monotonic()
    answer = container.shell(f"systemctl reload {UNIT} && head -1 {MOUNT}/netlink_again",
                             check=False)
    record_property("reload", f"{time.monotonic() - began:.2f} s")
    assert answer.returncode == 0 and answer.stdout.startswith("sk "), answer
    status = container.run(["cat", f"{MOUNT}/.status"]).stdout
    assert status.endswith("\nreload 1 done\n"), status
    lines = container.journal_until(cursor, UNIT, ["Reloaded iterfs.service", "INFO: reloaded: "])
    assert ordered(of(lines, "iterfs"), "(reload 1)", "views: added netlink_again",
                   "INFO: reloaded: "), lines
    # systemd says Reloaded only once the daemon has finished the rescan; the
    # reload command read that at least one poll (50 ms) after it was logged.
    assert ordered(lines, "Reloading iterfs.service", "INFO: reloaded: ",
                   "Reloaded iterfs.service"), lines
    assert clean(lines), lines

    container.path(f"{DROP_IN}/netlink_again.bpf.o").unlink()
    answer = container.shell(f"systemctl reload {UNIT} && ! test -e {MOUNT}/netlink_again",
                             check=False)
    assert answer.returncode == 0, answer
    assert container.run(["cat", f"{MOUNT}/.status"]).stdout.endswith("\nreload 2 done\n")


def test_stop_with_a_reader_holding_a_file(container, record_property):
    """A reader holds /iterfs/tcp open across the stop: the stop completes
    within TimeoutStopSec, the mount is gone, nothing is left to unmount and
    nothing says it failed to."""
    started(container)
    reader = subprocess.Popen(
        container.command(["/bin/sh", "-c", f"exec 3<{MOUNT}/tcp; echo held; read line"]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "held\n"
        cursor = container.journal_cursor()
        began = time.monotonic()
        container.run(["systemctl", "stop", UNIT], timeout=STOP_TIMEOUT + 20)
        seconds = time.monotonic() - began
        record_property("stop", f"{seconds:.2f} s with a reader")
        assert seconds < STOP_TIMEOUT
        assert reader.poll() is None            # the reader's file was not its end
    finally:
        reader.stdin.close()
        try:
            reader.wait(timeout=10)
        except subprocess.TimeoutExpired:
            reader.kill()
            reader.wait()
    assert container.unit(UNIT, "ActiveState", "Result") == {"ActiveState": "inactive",
                                                               "Result": "success"}
    assert container.run(["mountpoint", "-q", MOUNT], check=False).returncode != 0
    lines = container.journal_until(cursor, UNIT, ["Stopped iterfs.service",
                                                   "INFO: unmounted /iterfs"])
    assert ordered(of(lines, "systemd"), "Stopping iterfs.service", "Stopped iterfs.service")
    assert ordered(of(lines, "iterfs"), "INFO: SIGTERM: unmounting", "INFO: unmounted /iterfs")
    assert clean(lines), lines
    assert not any(line.startswith("fusermount3:") for line in lines), lines


def test_kill_9_and_the_restart(container, record_property):
    """The main process killed: Restart=on-failure brings the service back,
    its mount answers again, and ExecStopPost detached the dead one quietly."""
    killed = started(container)
    restarts = int(container.unit(UNIT, "NRestarts")["NRestarts"])
    cursor = container.journal_cursor()
    began = time.monotonic()
    container.shell(f"kill -9 {killed}")      # the shell's kill: the root has no procps

    def back():
        state = container.unit(UNIT, "ActiveState", "MainPID", "NRestarts")
        return (state["ActiveState"] == "active" and int(state["NRestarts"]) == restarts + 1
                and int(state["MainPID"]) not in (0, killed)) and state

    wait_until(back, RESTART_TIMEOUT, "the restart after kill -9", interval=0.1)
    record_property("restart", f"active again {time.monotonic() - began:.1f} s after kill -9")
    assert container.run(["head", "-1", f"{MOUNT}/netlink"]).stdout.startswith("sk ")
    lines = container.journal_until(cursor, UNIT, ["Started iterfs.service",
                                                   "INFO: mounted /iterfs: "])
    assert ordered(of(lines, "systemd"), "Main process exited, code=killed, status=9/KILL",
                   "Failed with result 'signal'", "Scheduled restart job, restart counter is at",
                   "Starting iterfs.service", "Started iterfs.service"), lines
    # ExecStopPost detached the dead mount: the new daemon found none.
    assert not any("dead iterfs mount" in line for line in lines), lines
    assert clean(lines), lines


def test_enabled_it_starts_at_boot(container, record_property):
    """systemctl enable, then a reboot of the container: iterfs is active
    after the boot, and the shutdown before it stopped iterfs cleanly."""
    started(container)
    container.run(["systemctl", "enable", UNIT])
    seconds = container.reboot()
    record_property("reboot", f"up again in {seconds:.1f} s")
    assert container.run(["systemctl", "is-enabled", UNIT]).stdout == "enabled\n"
    assert container.run(["systemctl", "is-active", UNIT], check=False).stdout == "active\n"
    assert container.run(["head", "-1", f"{MOUNT}/netlink"]).stdout.startswith("sk ")
    this_boot = container.journal_until(None, UNIT, ["Started iterfs.service",
                                                     "INFO: mounted /iterfs: "])
    assert ordered(of(this_boot, "systemd"), "Starting iterfs.service", "Started iterfs.service")
    # The journal is kept on disk (/var/log/journal): the boot before, from
    # the start of the daemon the reboot stopped.
    shutdown = container.journal(unit=UNIT, boot=-1)
    shutdown = shutdown[max(i for i, line in enumerate(shutdown) if "Started iterfs" in line):]
    assert ordered(of(shutdown, "systemd"), "Stopping iterfs.service", "Stopped iterfs.service")
    assert ordered(of(shutdown, "iterfs"), "SIGTERM: unmounting", "unmounted /iterfs")
    assert clean(this_boot) and clean(shutdown), (this_boot, shutdown)


def test_shutdown_order_needs_no_requires_mounts_for(container):
    """Without RequiresMountsFor=/iterfs the service still stops before
    systemd would unmount /iterfs: the mount unit systemd makes of it is
    ordered before local-fs.target, and the service after it."""
    started(container)
    mount = container.unit("iterfs.mount", "Before", "ActiveState")
    assert mount["ActiveState"] == "active"
    assert "local-fs.target" in mount["Before"].split()
    after = container.unit(UNIT, "After")["After"].split()
    assert "local-fs.target" in after and "iterfs.mount" not in after


def test_limits_as_systemd_has_them(container, record_property):
    """systemd holds the unit's limits; what the process gets under nspawn is
    the host's where the container may not raise it (no CAP_SYS_RESOURCE in
    the host's user namespace for nspawn to pass on): recorded, not failed."""
    pid = started(container)
    shown = container.unit(UNIT, "LimitNOFILE", "LimitNICE", "OOMScoreAdjust")
    assert shown == {"LimitNOFILE": unit_setting("LimitNOFILE"),
                     "LimitNICE": unit_setting("LimitNICE"),
                     "OOMScoreAdjust": unit_setting("OOMScoreAdjust")}
    limits = container.run(["cat", f"/proc/{pid}/limits"]).stdout
    open_files = re.search(r"^Max open files\s+(\S+)", limits, re.M).group(1)
    nice = re.search(r"^Max nice priority\s+(\S+)", limits, re.M).group(1)
    oom = container.run(["cat", f"/proc/{pid}/oom_score_adj"]).stdout.strip()
    record_property("process", f"open files {open_files}, nice limit {nice}, oom_score_adj {oom}")
