"""The filesystem: paths and inodes on one side, views and iterator links on the other.

    /                     directory of views
    /<view>               a file: open() attaches the view's program
    /<view>/              a directory for a task view: self, all, one file per process
    /<view>/<pid>         open() attaches with linfo.task.pid (tid for a thread)
    /<view>/all           open() attaches with no linfo: every task
    /<view>/              a directory for a map view: one file per map it can walk
    /<view>/<map id>      open() attaches with linfo.map.map_fd
    /.status              what became of each program file (status.py)
    /metrics/             the metric views, <name>.prom (metrics.py)
    /metrics/<name>.prom  a file: open() attaches its programs with no linfo

Inode numbers are computed, never stored (inodes.py). Only open files keep state.

A reader in a pid namespace of its own names processes by its numbers, and the
kernel caches a name's lookup for every reader of the mount alike: a name looked
up in one pid namespace and used in another would lead to another process. Its
slot tells: open() and getattr() answer ESTALE where the slot is not the
caller's, and the kernel then looks the name up again as the caller
(LOOKUP_REVAL) and retries once.
"""

import array
import collections
import contextlib
import errno
import functools
import logging
import os
import stat
import time

import pyfuse3
import trio

from . import bpf, credentials, inodes, metrics, namespaces, processes
from .inodes import ALL, SELF
from .streaming import OpenIterator, Pumps
from .status import StatusFile
from .views import BPF_OBJECT_TARGETS, METRICS_NUMBER

log = logging.getLogger("iterfs.fs")

assert inodes.ROOT == pyfuse3.ROOT_INODE

NAMED = {b"self": SELF, b"all": ALL}
MAX_MAP_ID = 0x7FFF_FFFF     # the kernel numbers maps from 1 to INT_MAX
KEY_NAMES = {SELF: "self", ALL: "all"}

# Views change only at a reload, which makes the kernel forget those that changed;
# a process can exit at any time.
VIEW_TIMEOUT = 60.0
PROCESS_TIMEOUT = 1.0
# Threads that read iterator fds, each view its own: a read blocks while the
# kernel runs the program, or as long as the kernel holds a walk up.
READER_THREADS = 32
# The lane of the process listings' walks: no view's name.
LISTING_LANE = "/processes"
# Iterators one uid may hold open at once: each is a link and an iterator fd.
MAX_OPEN_PER_UID = 256
# Iterators all readers together may hold open: below the programs' session
# maps (progs/iterfs.h, SESSIONS) and within the daemon's fds (open_limits()).
MAX_OPEN = 8192
# Open files and directories kept for root alone, however many users hold the rest.
ROOT_RESERVE = 256
# Directory handles (each holds a listing) one uid, and all together, may hold.
MAX_DIRECTORIES_PER_UID = 256
MAX_DIRECTORIES = 8192
# Requests answered at once beyond those that may wait on a walk.
SPARE_REQUEST_TASKS = 64
# The daemon's own fds beside the iterators: programs, maps, FUSE, logs.
FD_HEADROOM = 1024


