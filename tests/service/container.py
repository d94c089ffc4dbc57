"""A Debian 12 root booted with systemd-nspawn, for the service tests.

The root debootstrap built (make test-service keeps it in build/service) is
never written to: each container boots an overlay over it, whose upper
directory lives in a scratch directory of its own, so that a reboot keeps what
the tests changed and the next run starts clean. Commands run inside with
nsenter on the container's PID 1, in all its namespaces.

This host has no systemd as PID 1: nspawn registers with no machined
(--register=no) and keeps the cgroup it was started in (--keep-unit). The
daemon needs /dev/fuse and bpffs, every capability nspawn would drop, and the
bpf() system call its filter would refuse."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

NSPAWN = ["systemd-nspawn", "--boot", "--quiet", "--register=no", "--keep-unit",
          "--capability=all", "--system-call-filter=bpf",
          "--bind=/dev/fuse", "--bind=/sys/fs/bpf", "--console=read-only"]
BOOT_TIMEOUT = 60           # from nspawn's start to systemd's "running"
POWEROFF_TIMEOUT = 30
COMMAND_TIMEOUT = 60
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ContainerError(Exception):
    pass


def wait_until(condition, seconds, what, interval=0.05):
    """condition()'s first true value, tried until `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ContainerError(f"{what}: not within {seconds} s")
        time.sleep(interval)


