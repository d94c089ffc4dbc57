"""Acting as a reader: what the reader is, and an iterator created as it.

The kernel decides some of what an iterator shows from the credentials of the
file it reads through (f_cred): /ksym's addresses (kallsyms_show_value), and the
socket views' kernel pointers (progs/sock.h, reader_pointer). So a reader's
iterator is created while the creating thread has that reader's effective uid
and gid and no capability the reader lacks. Whether a reader may open a
process's file at all is the kernel's decision too: the same thread opens the
process's /proc file, and /proc answers.

setresuid(2) and capset(2) in glibc and libcap change every thread of the
process; the system calls themselves change only the calling thread, and that is
what is called here. Leaving euid 0 clears the thread's effective capabilities;
the real and saved uids stay 0, so the permitted set stays, and the thread takes
back what it needs with capset.
"""

import collections
import contextlib
import ctypes
import dataclasses
import errno
import functools
import os
import platform

from . import namespaces
from .libc import libc

# (setresuid, setresgid, capget, capset) system call numbers
_SYSCALLS = {"x86_64": (117, 119, 125, 126), "aarch64": (147, 149, 90, 91),
             "riscv64": (147, 149, 90, 91), "ppc64le": (164, 169, 183, 184),
             "s390x": (208, 210, 184, 185)}
SUPPORTED = platform.machine() in _SYSCALLS
_UNCHANGED = ctypes.c_long(-1)
_CAPABILITY_VERSION_3 = 0x20080522

CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21
CAP_SYSLOG = 34

_UserNamespace = collections.namedtuple("_UserNamespace", "inode uid_map")


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


@dataclasses.dataclass(frozen=True)
class Reader:
    """Who asks, made once per request and applied wherever the kernel is asked
    on its behalf: fs uid and gid as FUSE gives them, the effective
    capabilities the kernel would grant it here (none if its user namespace
    is not the daemon's: they hold only inside its own), and its namespaces
    where they are not the daemon's (namespaces.Namespaces, held until
    release())."""
    uid: int
    gid: int
    capabilities: int
    namespaces: object = None
    _pid: int = 0       # the thread that asked, for its groups

    def has(self, capability):
        return bool(self.capabilities >> capability & 1)

    @functools.cached_property
    def groups(self):
        """Its fs gid and supplementary groups: read when first asked (only
        /proc's hidepid gid= asks), from the thread's status."""
        return _groups(self._pid, self.gid) if self._pid else frozenset({self.gid})

    @property
    def own_pids(self):
        """Whether it numbers pids in a namespace of its own."""
        return self.namespaces is not None and self.namespaces.own_pids

    def walk(self, link, opening):
        """A fresh walk of `link` as this reader: created in its network
        namespace with its credentials, and told `opening` and its pid and
        user namespaces. Only the calling thread changes, and only for the
        call: a thread started meanwhile would keep what it had."""
        held = self.namespaces
        with contextlib.nullcontext() if held is None else held.entered():
            if held is not None:
                opening = held.told(opening)
            if is_daemon(self):
                return link.open(opening)
            with acting_as(self):
                return link.open(opening)

    def release(self):
        """Let go of its namespaces: once, by whoever made it."""
        if self.namespaces is not None:
            self.namespaces.release()


def reader(pid, uid, gid, namespace_table=None):
    """The Reader for a request from thread `pid` (a FUSE context's) with fs
    ids `uid` and `gid`. A thread gone since it asked has no capabilities.
    With a namespaces.NamespaceTable, its namespaces too, which the caller
    releases: then ProcessLookupError if the thread is gone, another OSError
    if its namespaces cannot be found or held."""
    if namespace_table is None or pid == 0:
        return _credentials(pid, uid, gid)
    try:
        key = namespaces.key_of(pid)
    except PermissionError:
        key = None
    found = _credentials(pid, uid, gid, None if key is None else key.user)
    if key is None:
        key = namespace_table.key_of(pid, looking(found, namespaces.ns_inode))
    opened = namespace_table.of(pid, key, looking(found, namespaces.open_file))
    return found if opened is None else dataclasses.replace(found, namespaces=opened)


def looking(who, call):
    """`call` (of a path under /proc/<pid>/ns/), or where the daemon may not look
    at `who`'s namespace files (no CAP_SYS_PTRACE, under a unit's bounding set),
    `call` acting as `who`, who may look at its own."""
    def calling(path):
        try:
            return call(path)
        except PermissionError:
            with acting_as(who):
                return call(path)
    return calling