def open_limit(fd_limit):
    """How many files may be open at once with `fd_limit` fds: two fds each."""
    return max(ROOT_RESERVE + 1, min(MAX_OPEN, (fd_limit - FD_HEADROOM) // 2))

WORLD_READABLE = stat.S_IFREG | 0o444
OWNER_ONLY = stat.S_IFREG | 0o400


# The hidepid levels at which /proc leaves out of its listing what it hides.
HIDDEN_FROM_LISTINGS = (processes.INVISIBLE, processes.NOT_PTRACEABLE)


def visible_to(reader, pids):
    """Those of `pids` that the kernel lets `reader` ptrace-read, in order: what
    /proc shows it under hidepid. Asked acting as the reader, once for all. The
    kernel lets a thread ptrace its own process whoever it acts as: the
    daemon's threads are what root's are to the reader (root's ids, dumpable)."""
    visible = []
    with credentials.acting_as(reader):
        for pid in pids:
            try:
                if processes.may_ptrace_read(pid):
                    visible.append(pid)
            except ProcessLookupError:
                pass
    if reader.uid == 0 and reader.gid == 0:
        return visible
    return [pid for pid in visible if not os.path.exists(f"/proc/self/task/{pid}")]


def visible_batches(reader, batches):
    """Each batch of pids with only those visible_to(reader); closing it closes
    `batches`, and the walk with them."""
    with contextlib.closing(batches):
        for batch in batches:
            yield array.array("I", visible_to(reader, batch))


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
            raise fuse_error(error, method.__name__) from None
        except Exception:
            log.exception("%s failed", method.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None
    return wrapper


def fuse_error(error, *where):
    """The one way an OSError becomes the caller's errno. A process or object
    gone (ENOENT, ESRCH) is ENOENT, as /proc answers, and logs nothing: a
    reader's race, not the daemon's trouble. Any other errno is the caller's
    as it is, with one log line naming where it happened (the file, the step)
    and the errno."""
    code = error.errno or errno.EIO
    if code in (errno.ENOENT, errno.ESRCH):
        return pyfuse3.FUSEError(errno.ENOENT)
    log.error("%s: %s (%s)", ": ".join(where), os.strerror(code),
              errno.errorcode.get(code, code))
    return pyfuse3.FUSEError(code)


def read_only(method):
    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        raise pyfuse3.FUSEError(errno.EROFS)
    return wrapper


class Listing:
    """A directory as opendir() found it: named entries with their attributes,
    then, in a process directory, the processes by pid, which share one
    attributes object given each entry's inode in turn: the pid under the
    view's number (the daemon's pid, `keys`, where the reader numbers
    processes in a pid namespace of its own).

    A process directory's pids come in batches while the kernel walks them
    (fill(), in a worker thread), so that the first entries go out while the
    walk goes on; readdir() waits for more where it has run out."""

    def __init__(self, names, attributes, pids=(), rest=None):
        self.names = names
        self.attributes = attributes
        self.pids = pids
        self.rest = rest
        # The pids' inodes are this | key (inodes.with_key, inlined: 5,000 of them).
        self.rest_base = inodes.with_key(rest.st_ino, 0) if rest is not None else 0
        self.keys = None                 # the pids' keys where they are not the pids
        self.complete = True
        self.closed = False
        self.uid = 0                     # who opened it, for the limits
        self._more = None                # trio.Event a readdir() waits on
        self._token = None

    def fill(self, batches, fallback):
        """Worker thread: take the pids from `batches`; if they fail, those after
        the last one from `fallback()`."""
        try:
            with contextlib.closing(batches):
                for batch in batches:
                    if self.closed:
                        return
                    self.pids.extend(batch)
                    self._wake_soon()
        except OSError as error:
            log.warning("listing processes from /proc: the task iterator failed: %s", error)
            last = self.pids[-1] if self.pids else 0
            self.pids.extend(pid for pid in fallback() if pid > last)
        finally:
            self.complete = True
            self._wake_soon()

    def _wake_soon(self):
        try:
            self._token.run_sync_soon(self._wake)
        except trio.RunFinishedError:
            pass        # unmounting: nobody waits any more

    def start_filling(self, executor, batches, fallback):
        self.complete = False
        self._token = trio.lowlevel.current_trio_token()
        executor.submit(self.fill, batches, fallback)

    def _wake(self):
        if self._more is not None:
            self._more.set()

    async def more(self, count):
        """Until there are more than `count` pids, or all of them."""
        while len(self.pids) <= count and not self.complete:
            self._more = trio.Event()
            if len(self.pids) <= count and not self.complete:
                await self._more.wait()


class PidSlots:
    """Small numbers for the pid namespaces readers name processes in, for
    inode numbers: 0 is the daemon's. Past inodes.MAX_PID_SLOTS the numbering starts
    again: a name cached from before then is told apart from a reader of
    another namespace that took its slot no longer (for PROCESS_TIMEOUT)."""

    def __init__(self):
        self._slots = {}

    def __call__(self, pid_ns_inode):
        if pid_ns_inode == namespaces.own().pid:
            return 0
        slot = self._slots.get(pid_ns_inode)
        if slot is None:
            if len(self._slots) == inodes.MAX_PID_SLOTS:
                self._slots.clear()
            slot = self._slots[pid_ns_inode] = len(self._slots) + 1
        return slot


class IterFS(pyfuse3.Operations):
    """The FUSE operations. How the work is shared out:

    - Every request handler runs in one trio event loop (pyfuse3.main), up
      to request_tasks at once. What the handlers alone touch (the open files
      and listings by handle, the counts by uid, the view table, the pid
      slots) needs no lock: a handler is never interrupted between awaits.
    - The kernel's walks never run in the event loop: a read blocks for as
      long as the kernel runs the program, or holds the walk up. Each open
      file's pump reads its iterator in a worker thread of its view's lane
      (streaming.py); a process directory's listing is filled by a worker
      of LISTING_LANE; the walks of readers in pid namespaces of their own
      go to trio's threads. What a worker and the handlers share is the open
      file (OpenIterator: its mutex), the listing (Listing: its pids only
      grow, and the worker wakes readdir() through the trio token) and the
      bytes buffered in all (streaming.Budget: its lock).
    - A handler's own kernel work is bounded and short: attaching a link,
      creating an iterator, the walk that records a process at open
      (task_walks.ProcessList.identity), checks of /proc. An open file's
      requests come one at a time (OpenIterator.lock).
    - A reload scans and loads in a worker thread and changes nothing served;
      the table is swapped in the event loop between requests (views.ViewTable).
    """

    def __init__(self, views, *, max_open_per_uid=MAX_OPEN_PER_UID, max_open=MAX_OPEN,
                 process_list=None):
        super().__init__()
        self.views = views      # a views.ViewTable: number -> view, replaced at reloads
        # task_walks.ProcessList, or None: process directories list /proc then.
        self.process_list = process_list
        self.max_open_per_uid = max_open_per_uid
        self.max_open = max_open
        self._open_by_uid = collections.Counter()
        self._directories_by_uid = collections.Counter()
        self._pid_max = processes.read_pid_max()
        self._hidepid = processes.HidePidCache()
        self._namespaces = None if process_list is None else \
            namespaces.NamespaceTable(process_list)
        self._pid_slots = PidSlots()
        self._mounted_ns = time.time_ns()
        self._open = {}
        self._pumps = Pumps(READER_THREADS)
        self._directories = {}
        self._next_handle = 1

    @property
    def request_tasks(self):
        """How many requests pyfuse3 may handle at once: a read may wait as long
        as the kernel holds its walk up, a readdir on its listing's walk, and
        the others must still be answered."""
        return self.max_open + MAX_DIRECTORIES + SPARE_REQUEST_TASKS

    # -- inodes -----------------------------------------------------------

    def _resolve(self, inode):
        """(view index or None, key or None) for an inode; ENOENT if it names
        no view served now, or no entry of a directory view."""
        index, key, _ = inodes.decode(inode)
        if index is None:
            return None, None
        if index in self.views and (key is None or self.views[index].per_process
                                    or self.views[index].per_map):
            return index, key
        raise pyfuse3.FUSEError(errno.ENOENT)

    def _check_slot(self, index, key, inode, slot):
        """ESTALE where a process's inode was looked up in a pid namespace
        other than the caller's (`slot`): the kernel then looks again."""
        if key is not None and key not in KEY_NAMES and self.views[index].per_process \
                and inodes.decode(inode).slot != slot:
            raise pyfuse3.FUSEError(errno.ESTALE)

    def _attributes(self, inode, mode, timeout, owner=(0, 0)):
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode
        attr.st_mode = mode
        attr.st_nlink = 2 if stat.S_ISDIR(mode) else 1
        attr.st_uid, attr.st_gid = owner
        attr.st_size = 0
        attr.st_blksize = 4096
        attr.st_blocks = 0
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = self._mounted_ns
        attr.entry_timeout = attr.attr_timeout = timeout
        return attr

    def _root_attributes(self):
        attr = self._attributes(inodes.ROOT, stat.S_IFDIR | 0o555, VIEW_TIMEOUT)
        attr.st_nlink = 2 + sum(v.is_directory for v in self.views.values())
        return attr

    def _view_attributes(self, index):
        view = self.views[index]
        if view.is_directory:
            # A drop-in's directory root's alone: no one else may even list it.
            mode = stat.S_IFDIR | (0o500 if view.root_only else 0o555)
        else:
            mode = OWNER_ONLY if view.root_only else WORLD_READABLE
        return self._attributes(inodes.of_view(index), mode, VIEW_TIMEOUT)

    def _entry_attributes(self, index, key, slot=0):
        """As /proc: a process's file belongs to it (to root while it is not
        dumpable); the private views' are its owner's alone, and their `all`
        root's. A map's elements are root's alone, as bpftool needs root to
        dump them. ENOENT (ProcessLookupError) if the process or map is gone."""
        view = self.views[index]
        if view.per_map:
            if not view.has_map(key):
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self._map_attributes(index, key)
        if view.root_only:
            mode, owner = OWNER_ONLY, (0, 0)        # a drop-in not declared readable
        elif key == SELF:
            mode, owner = WORLD_READABLE, (0, 0)     # each reader's own process
        elif key == ALL:
            mode, owner = OWNER_ONLY if view.private else WORLD_READABLE, (0, 0)
        else:
            mode, owner = OWNER_ONLY if view.private else WORLD_READABLE, processes.owner(key)
        return self._attributes(inodes.of_entry(index, key, slot), mode, PROCESS_TIMEOUT,
                                owner)

    # -- lookups ----------------------------------------------------------

    @fuse_operation
    async def lookup(self, parent_inode, name, ctx=None):
        index, key = self._resolve(parent_inode)
        if index in (None, METRICS_NUMBER):
            # The root holds the views but the metrics, metrics/ the metrics.
            number = self.views.number(name)
            if number is not None and self.views[number].is_metric == (index is not None):
                return self._view_attributes(number)
            raise pyfuse3.FUSEError(errno.ENOENT)
        if key is not None or not self.views[index].is_directory:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        key = self._entry_key(index, name)
        if key is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        slot = 0
        if self.views[index].per_process and key not in KEY_NAMES:
            slot = self._pid_slot(ctx)
            if slot:
                key = await self._task_numbered(ctx, key)
            if self._hiding(ctx) in HIDDEN_FROM_LISTINGS \
                    and not visible_to(self._reader(ctx), [key]):
                raise pyfuse3.FUSEError(errno.ENOENT)   # as /proc/<pid> under hidepid=2
        attributes = self._entry_attributes(index, key, slot)
        if slot:
            # Not for readers elsewhere to use without asking (the module's
            # docstring): a path walk that finds it asks again.
            attributes.entry_timeout = 0
        return attributes

    @fuse_operation
    async def getattr(self, inode, ctx=None):
        index, key = self._resolve(inode)
        if index is None:
            return self._root_attributes()
        if key is None:
            return self._view_attributes(index)
        slot = inodes.decode(inode).slot
        if ctx is not None and key not in KEY_NAMES and self.views[index].per_process:
            self._check_slot(index, key, inode, self._pid_slot(ctx))
        return self._entry_attributes(index, key, slot)

    def _pid_slot(self, ctx):
        """The slot (PidSlots) of the pid namespace the caller numbers pids in:
        0 without the process list, where every reader has the daemon's."""
        if ctx.pid == 0 or self._namespaces is None:
            return 0
        try:
            inode = namespaces.ns_inode(f"/proc/{ctx.pid}/ns/pid")
        except PermissionError:     # no CAP_SYS_PTRACE: ask otherwise
            looking = credentials.looking(self._reader(ctx), namespaces.ns_inode)
            inode = self._namespaces.key_of(ctx.pid, looking).pid
        return self._pid_slots(inode)

    async def _task_numbered(self, ctx, number):
        """The daemon's number for the task the caller, in a pid namespace of
        its own, numbers `number`; ENOENT if it numbers none so."""
        for task in await self._numbered_tasks(ctx):
            if task.number == number:
                return task.tid
        raise pyfuse3.FUSEError(errno.ENOENT)

    async def _numbered_tasks(self, ctx):
        """Every task the caller's pid namespace numbers, with its number there
        (the `numbered` program). The walk goes over every task: not in the
        event loop."""
        reader = self._full_reader(ctx)
        try:
            told = reader.namespaces.told(bpf.Opening())
            return await trio.to_thread.run_sync(self.process_list.numbered, told)
        finally:
            reader.release()

    def _full_reader(self, ctx):
        """The caller with its namespaces (credentials.reader): release() it."""
        try:
            return credentials.reader(ctx.pid, ctx.uid, ctx.gid, self._namespaces)
        except OSError as error:
            raise fuse_error(error, f"reader {ctx.pid}", "finding its namespaces") from None

    @fuse_operation
    async def opendir(self, inode, ctx):
        index, key = self._resolve(inode)
        if not self._may_hold(self._directories_by_uid, ctx.uid, MAX_DIRECTORIES_PER_UID,
                              MAX_DIRECTORIES):
            raise pyfuse3.FUSEError(errno.EMFILE)
        if index is None or index == METRICS_NUMBER:
            numbers = [i for i in self.views if self.views[i].is_metric == (index is not None)]
            listing = Listing([self.views[i].name.encode() for i in numbers],
                              [self._view_attributes(i) for i in numbers])
        elif key is None and self.views[index].per_map:
            entries = self._map_entries(index)
            listing = Listing([name for name, _ in entries], [attr for _, attr in entries])
        elif key is None and self.views[index].per_process:
            slot = self._pid_slot(ctx)
            listing = Listing(list(NAMED),
                              [self._entry_attributes(index, key) for key in NAMED.values()],
                              array.array("I"), self._listed_attributes(index, slot))
            if slot:
                await self._list_numbered(listing, ctx)
            else:
                self._list_processes(listing, ctx)
        else:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        # A snapshot, so that offsets stay meaningful across readdir calls.
        handle = self._new_handle()
        listing.uid = ctx.uid
        self._directories[handle] = listing
        self._directories_by_uid[ctx.uid] += 1
        return handle

    @fuse_operation
    async def readdir(self, fh, start_id, token):
        listing = self._directories[fh]
        names, reply = listing.names, pyfuse3.readdir_reply
        for offset in range(start_id, len(names)):
            if not reply(token, names[offset], listing.attributes[offset], offset + 1):
                return
        # The processes: 5,000 of them take 26 requests; this loop is their cost.
        first, pids = len(names), listing.pids
        keys = listing.keys or pids
        rest, base = listing.rest, listing.rest_base
        offset = max(start_id, first)
        while True:
            await listing.more(offset - first)
            if offset - first >= len(pids):
                return                          # complete: the end of the directory
            for offset in range(offset, first + len(pids)):
                pid = pids[offset - first]
                rest.st_ino = base | keys[offset - first]
                if not reply(token, b"%d" % pid, rest, offset + 1):
                    return
            offset += 1

    @fuse_operation
    async def releasedir(self, fh):
        listing = self._directories.pop(fh, None)
        if listing is not None:
            listing.closed = True
            self._directories_by_uid[listing.uid] -= 1
            if not self._directories_by_uid[listing.uid]:
                del self._directories_by_uid[listing.uid]

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
        reader = self._full_reader(ctx)
        try:
            return self._open_as(reader, view, index, key, inode, name, ctx)
        except BaseException:
            reader.release()            # the open file releases it when it closes
            raise

    def _open_as(self, reader, view, index, key, inode, name, ctx):
        slot = 0
        if reader.own_pids:
            slot = self._pid_slots(reader.namespaces.key.pid)
        self._check_slot(index, key, inode, slot)
        process = self._process_of(view, key, ctx.pid)
        opening = self._opening(view, key, process, reader)     # before the check
        self._check_access(view, key, reader)
        if not self._may_hold(self._open_by_uid, ctx.uid, self.max_open_per_uid,
                              self.max_open):
            raise pyfuse3.FUSEError(errno.EMFILE)
        try:
            if isinstance(view, StatusFile):
                link = view.attach(stuck=self._pumps.stuck())
            elif key is None or key == ALL:
                link = view.attach()
            elif view.per_map:
                link = view.attach(map_id=key)
            else:
                link = self._attach_process(view, process, key == SELF)
        except OSError as error:        # ENOENT where it exited since the lookup
            raise fuse_error(error, name, "open") from None
        try:
            opened = OpenIterator(link, self._pumps.lane(view.name), self._pumps.buffered,
                                  name, reader, opening)
        except BaseException as error:
            link.close()
            if isinstance(error, OSError):
                raise fuse_error(error, name, "open") from None
            raise
        handle = self._new_handle()
        self._open[handle] = opened
        self._open_by_uid[ctx.uid] += 1
        return pyfuse3.FileInfo(fh=handle, direct_io=True, keep_cache=False)

    @staticmethod
    def _may_hold(held, uid, per_uid, total):
        """Whether `uid` may hold one more of what `held` counts by uid: at most
        `per_uid` each, and `total` in all, of which the last ROOT_RESERVE are
        root's alone, so that root is served whatever the others hold."""
        everyone = sum(held.values())
        if uid == 0:
            return everyone < total
        return held[uid] < per_uid and everyone < total - ROOT_RESERVE

    def _list_processes(self, listing, ctx):
        """Fill a process directory's listing: from the kernel's task iterator
        while readdir() answers, or from /proc at once if there is none. Under
        /proc's hidepid=2 or 4, only the processes /proc lists to the reader."""
        reader = None
        if self._hiding(ctx) in HIDDEN_FROM_LISTINGS:
            reader = self._reader(ctx)

        def from_proc():
            pids = [int(name) for name in processes.live_processes()]
            return pids if reader is None else visible_to(reader, pids)
        if self.process_list is None:
            listing.pids.extend(from_proc())
            return
        batches = self.process_list.tgid_batches()
        if reader is not None:
            batches = visible_batches(reader, batches)
        listing.start_filling(self._pumps.lane(LISTING_LANE).interactive, batches, from_proc)

    async def _list_numbered(self, listing, ctx):
        """A process directory's listing for a reader in a pid namespace of its
        own: the processes it numbers, by those numbers, ascending, as its
        /proc lists them (under the daemon's /proc's hidepid, those it shows)."""
        tasks = await self._numbered_tasks(ctx)
        leaders = sorted((task.number, task.tgid) for task in tasks if task.tid == task.tgid)
        if self._hiding(ctx) in HIDDEN_FROM_LISTINGS:
            visible = set(visible_to(self._reader(ctx), [tgid for _, tgid in leaders]))
            leaders = [(number, tgid) for number, tgid in leaders if tgid in visible]
        listing.pids.extend(number for number, _ in leaders)
        listing.keys = array.array("I", (tgid for _, tgid in leaders))

    def _reader(self, ctx):
        return credentials.reader(ctx.pid, ctx.uid, ctx.gid)

    def _hiding(self, who):
        """What /proc's hidepid hides from `who` (a FUSE context or a Reader):
        NOT_HIDDEN for a reader that sees every process (CAP_SYS_PTRACE, or a
        member of its gid=). The context's reader is read only under hidepid."""
        hidepid = self._hidepid()
        if hidepid.level == processes.NOT_HIDDEN:
            return processes.NOT_HIDDEN
        reader = who if isinstance(who, credentials.Reader) else self._reader(who)
        if reader.has(credentials.CAP_SYS_PTRACE) or hidepid.exempts(reader.groups):
            return processes.NOT_HIDDEN
        return hidepid.level

    def _listed_attributes(self, index, slot=0):
        """Attributes for the listed processes of a view, which the kernel keeps
        no moment (timeouts 0): an owner takes a stat of /proc/<pid>, too dear
        for every process of a listing, so a lookup finds it when the entry is
        used. One object, given each entry's inode in turn."""
        view = self.views[index]
        mode = OWNER_ONLY if view.private or view.root_only else WORLD_READABLE
        return self._attributes(inodes.of_entry(index, 0, slot), mode, 0)

    def _check_access(self, view, key, reader):
        """What the kernel asks of who reads the same from it, decided on the
        reader's ids and capabilities (credentials.Reader), not on uid 0. The
        kernel has checked owner and mode already (default_permissions), from
        attributes up to PROCESS_TIMEOUT old; this checks the process as it is.

        - BPF objects and maps: CAP_SYS_ADMIN, as the kernel asks to walk their
          ids (bpftool).
        - A process's maps and fds: what /proc/<pid>/maps asks (the ptrace read
          check): the reader's open of it, which /proc answers. Every process
          (`all`) needs CAP_SYS_PTRACE; one's own (`self`) is always allowed.
        - Under /proc's hidepid, any process view: what /proc hides from the
          reader (the ptrace read check), and `all`, are refused."""
        if view.per_process and key != SELF and self._hiding(reader) != processes.NOT_HIDDEN:
            # /proc's hidepid: a process the reader may not ptrace-read is not
            # the reader's to read (EACCES at hidepid=1, ENOENT at its lookup
            # above that), and `all` would show every one.
            allowed = key != ALL and bool(visible_to(reader, [key]))
            if not allowed:
                raise pyfuse3.FUSEError(errno.EACCES)
        if view.per_map or view.target in BPF_OBJECT_TARGETS:
            allowed = reader.has(credentials.CAP_SYS_ADMIN)
        elif not view.private or key == SELF or credentials.is_daemon(reader):
            allowed = True
        elif key == ALL:
            allowed = reader.has(credentials.CAP_SYS_PTRACE)
        else:
            allowed = credentials.may_open_as(reader, f"/proc/{key}/maps")
        if not allowed:
            raise pyfuse3.FUSEError(errno.EACCES)

    @staticmethod
    def _process_of(view, key, caller):
        """For a process's file (a pid, a tid or `self`): (the task's id, its
        tgid), found once for the open; None for any other file.
        ProcessLookupError if the task is gone."""
        if not view.per_process or key in (None, ALL):
            return None
        task_id = caller if key == SELF else key
        return task_id, processes.thread_group(task_id)

    def _opening(self, view, key, process, reader):
        """What the walks of a private view's file are told (progs/opened.h):
        for a process's file (`process`: _process_of), the process as it is
        now, before the access check, so that a process that changed since
        shows nothing; whether it is the caller's own. ENOENT
        (ProcessLookupError) if it is gone."""
        if not view.private or process is None:
            return bpf.Opening()
        flags = bpf.OPENED_PROCESS | (bpf.OPENED_OWN if key == SELF else 0)
        if self.process_list is None:
            if not credentials.is_daemon(reader):
                raise pyfuse3.FUSEError(errno.EACCES)   # nothing to tell processes apart
            return bpf.Opening()
        task_id, tgid = process
        if key == SELF or tgid == task_id:
            start, exec_id = self.process_list.identity(pid=tgid)
        else:
            start, exec_id = self.process_list.identity(tid=task_id)
        return bpf.Opening(flags, start, exec_id)

    @staticmethod
    def _attach_process(view, process, whole_process):
        """Attach for a process (its tgid) or, for a thread's own id, that thread."""
        task_id, tgid = process
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
        # map_ids() has checked each map already: no second look at every one.
        return [(str(map_id).encode(), self._map_attributes(index, map_id))
                for map_id in self.views[index].map_ids()]

    def _map_attributes(self, index, map_id):
        return self._attributes(inodes.of_entry(index, map_id), OWNER_ONLY, PROCESS_TIMEOUT)

    async def forget_views(self, names):
        """After a reload: make the kernel drop what it cached of views that are
        new, replaced or gone, so that the next lookup asks again (dropping a
        directory's entry drops the entries under it). Done when it returns."""
        # The kernel may wait for a request of this loop's: from another thread.
        await trio.to_thread.run_sync(self._forget_views, names)

    def _forget_views(self, names):
        for name in names:
            parent = inodes.of_view(METRICS_NUMBER) if metrics.is_metric(name) else inodes.ROOT
            try:
                pyfuse3.invalidate_entry(parent, name.encode())
            except FileNotFoundError:
                pass        # not in the kernel's cache
        # The root's link count counts the directory views.
        pyfuse3.invalidate_inode(inodes.ROOT, attr_only=True)

    @fuse_operation
    async def read(self, fh, off, size):
        opened = self._open[fh]
        try:
            opened.lock.acquire_nowait()    # no trip through the scheduler when free
        except trio.WouldBlock:
            await opened.lock.acquire()
        try:
            return await opened.read(off, size)
        except OSError as error:
            raise fuse_error(error, opened.name, "read") from None
        finally:
            opened.lock.release()

    @fuse_operation
    async def release(self, fh):
        opened = self._open.pop(fh)
        self._open_by_uid[opened.uid] -= 1
        if not self._open_by_uid[opened.uid]:
            del self._open_by_uid[opened.uid]
        # Not under opened.lock, and never waiting for the pump: see close().
        opened.close()

    @fuse_operation
    async def flush(self, fh):
        # Nothing to flush; ENOSYS tells the kernel to stop asking: a round trip
        # less for every close.
        raise pyfuse3.FUSEError(errno.ENOSYS)

    def _new_handle(self):
        handle = self._next_handle
        self._next_handle += 1
        return handle

    def close_all(self):
        """Close every iterator and link still open, at unmount."""
        for opened in self._open.values():
            opened.close()
        self._open.clear()
        self._directories.clear()
        self._pumps.shutdown()
        if self._namespaces is not None:
            self._namespaces.close()

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
