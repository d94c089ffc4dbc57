"""Processes and threads as /proc names them: strict pid names, tgid lookup."""

import errno
import os
import re

# Canonical ASCII decimal only: no sign, no leading zero, no underscore, no other
# script's digits (int() accepts "1_0", " 7" and "٣"; this does not).
_PID_NAME = re.compile(rb"[1-9][0-9]{0,9}\Z")


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


def exists(pid):
    """Whether a process or thread with this id is alive (or a zombie)."""
    return os.path.exists(f"/proc/{pid}")


def thread_group(tid):
    """The tgid of the process a thread belongs to; ProcessLookupError if gone."""
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Tgid:"):
                    return int(line[5:])
    except (FileNotFoundError, ProcessLookupError):
        pass
    raise ProcessLookupError(errno.ESRCH, f"no process or thread {tid}")


def live_processes():
    """Every live process's tgid, as `ls /proc` shows them, in ascending order."""
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