def _credentials(pid, uid, gid, user_namespace=None):
    """The Reader without namespaces; `user_namespace`: the inode number of
    its user namespace, if known. Its effective capabilities are capget(2)'s,
    the set /proc/<pid>/status shows as CapEff: a system call rather than the
    whole status file made as text (a quarter of an open's work)."""
    try:
        effective = _capabilities(pid)[0]
        if effective and not _in_our_user_namespace(pid, user_namespace):
            effective = 0
    except (ProcessLookupError, FileNotFoundError):
        effective = 0       # gone: no capabilities
    return Reader(uid, gid, effective, _pid=pid)


def _groups(pid, gid):
    """Thread `pid`'s fs gid and supplementary groups, from its status; only the
    fs gid if it is gone."""
    groups = {gid}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Groups:"):
                    groups.update(int(group) for group in line.split()[1:])
                    break
    except (OSError, ValueError):
        pass
    return frozenset(groups)


def _in_our_user_namespace(pid, inode=None):
    """Whether thread `pid` (whose user namespace's inode number is `inode`, if
    known) is in the daemon's user namespace. Its ns/user link
    says, where the kernel lets the daemon look: not at a process with a
    capability the daemon lacks (the ptrace check, under a unit's bounding
    set). There the uid maps are compared: a namespace mapped as ours, which
    only a writer with CAP_SETUID over ours can make, counts as ours."""
    ours = _own_user_namespace()
    if inode is not None:
        return inode == ours.inode
    try:
        return os.stat(f"/proc/{pid}/ns/user").st_ino == ours.inode
    except PermissionError:
        with open(f"/proc/{pid}/uid_map", "rb") as theirs:
            return theirs.read() == ours.uid_map


@functools.cache
def _own_user_namespace():
    """The daemon's user namespace (its inode and uid map): read once, it
    never changes."""
    with open("/proc/self/uid_map", "rb") as uid_map:
        return _UserNamespace(os.stat("/proc/self/ns/user").st_ino, uid_map.read())


@functools.cache
def _daemon_effective():
    """The daemon's effective capabilities, read once: a thread that acts as a
    reader gives them back before anything else reads them (acting_as)."""
    return _capabilities()[0]


def _call(number, *arguments, doing="switching this thread's credentials"):
    if libc.syscall(ctypes.c_long(number), *arguments) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{doing}: {os.strerror(code)}")


def _capabilities(tid=0):
    """Thread `tid`'s (this thread's if 0) (effective, permitted, inheritable),
    each a 64-bit mask. ProcessLookupError if it is gone."""
    header, data = _Header(_CAPABILITY_VERSION_3, tid), (_Data * 2)()
    _call(_SYSCALLS[platform.machine()][2], ctypes.byref(header), data,
          doing=f"reading thread {tid}'s capabilities" if tid else "reading its capabilities")
    return tuple(data[0].__getattribute__(f) | data[1].__getattribute__(f) << 32
                 for f in ("effective", "permitted", "inheritable"))


def _set_effective(effective, permitted, inheritable):
    header, data = _Header(_CAPABILITY_VERSION_3, 0), (_Data * 2)()
    for i in range(2):
        data[i].effective = effective >> 32 * i & 0xFFFF_FFFF
        data[i].permitted = permitted >> 32 * i & 0xFFFF_FFFF
        data[i].inheritable = inheritable >> 32 * i & 0xFFFF_FFFF
    _call(_SYSCALLS[platform.machine()][3], ctypes.byref(header), data)


@contextlib.contextmanager
def acting_as(who):
    """This thread alone has `who`'s effective uid and gid, and of its own
    effective capabilities only those `who` has too, inside the block. The
    daemon refuses --allow-other where this is not SUPPORTED."""
    set_uid, set_gid = _SYSCALLS[platform.machine()][:2]
    effective, permitted, inheritable = _capabilities()
    _call(set_gid, _UNCHANGED, ctypes.c_long(who.gid), _UNCHANGED)
    try:
        _call(set_uid, _UNCHANGED, ctypes.c_long(who.uid), _UNCHANGED)
        try:
            _set_effective(effective & who.capabilities, permitted, inheritable)
            yield
        finally:
            _set_effective(effective, permitted, inheritable)
            _call(set_uid, _UNCHANGED, ctypes.c_long(0), _UNCHANGED)
    finally:
        _call(set_gid, _UNCHANGED, ctypes.c_long(0), _UNCHANGED)


def is_daemon(who):
    """Whether `who` is root with every capability the daemon has: nothing to
    take from the daemon's own credentials to act as it."""
    return who.uid == 0 and who.gid == 0 and _daemon_effective() & ~who.capabilities == 0


def may_open_as(who, path):
    """Whether `who` may open `path` for reading: the kernel decides, from the
    caller's ids and capabilities (acting_as). A path that is gone raises
    ProcessLookupError."""
    with acting_as(who):
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        except FileNotFoundError:
            raise ProcessLookupError(errno.ESRCH, f"{path}: gone") from None
        except ProcessLookupError:
            raise
        except PermissionError:
            return False
    return True
