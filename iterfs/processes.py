"""Processes and threads as /proc names them: strict pid names, tgid lookup, and
who may read what of them."""

import dataclasses
import errno
import os
import re
import time


# Canonical ASCII decimal only: no sign, no leading zero, no underscore, no other
# script's digits (int() accepts "1_0", " 7" and "٣"; this does not).
_PID_NAME = re.compile(rb"[1-9][0-9]{0,9}\Z")


# hidepid= as /proc's mount options give it (proc(5)): a number or, since 5.8, a name.
NOT_HIDDEN, NO_ACCESS, INVISIBLE, NOT_PTRACEABLE = 0, 1, 2, 4
_HIDEPID_NAMES = {"off": NOT_HIDDEN, "noaccess": NO_ACCESS, "invisible": INVISIBLE,
                  "ptraceable": NOT_PTRACEABLE}
# How long a reading of /proc's options is used: a remount shows within this.
HIDEPID_TIMEOUT = 1.0


@dataclasses.dataclass(frozen=True)
class HidePid:
    """/proc's hidepid= and gid= (proc(5)): whom /proc hides processes from."""
    level: int = NOT_HIDDEN
    gid: int = None          # a group whose members see every process (but at
                             # level NOT_PTRACEABLE)

    def exempts(self, groups):
        return self.level != NOT_PTRACEABLE and self.gid is not None and self.gid in groups

    @classmethod
    def parse(cls, options):
        """From the super options of a proc mount, e.g. "rw,hidepid=2,gid=27"."""
        values = dict(option.partition("=")[::2] for option in options.split(","))
        level = values.get("hidepid", "0")
        level = _HIDEPID_NAMES[level] if level in _HIDEPID_NAMES else int(level)
        gid = int(values["gid"]) if "gid" in values else None
        return cls(level, gid)


def proc_hidepid(mountinfo="/proc/self/mountinfo"):
    """The hidepid of the proc mount at /proc in the daemon's mount namespace
    (the last mounted there, which is the one seen)."""
    found = HidePid()
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            separator = fields.index("-")
            if fields[4] == "/proc" and fields[separator + 1] == "proc":
                found = HidePid.parse(fields[separator + 3])
    return found


class HidePidCache:
    """proc_hidepid(), read again at most every HIDEPID_TIMEOUT seconds."""

    def __init__(self):
        self._value, self._read_at = None, None

    def __call__(self):
        now = time.monotonic()
        if self._read_at is None or now - self._read_at > HIDEPID_TIMEOUT:
            self._value, self._read_at = proc_hidepid(), now
        return self._value


def may_ptrace_read(pid):
    """Whether the calling thread (acting as a reader: credentials.acting_as)
    passes the ptrace read check on `pid`, which decides what hidepid hides:
    reading /proc/<pid>/ns/pid asks exactly that (PTRACE_MODE_READ_FSCREDS),
    kernel threads included. ProcessLookupError if it is gone."""
    try:
        os.readlink(f"/proc/{pid}/ns/pid")
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessLookupError(errno.ESRCH, f"no process or thread {pid}") from None
    except PermissionError:
        return False
    return True


def read_pid_max():
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read())


def parse_pid(name, pid_max):
    """The pid a directory entry name stands for, or None if it names none."""
    return parse_id(name, pid_max)


def parse_id(name, maximum):
    """The id (pid, map id) a name stands for, as /proc names pids; or None."""
    if not _PID_NAME.match(name):
        return None
    number = int(name)
    return number if number <= maximum else None


def owner(pid):
    """(uid, gid) owning /proc/<pid>: the task's effective ids, or root's while it
    is not dumpable (task_dump_owner()); ProcessLookupError if it is gone."""
    try:
        status = os.stat(f"/proc/{pid}")
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no process or thread {pid}") from None
    return status.st_uid, status.st_gid


def thread_group(tid):
    """The tgid of the process a thread belongs to; ProcessLookupError if gone."""
    # Most ids asked about are processes': pidfd_open() takes only a thread
    # group's leader, for a quarter of what reading its status costs.
    try:
        os.close(os.pidfd_open(tid))
        return tid
    except ProcessLookupError:
        raise ProcessLookupError(errno.ESRCH, f"no process or thread {tid}") from None
    except OSError:
        pass        # ENOENT: a thread that leads no group (older kernels: EINVAL)
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Tgid:"):
                    return int(line[5:])
    except (FileNotFoundError, ProcessLookupError):
        pass
    raise ProcessLookupError(errno.ESRCH, f"no process or thread {tid}")


def live_processes():
    """Every live process's tgid as a name, as `ls /proc` lists them: /proc
    lists them in ascending order already."""
    return [name for name in os.listdir(b"/proc") if name.isdigit()]
