"""The filesystem: paths and inodes on one side, views and iterator links on the other.

    /                     directory of views
    /<view>               a file: open() attaches the view's program
    /<view>/              a directory for a task view: self, all, one file per process
    /<view>/<pid>         open() attaches with linfo.task.pid (tid for a thread)
    /<view>/all           open() attaches with no linfo: every task
    /<view>/              a directory for a map view: one file per map it can walk
    /<view>/<map id>      open() attaches with linfo.map.map_fd
    /.status              what became of each program file (views.StatusFile)

Inode numbers are computed, never stored: view number n (views.ViewTable: never
reused, so an inode stays one program's across reloads) is 2 + n; the file for key
k (a pid, SELF, ALL or a map id) in view n is (n + 1) << 32 | k. Only open files
keep state.
"""

import concurrent.futures
import errno
import functools
import logging
import os
import stat
import time

import pyfuse3
import trio

from . import processes
from .streaming import OpenIterator

log = logging.getLogger("iterfs.fs")

ROOT_INODE = pyfuse3.ROOT_INODE
FIRST_VIEW_INODE = 2
SELF = 0xFFFF_FFFF
ALL = 0xFFFF_FFFE
NAMED = {b"self": SELF, b"all": ALL}
MAX_MAP_ID = 0x7FFF_FFFF     # the kernel numbers maps from 1 to INT_MAX
KEY_NAMES = {SELF: "self", ALL: "all"}

# Views change only at a reload, which makes the kernel forget those that changed;
# a process can exit at any time.
VIEW_TIMEOUT = 60.0
PROCESS_TIMEOUT = 1.0
# Threads that read iterator fds: a read blocks while the kernel runs the program.
READER_THREADS = 32


