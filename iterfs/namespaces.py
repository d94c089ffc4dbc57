"""A reader's namespaces, where they are not the daemon's.

/proc shows each reader its own network namespace (/proc/self/net), numbers
pids in the pid namespace its mount belongs to, and maps uids into the user
namespace of whoever opened the file. iterfs's walks are created and read by
the daemon's threads, so a reader's namespaces reach a walk two ways:

- network: the kernel takes the namespace of the thread that creates the
  iterator (bpf_iter_init_seq_net()); the creating thread enters the reader's
  with setns(2), which moves that thread alone, and comes back (entered()).
- pid and user: the walk is told their addresses (progs/namespaces.h), which
  the `namespaces` program finds on the reader's thread. The namespace files
  held open here keep those namespaces, and so the addresses, alive while any
  file opened in them is open.

A reader all of whose namespaces are the daemon's has no Namespaces (None):
walks are created exactly as before, with nothing told.
"""

import collections
import contextlib
import ctypes
import dataclasses
import errno
import functools
import os
import threading

from .libc import libc

CLONE_NEWNET = 0x4000_0000
KINDS = ("net", "pid", "user")
# Namespaces no open file uses, kept for the next open in them: none, so that
# a container's namespaces never outlive it because iterfs holds them.
IDLE = 0

Key = collections.namedtuple("Key", KINDS)      # their inode numbers


def ns_inode(path):
    """The inode number of the namespace a /proc/<pid>/ns/<kind> link names,
    from the link ("net:[4026531840]"): a third of what a stat costs, which
    opens the namespace."""
    link = os.readlink(path)
    return int(link[link.index("[") + 1:-1])


def key_of(tid, inode=ns_inode):
    """The inode numbers of thread `tid`'s namespaces (net, active pid, user),
    each found by `inode` (ns_inode). ProcessLookupError if it is gone;
    PermissionError if the calling thread may not look (the ptrace read check)."""
    try:
        return Key(*(inode(f"/proc/{tid}/ns/{kind}") for kind in KINDS))
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no thread {tid}") from None


def open_file(path):
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


@functools.cache
def own():
    """The daemon's namespaces: read once, they never change."""
    return key_of("thread-self")


def _setns(fd, kind):
    if libc.setns(fd, kind) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"entering the reader's network namespace: {os.strerror(code)}")


class Namespaces:
    """One set of namespaces readers read in, held open while files use it."""

    def __init__(self, key, files, found, table):
        self.key = key
        self._files = files                 # kind -> fd, for those not the daemon's
        self._table = table
        daemon = own()
        self.net_fd = files.get("net")
        self.pid_ns = found.pid_ns if key.pid != daemon.pid else 0
        self.user_ns = found.user_ns if key.user != daemon.user else 0
        self.users = 1

    @property
    def own_pids(self):
        """Whether pids are numbered in a namespace other than the daemon's."""
        return self.pid_ns != 0

    def told(self, opening):
        """`opening` with what a walk must know of these namespaces."""
        return dataclasses.replace(opening, pid_ns=self.pid_ns, user_ns=self.user_ns)

    @contextlib.contextmanager
    def entered(self):
        """This thread alone in the reader's network namespace, inside the block."""
        if self.net_fd is None:
            yield
            return
        _setns(self.net_fd, CLONE_NEWNET)
        try:
            yield
        finally:
            # The daemon's thread must come back; it holds the file and
            # CAP_SYS_ADMIN, so this cannot fail short of a kernel bug.
            _setns(self._table.home_net_fd, CLONE_NEWNET)

    def release(self):
        self._table.release(self)

    def close(self):
        for fd in self._files.values():
            os.close(fd)
        self._files = {}


class NamespaceTable:
    """The namespaces readers from elsewhere read in, by their inode numbers:
    found once (the `namespaces` program), then shared by every file opened in
    them; kept open while a file uses them (and IDLE more besides)."""

    def __init__(self, process_list):
        self._process_list = process_list
        self._held = collections.OrderedDict()     # Key -> Namespaces
        self._lock = threading.Lock()
        # The daemon's own network namespace, for a thread to come back to.
        self.home_net_fd = open_file("/proc/thread-self/ns/net")

    def key_of(self, tid, inode=ns_inode):
        """key_of(tid, inode), or where `inode` may not look at the thread's
        namespace files, what the kernel says of it (the `namespaces` program)."""
        try:
            return key_of(tid, inode)
        except PermissionError:
            found = self._process_list.namespaces(tid)
            return Key(found.net_ns_inum, found.pid_ns_inum, found.user_ns_inum)

    def of(self, tid, key, open_file=open_file):
        """The Namespaces of thread `tid`, whose namespaces are `key` (key_of),
        acquired for the caller (release() it); None if they are the daemon's.
        `open_file` opens its namespace files."""
        if key == own():
            return None
        with self._lock:
            held = self._held.get(key)
            if held is not None:
                held.users += 1
                self._held.move_to_end(key)
                return held
        held = self._open(tid, key, open_file)
        with self._lock:
            if key in self._held:               # found meanwhile by another
                held.close()
                held = self._held[key]
                held.users += 1
                return held
            self._held[key] = held
            self._close_idle()
        return held

    def _open(self, tid, key, open_file):
        files = {}
        try:
            daemon = own()
            for kind in KINDS:
                if getattr(key, kind) != getattr(daemon, kind):
                    files[kind] = open_file(f"/proc/{tid}/ns/{kind}")
            if any(os.fstat(fd).st_ino != getattr(key, kind) for kind, fd in files.items()):
                raise OSError(errno.EAGAIN, f"thread {tid} changed namespaces while opening")
            found = self._process_list.namespaces(tid)
            if (found.net_ns_inum, found.pid_ns_inum, found.user_ns_inum) != key:
                raise OSError(errno.EAGAIN, f"thread {tid} changed namespaces while opening")
            return Namespaces(key, files, found, self)
        except FileNotFoundError:
            self._close_files(files)
            raise ProcessLookupError(errno.ESRCH, f"no thread {tid}") from None
        except BaseException:
            self._close_files(files)
            raise

    @staticmethod
    def _close_files(files):
        for fd in files.values():
            os.close(fd)

    def release(self, held):
        with self._lock:
            held.users -= 1
            self._close_idle()

    def _close_idle(self):
        """Under _lock: close the oldest of those no file uses, beyond IDLE."""
        idle = [key for key, held in self._held.items() if held.users == 0]
        for key in idle[:max(0, len(idle) - IDLE)]:
            self._held.pop(key).close()

    def close(self):
        with self._lock:
            for held in self._held.values():
                held.close()
            self._held.clear()
            if self.home_net_fd >= 0:
                os.close(self.home_net_fd)
                self.home_net_fd = -1
