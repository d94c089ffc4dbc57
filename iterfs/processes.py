"""Processes and threads as /proc names them: strict pid names, tgid lookup, and
who may read what of them."""

import array
import collections
import dataclasses
import errno
import os
import re
import struct
import time

from . import bpf

# progs/internal/processes.bpf.c: struct identity, struct namespaces, struct numbered
_IDENTITY = struct.Struct("=QQII")
_NAMESPACES = struct.Struct("=QQIIII")
_NUMBERED = struct.Struct("=III")

Found = collections.namedtuple(
    "Found", "pid_ns user_ns pid_ns_inum user_ns_inum net_ns_inum pid_ns_level")
Numbered = collections.namedtuple("Numbered", "number tid tgid")

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


class ProcessList:
    """Every process's tgid from a task iterator (progs/internal/processes.bpf.c),
    ascending, as /proc lists them, numbered in the daemon's pid namespace. Walking
    the pid table spares the kernel the dentry /proc's listing makes for each
    process: 5,000 processes are listed in 1.8 ms rather than 3.7. A process the
    kernel hides from task iterators, whose views are empty, is not listed."""

    PROGRAM = "processes"
    IDENTITY = "identity"
    BATCH = 4096        # bytes a read: 1,024 tgids, so that a listing can start on them

    def __init__(self, path, content=None):
        self._object = bpf.load(path, content=content)
        try:
            self._program = self._object.program(self.PROGRAM)
            self._identity = self._object.program(self.IDENTITY)
            self._namespaces = self._object.program("namespaces")
            self._numbered = self._object.program("numbered")
        except BaseException:
            self._object.close()
            raise

    def identity(self, pid=None, tid=None):
        """What tells the process (of thread `tid`) apart from any other that
        may take its number: (its leader's start time, its exec count), for
        progs/opened.h. ProcessLookupError if it is gone."""
        with self._identity.attach_iterator(pid=pid, tid=tid) as link, link.open() as stream:
            record = stream.read(_IDENTITY.size)
        if len(record) != _IDENTITY.size:
            raise ProcessLookupError(errno.ESRCH, f"no process or thread {pid or tid}")
        start_boottime, exec_id, _, _ = _IDENTITY.unpack(record)
        return start_boottime, exec_id

    def namespaces(self, tid):
        """Thread `tid`'s namespaces as the kernel has them (processes.Found):
        their addresses and inode numbers. ProcessLookupError if it is gone."""
        with self._namespaces.attach_iterator(tid=tid) as link, link.open() as stream:
            record = stream.read(_NAMESPACES.size)
        if len(record) != _NAMESPACES.size:
            raise ProcessLookupError(errno.ESRCH, f"no thread {tid}")
        return Found(*_NAMESPACES.unpack(record))

    def numbered(self, opening):
        """Every task the pid namespace `opening` tells numbers (Numbered:
        that number, and the daemon's tid and tgid), in the iterator's order."""
        with self._numbered.attach_iterator() as link, link.open(opening) as stream:
            records = stream.readall()
        return [Numbered(*fields) for fields in _NUMBERED.iter_unpack(records)]

    def tgid_batches(self):
        """The tgids in arrays of up to 1,024, as the walk goes on."""
        with self._program.attach_iterator() as link, link.open() as stream:
            buffer = bytearray(self.BATCH)
            while n := stream.readinto(buffer):
                batch = array.array("I")
                batch.frombytes(memoryview(buffer)[:n])
                yield batch

    def close(self):
        self._object.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