def fuse_operation(method):
    """Turn every failure into an errno for the caller: the daemon must outlive
    whatever a reader does, and a traceback must never reach pyfuse3's loop."""
    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", method.__name__,
                      " ".join(repr(a) for a in args if isinstance(a, (int, bytes))))
        try:
            return await method(self, *args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except OSError as error:
            code = error.errno or errno.EIO
            if code not in (errno.ENOENT, errno.ESRCH):
                log.error("%s: %s", method.__name__, error)
            raise pyfuse3.FUSEError(errno.ENOENT if code == errno.ESRCH else code)
        except Exception:
            log.exception("%s failed", method.__name__)
            raise pyfuse3.FUSEError(errno.EIO)
    return wrapper


def logged_error(name, step, error):
    """One log line naming the file and the errno; the errno for the caller."""
    code = error.errno or errno.EIO
    log.error("%s: %s: %s (%s)", name, step, os.strerror(code), errno.errorcode.get(code, code))
    return pyfuse3.FUSEError(code)


def read_only(method):
    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        raise pyfuse3.FUSEError(errno.EROFS)
    return wrapper


class IterFS(pyfuse3.Operations):
    def __init__(self, views):
        super().__init__()
        self.views = views      # a views.ViewTable: number -> view, replaced at reloads
        self._pid_max = processes.read_pid_max()
        self._mounted_ns = time.time_ns()
        self._open = {}
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=READER_THREADS, thread_name_prefix="iterfs-read")
        self._directories = {}
        self._next_handle = 1

    # -- inodes -----------------------------------------------------------

    def _view_inode(self, index):
        return FIRST_VIEW_INODE + index

    def _entry_inode(self, index, key):
        return (index + 1) << 32 | key

    def _resolve(self, inode):
        """(view index or None, key or None) for an inode; ENOENT if unknown."""
        if inode == ROOT_INODE:
            return None, None
        if inode < 1 << 32:
            index = inode - FIRST_VIEW_INODE
            if index in self.views:
                return index, None
        else:
            index, key = (inode >> 32) - 1, inode & 0xFFFF_FFFF
            if index in self.views and self.views[index].is_directory:
                return index, key
        raise pyfuse3.FUSEError(errno.ENOENT)

    def _attributes(self, inode, mode, timeout):
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode
        attr.st_mode = mode
        attr.st_nlink = 2 if stat.S_ISDIR(mode) else 1
        attr.st_uid = attr.st_gid = 0
        attr.st_size = 0
        attr.st_blksize = 4096
        attr.st_blocks = 0
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = self._mounted_ns
        attr.entry_timeout = attr.attr_timeout = timeout
        return attr

    def _root_attributes(self):
        attr = self._attributes(ROOT_INODE, stat.S_IFDIR | 0o555, VIEW_TIMEOUT)
        attr.st_nlink = 2 + sum(v.is_directory for v in self.views.values())
        return attr

    def _view_attributes(self, index):
        mode = stat.S_IFDIR | 0o555 if self.views[index].is_directory else stat.S_IFREG | 0o444
        return self._attributes(self._view_inode(index), mode, VIEW_TIMEOUT)

    def _entry_attributes(self, index, key):
        return self._attributes(self._entry_inode(index, key), stat.S_IFREG | 0o444,
                                PROCESS_TIMEOUT)

    def _entry_exists(self, index, key):
        if self.views[index].per_map:
            return self.views[index].has_map(key)
        return key in (SELF, ALL) or processes.exists(key)

    # -- lookups ----------------------------------------------------------

    @fuse_operation
    async def lookup(self, parent_inode, name, ctx=None):
        index, key = self._resolve(parent_inode)
        if index is None:
            if self.views.number(name) is not None:
                return self._view_attributes(self.views.number(name))
            raise pyfuse3.FUSEError(errno.ENOENT)
        if key is not None or not self.views[index].is_directory:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        key = self._entry_key(index, name)
        if key is None or not self._entry_exists(index, key):
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._entry_attributes(index, key)

    @fuse_operation
    async def getattr(self, inode, ctx=None):
        index, key = self._resolve(inode)
        if index is None:
            return self._root_attributes()
        if key is None:
            return self._view_attributes(index)
        if not self._entry_exists(index, key):
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._entry_attributes(index, key)

    @fuse_operation
    async def opendir(self, inode, ctx):
        index, key = self._resolve(inode)
        if index is None:
            entries = [(v.name.encode(), self._view_attributes(i))
                       for i, v in self.views.items()]
        elif key is None and self.views[index].per_map:
            entries = self._map_entries(index)
        elif key is None and self.views[index].per_process:
            entries = [(name, self._entry_attributes(index, key)) for name, key in NAMED.items()]
            entries += [(str(pid).encode(), self._entry_attributes(index, pid))
                        for pid in processes.live_processes()]
        else:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        # A snapshot, so that offsets stay meaningful across readdir calls.
        handle = self._new_handle()
        self._directories[handle] = entries
        return handle

    @fuse_operation
    async def readdir(self, fh, start_id, token):
        entries = self._directories[fh]
        for offset in range(start_id, len(entries)):
            name, attr = entries[offset]
            if not pyfuse3.readdir_reply(token, name, attr, offset + 1):
                break

    @fuse_operation
    async def releasedir(self, fh):
        self._directories.pop(fh, None)

    # -- files ------------------------------------------------------------

    @fuse_operation
    async def open(self, inode, flags, ctx):
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & (os.O_TRUNC | os.O_CREAT):
            raise pyfuse3.FUSEError(errno.EROFS)
        index, key = self._resolve(inode)
        if index is None or (key is None and self.views[index].is_directory):
            raise pyfuse3.FUSEError(errno.EISDIR)
        view = self.views[index]
        name = view.name if key is None else f"{view.name}/{KEY_NAMES.get(key, key)}"
        try:
            if key is None or key == ALL:
                link = view.attach()
            elif view.per_map:
                link = view.attach(map_id=key)
            else:
                link = self._attach_process(view, ctx.pid if key == SELF else key, key == SELF)
        except OSError as error:
            if error.errno in (errno.ESRCH, errno.ENOENT):     # exited since the lookup
                raise pyfuse3.FUSEError(errno.ENOENT)
            raise logged_error(name, "open", error)
        try:
            opened = OpenIterator(link, self._readers, name)
        except BaseException as error:
            link.close()
            if isinstance(error, OSError):
                raise logged_error(name, "open", error)
            raise
        handle = self._new_handle()
        self._open[handle] = opened
        return pyfuse3.FileInfo(fh=handle, direct_io=True, keep_cache=False)

    def _attach_process(self, view, task_id, whole_process):
        """Attach for a process (its tgid) or, for a thread's own id, that thread."""
        tgid = processes.thread_group(task_id)
        if whole_process or tgid == task_id:
            return view.attach(pid=tgid)
        return view.attach(tid=task_id)

    # -- map views and reloads ----------------------------------------------

    def _entry_key(self, index, name):
        """The key a name in a directory view stands for, or None."""
        if self.views[index].per_map:
            return processes.parse_id(name, MAX_MAP_ID)
        return NAMED.get(name) or processes.parse_pid(name, self._pid_max)

    def _map_entries(self, index):
        return [(str(map_id).encode(), self._entry_attributes(index, map_id))
                for map_id in self.views[index].map_ids()]

    async def forget_views(self, names):
        """After a reload: make the kernel drop what it cached of views that are
        new, replaced or gone, so that the next lookup asks again (dropping a
        directory's entry drops the entries under it). Done when it returns."""
        # The kernel may wait for a request of this loop's: from another thread.
        await trio.to_thread.run_sync(self._forget_views, names)

    def _forget_views(self, names):
        for name in names:
            try:
                pyfuse3.invalidate_entry(ROOT_INODE, name.encode())
            except FileNotFoundError:
                pass        # not in the kernel's cache
        # The root's link count counts the directory views.
        pyfuse3.invalidate_inode(ROOT_INODE, attr_only=True)

    @fuse_operation
    async def read(self, fh, off, size):
        opened = self._open[fh]
        async with opened.lock:
            try:
                return await opened.read(off, size)
            except OSError as error:
                raise logged_error(opened.name, "read", error)

    @fuse_operation
    async def release(self, fh):
        opened = self._open.pop(fh)
        async with opened.lock:
            await opened.close()

    @fuse_operation
    async def flush(self, fh):
        pass

    def _new_handle(self):
        handle = self._next_handle
        self._next_handle += 1
        return handle

    def close_all(self):
        """Close every iterator and link still open, at unmount."""
        for opened in self._open.values():
            opened.close_now()
        self._open.clear()
        self._directories.clear()
        self._readers.shutdown(wait=True)

    # -- everything else --------------------------------------------------

    @fuse_operation
    async def statfs(self, ctx):
        result = pyfuse3.StatvfsData()
        result.f_bsize = result.f_frsize = 4096
        result.f_namemax = 255
        return result

    @fuse_operation
    async def access(self, inode, mode, ctx):
        self._resolve(inode)
        if mode & os.W_OK:
            raise pyfuse3.FUSEError(errno.EROFS)
        return True

    @fuse_operation
    async def getxattr(self, inode, name, ctx):
        self._resolve(inode)
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    @fuse_operation
    async def listxattr(self, inode, ctx):
        self._resolve(inode)
        return []

    setattr = read_only(pyfuse3.Operations.setattr)
    mknod = read_only(pyfuse3.Operations.mknod)
    mkdir = read_only(pyfuse3.Operations.mkdir)
    unlink = read_only(pyfuse3.Operations.unlink)
    rmdir = read_only(pyfuse3.Operations.rmdir)
    symlink = read_only(pyfuse3.Operations.symlink)
    rename = read_only(pyfuse3.Operations.rename)
    link = read_only(pyfuse3.Operations.link)
    create = read_only(pyfuse3.Operations.create)
    write = read_only(pyfuse3.Operations.write)
    setxattr = read_only(pyfuse3.Operations.setxattr)
    removexattr = read_only(pyfuse3.Operations.removexattr)