class Container:
    """An overlay over `root`, booted with systemd-nspawn; a context manager
    that powers it off, unmounts the overlay and removes its scratch
    directory however the tests ended."""

    def __init__(self, root):
        self.root = Path(root)
        # nspawn keeps a directory by this name under /run/systemd/nspawn while
        # the container runs: one of its own for each run.
        self.name = f"iterfs-test-{os.getpid()}"
        self.scratch = Path(tempfile.mkdtemp(prefix="iterfs-service-"))
        self.directory = self.scratch / "root"       # the overlay: the container's /
        self.nspawn = None
        self.pid1 = None
        self.state = None           # systemctl is-system-running once booted
        self.boots = 0
        self._mounted = False

    def __enter__(self):
        try:
            for name in ("upper", "work", "root"):
                (self.scratch / name).mkdir()
            subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir={self.root},upperdir={self.scratch / 'upper'},"
                 f"workdir={self.scratch / 'work'}", str(self.directory)],
                check=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
            self._mounted = True
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    # -- booting and powering off -------------------------------------------

    def boot(self):
        """Boot, and return once systemd says the system is up (running or
        degraded): the seconds that took."""
        self.boots += 1
        log = open(self.scratch / f"console-{self.boots}.log", "wb")
        began = time.monotonic()
        self.nspawn = subprocess.Popen(
            [*NSPAWN, f"--directory={self.directory}", f"--machine={self.name}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        self.pid1 = wait_until(self._find_pid1, BOOT_TIMEOUT, "the container's PID 1")

        def up():
            if self.nspawn.poll() is not None:
                raise ContainerError(f"systemd-nspawn exited with {self.nspawn.returncode}: "
                                     + self.console()[-2000:])
            state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
            return state in ("running", "degraded") and state

        self.state = wait_until(up, BOOT_TIMEOUT, "systemd in the container up", interval=0.2)
        return time.monotonic() - began

    def _find_pid1(self):
        """The container's init: a process under nspawn that is PID 1 of a PID
        namespace of its own."""
        if self.nspawn.poll() is not None:
            raise ContainerError(f"systemd-nspawn exited with {self.nspawn.returncode}: "
                                 + self.console()[-2000:])
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                status = Path(f"/proc/{entry.name}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
            if fields.get("NSpid", "").split()[1:] == ["1"] and \
                    self._descends_from_nspawn(int(entry.name)):
                return int(entry.name)
        return None

    def _descends_from_nspawn(self, pid):
        while pid > 1:
            if pid == self.nspawn.pid:
                return True
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return False
            pid = int(stat.rpartition(")")[2].split()[1])
        return False

    def poweroff(self, command="poweroff"):
        """systemctl poweroff (or reboot) inside, and wait for nspawn to exit:
        its exit status (133 after a reboot)."""
        if self.nspawn is None or self.nspawn.poll() is not None:
            return None if self.nspawn is None else self.nspawn.returncode
        self.run(["systemctl", "--no-block", command], check=False)
        try:
            return self.nspawn.wait(timeout=POWEROFF_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._kill_nspawn()
            raise ContainerError(f"no {command} within {POWEROFF_TIMEOUT} s")
        finally:
            self.pid1 = None

    def reboot(self):
        """A reboot inside ends nspawn (status 133), as systemd-nspawn@.service
        would see it; booting again is what that service's restart does."""
        status = self.poweroff("reboot")
        if status != 133:
            raise ContainerError(f"systemd-nspawn exited with {status} at the reboot, not 133")
        return self.boot()

    def _kill_nspawn(self):
        # nspawn ends the container when it is told to: SIGTERM makes it ask for
        # a poweroff, SIGKILL of nspawn kills the container with it.
        for signum, seconds in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if self.nspawn.poll() is not None:
                return
            self.nspawn.send_signal(signum)
            try:
                self.nspawn.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                pass

    def close(self):
        try:
            if self.nspawn is not None and self.nspawn.poll() is None:
                try:
                    self.poweroff()
                except ContainerError:
                    pass
                self._kill_nspawn()
        finally:
            if self._mounted:
                subprocess.run(["umount", str(self.directory)], timeout=COMMAND_TIMEOUT)
                self._mounted = False
            shutil.rmtree(self.scratch, ignore_errors=True)

    def console(self):
        """What nspawn printed during the last boot, systemd's console."""
        try:
            return (self.scratch / f"console-{self.boots}.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- inside ------------------------------------------------------------

    def command(self, argv):
        """`argv` as run inside: root in all the container's namespaces."""
        if self.pid1 is None:
            raise ContainerError("the container is not running")
        return ["nsenter", f"--target={self.pid1}", "--mount", "--uts", "--ipc", "--net",
                "--pid", "--cgroup", "--", "/usr/bin/env", "-i", f"PATH={PATH}",
                "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "LANG=C.UTF-8", *argv]

    def run(self, argv, check=True, timeout=COMMAND_TIMEOUT, **kwargs):
        """Run `argv` inside; its output as text. check: a non-zero exit raises
        with what it printed."""
        result = subprocess.run(self.command(argv), capture_output=True, text=True,
                                timeout=timeout, **kwargs)
        if check and result.returncode != 0:
            raise ContainerError(f"{argv} exited with {result.returncode}: "
                                 f"{result.stdout}{result.stderr}")
        return result

    def shell(self, script, **kwargs):
        return self.run(["/bin/sh", "-c", script], **kwargs)

    def path(self, inside):
        """Where the container's file `inside` is, seen from the host (the overlay)."""
        return self.directory / str(inside).lstrip("/")

    def unit(self, name, *properties):
        """{property: value} of a unit, from systemctl show."""
        shown = self.run(["systemctl", "show", name, *(f"--property={p}" for p in properties)])
        return dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)

    def journal_cursor(self):
        """Where the journal ends now: what journal() reads after."""
        last = self.run(["journalctl", "--output=json", "--lines=1", "--no-pager"]).stdout
        return json.loads(last)["__CURSOR"] if last.strip() else None

    def journal(self, cursor=None, unit=None, boot=0):
        """The journal's lines after `cursor`, or of a boot (0 this one, -1 the
        one before), of `unit` (and of systemd about it), each `identifier: message`."""
        argv = ["journalctl", "--output=json", "--no-pager", "--quiet"]
        argv += [f"--after-cursor={cursor}"] if cursor else [f"--boot={boot}"]
        lines = []
        for line in self.run(argv).stdout.splitlines():
            entry = json.loads(line)
            # Not --unit: systemd 252's journalctl, given a match with
            # --after-cursor, skips the first entry that matches.
            if unit and unit not in (entry.get("_SYSTEMD_UNIT"), entry.get("UNIT")):
                continue
            message = entry.get("MESSAGE", "")
            if isinstance(message, list):       # not UTF-8: bytes
                message = bytes(message).decode(errors="replace")
            lines.append(f"{entry.get('SYSLOG_IDENTIFIER', '?')}: {message}")
        return lines

    def journal_until(self, cursor, unit, wanted, seconds=10):
        """journal(cursor, unit) once it holds a line containing each of
        `wanted` (journald writes a service's output a moment after it)."""
        def complete():
            lines = self.journal(cursor, unit)
            return all(any(w in line for line in lines) for w in wanted) and lines
        try:
            return wait_until(complete, seconds, "journal lines", interval=0.1)
        except ContainerError:
            lines = self.journal(cursor, unit)
            missing = [w for w in wanted if not any(w in line for line in lines)]
            raise ContainerError(f"journal lacks {missing}:\n" + "\n".join(lines)) from None
