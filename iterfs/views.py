"""Views: the files and directories at the mount's root, one per program.

A program file in a program directory (see directories.py) holding one
`iter/<target>` program becomes a view (a metric may hold several of one
target: metrics.py). Its target decides its shape: task
targets are per-process directories, map targets directories of the maps they
can walk, every other target a single file. A view whose name ends in `.prom`
is a metric (metrics.py): a single file in `metrics/` whatever its task
target; a map target, which needs a map to attach to, cannot make one.
`.status` says what became of each program file.

A drop-in view (from /etc/iterfs/progs.d or --progs, not a built-in one) is
root's alone unless its program declares that every user may read it
(ITERFS_WORLD_READABLE in progs/iterfs.h: a marker in the object's ELF section
`.iterfs.access`, which libbpf skips). A declared view is served as a built-in
one of its target is.

The table gives each view a number, which the filesystem makes its inode
numbers from. A number is a view's for the daemon's lifetime and never given to
another program: a reload keeps the number of a view whose program did not
change, and gives a new one to a view that is new or whose program changed.
"""

import collections.abc
import dataclasses
import errno
import hashlib
import logging
import struct

from . import bpf, metrics
from .compiler import CompileError
from .directories import find_programs
from .interfaces import Served
from .status import Entry, Reloads, StatusFile
from .trust import UntrustedError, read_trusted

log = logging.getLogger("iterfs.views")

PER_PROCESS_TARGETS = frozenset({"task", "task_file", "task_vma"})
# What /proc shows only to who may ptrace-read the process: its fds and its maps.
PRIVATE_TARGETS = frozenset({"task_file", "task_vma"})
# Objects whose ids the kernel lets only CAP_SYS_ADMIN walk (bpftool's lists).
BPF_OBJECT_TARGETS = frozenset({"bpf_prog", "bpf_map", "bpf_link"})
# Views root's alone (0400), as /proc/slabinfo is, or as bpftool needs root.
ROOT_ONLY_TARGETS = BPF_OBJECT_TARGETS | {"kmem_cache"}
# The map types each map target attaches to (kernel/bpf/map_iter.c,
# net/core/bpf_sk_storage.c, net/core/sock_map.c); the kernel also refuses a
# map whose keys or values are smaller than what the program reads of them.
MAP_TARGETS = {
    "bpf_map_elem": frozenset({bpf.MapType.HASH, bpf.MapType.ARRAY, bpf.MapType.PERCPU_HASH,
                               bpf.MapType.PERCPU_ARRAY, bpf.MapType.LRU_HASH,
                               bpf.MapType.LRU_PERCPU_HASH}),
    "bpf_sk_storage_map": frozenset({bpf.MapType.SK_STORAGE}),
    "sockmap": frozenset({bpf.MapType.SOCKMAP, bpf.MapType.SOCKHASH}),
}
# The section ITERFS_WORLD_READABLE (progs/iterfs.h) puts its marker in, and the marker.
ACCESS_SECTION = b".iterfs.access"
WORLD_READABLE = b"world-readable"
STATUS_NUMBER = 0            # .status's view number
METRICS_NUMBER = 1           # metrics/'s
OWN_NUMBERS = (STATUS_NUMBER, METRICS_NUMBER)   # what iterfs serves of itself
# Lines of a verifier's log that .status and the log show: where it gave up.
VERIFIER_LINES = 5


class TargetUnsupported(Exception):
    """The running kernel lacks the program's iterator target, or refuses even
    an empty program for it: no program of ours could be served there."""


class ProgramRejected(Exception):
    """The kernel takes programs for the target but refused this one: our bug."""

    def __init__(self, reason, details=()):
        super().__init__(reason)
        self.details = list(details)


@dataclasses.dataclass(eq=False)
class View(Served):
    """A program's view: a metric's may have several programs (metrics.py)."""

    name: str
    programs: tuple     # bpf.Program, in the order their walks are read
    source: str         # the file it came from
    identity: tuple     # what it was built from: the same identity, the same program
    restricted: bool = False    # a drop-in that did not declare itself world-readable

    @property
    def program(self):
        return self.programs[0]

    @property
    def target(self):
        return self.program.iterator_target

    @property
    def is_metric(self):
        return metrics.is_metric(self.name)

    @property
    def per_process(self):
        return self.target in PER_PROCESS_TARGETS and not self.is_metric

    @property
    def private(self):
        # A metric walks every task, as `all` does, but prints only what its
        # program counts: a built-in one's totals (see metrics.py).
        return self.target in PRIVATE_TARGETS and not self.is_metric

    @property
    def per_map(self):
        return self.target in MAP_TARGETS

    @property
    def root_only(self):
        return self.target in ROOT_ONLY_TARGETS or self.restricted

    @property
    def is_directory(self):
        return self.per_process or self.per_map

    def attach(self, *, pid=None, tid=None, map_id=None):
        if len(self.programs) > 1:          # a metric's: no parameter
            links = []
            try:
                for program in self.programs:
                    links.append(program.attach_iterator())
            except BaseException:
                metrics.close_all(links)
                raise
            return metrics.Walks(links)
        try:
            return self.program.attach_iterator(pid=pid, tid=tid, map_id=map_id)
        except bpf.BpfError as error:
            if map_id is not None and error.errno == errno.EACCES:
                self._log_refused_map(map_id)
            raise

    def _log_refused_map(self, map_id):
        try:
            info = bpf.map_info(map_id)
        except OSError:
            return
        log.error("view %s: map %d (%s, key_size %d, value_size %d) refused the program: "
                  "it reads more of a key or value than the map has", self.name, map_id,
                  info.type_name, info.key_size, info.value_size)

    def map_ids(self):
        """The maps this view's program can walk: those of a type its target takes."""
        return [map_id for map_id in bpf.map_ids() if self.has_map(map_id)]

    def has_map(self, map_id):
        try:
            return bpf.map_info(map_id).type in MAP_TARGETS[self.target]
        except OSError:
            return False        # gone since listed

    def close(self):
        self.program.object.close()


@dataclasses.dataclass
class Scan:
    """What the program directories hold now: a line per file, a view per name."""
    entries: list
    views: dict


class ViewTable(collections.abc.Mapping):
    """The views served, by number (a Mapping: number -> view), iterated in name
    order. `.status` is number 0, `metrics/` 1; the programs' views count from 2."""

    def __init__(self, directories, compiler):
        self.directories = list(directories)
        self.compiler = compiler
        self.entries = []
        self.reloads = Reloads()        # the daemon's SIGHUP task keeps it
        self._own = {STATUS_NUMBER: StatusFile(lambda: self.entries, self.reloads),
                     METRICS_NUMBER: metrics.MetricsDirectory()}
        self._views = dict(self._own)
        self._numbers = self._numbers_of(self._views)
        self._next_number = max(OWN_NUMBERS) + 1

    def __getitem__(self, number):
        return self._views[number]

    def __iter__(self):
        return iter(sorted(self._views, key=lambda number: self._views[number].name))

    def __len__(self):
        return len(self._views)

    def number(self, name):
        """The number of the view called `name` (bytes), or None. Names are
        unique across the root and metrics/: only a metric's ends in `.prom`."""
        return self._numbers.get(name)

    @staticmethod
    def _numbers_of(views):
        return {view.name.encode(): number for number, view in views.items()}

    def serving(self):
        return [self._views[number] for number in self if number not in OWN_NUMBERS]

    # -- scanning: in a worker thread, changing nothing that requests read ----

    def scan(self):
        """Find, compile and load what the program directories hold now. Views
        whose program did not change are the ones served now, not loaded again."""
        current = {view.name: view for view in self.serving()}
        scan = Scan([], {})
        try:
            with bpf.KernelTargets() as targets:
                for candidate in find_programs(self.directories):
                    self._scan_one(candidate, current.get(candidate.name), targets, scan)
        except BaseException:
            self._close_new(scan, current)
            raise
        return scan

    def _scan_one(self, candidate, current, targets, scan):
        entry = Entry(candidate.name, candidate.path)
        scan.entries.append(entry)
        if candidate.refused:
            _skip(entry, candidate.refused)
            return
        try:
            view = self._view(candidate, current, targets, entry)
        except TargetUnsupported as error:
            _skip(entry, str(error), state="unsupported", level=logging.INFO)
        except ProgramRejected as error:
            _skip(entry, str(error), error.details, state="rejected")
        except CompileError as error:
            _skip(entry, error.strerror, error.details)
        except UntrustedError as error:         # the file, or a header it includes
            _skip(entry, f"refused: {error.strerror}")
        except OSError as error:
            _skip(entry, error.strerror or str(error))
        except Exception as error:              # one program's, not the others'
            _skip(entry, f"{type(error).__name__}: {error}")
        else:
            entry.target = view.target
            scan.views[candidate.name] = view

    def _view(self, candidate, current, targets, entry):
        # The object is read once, checked (trust.py), and loaded from what was read.
        if candidate.is_source:
            path = str(self.compiler.compile(candidate.path))
            identity = (candidate.path, path)       # the object's path holds its key
            if current is not None and current.identity == identity:
                return current
            content = read_trusted(path).content
        else:
            path = candidate.path
            content = read_trusted(path).content
            identity = (candidate.path, hashlib.sha256(content).hexdigest())
            if current is not None and current.identity == identity:
                return current
        obj = bpf.Object(path, content=content)
        try:
            programs = _iterator_programs(obj, candidate.path, metrics.is_metric(candidate.name))
            entry.target = programs[0].iterator_target
            refusal = targets.refusal(entry.target)
            if refusal:
                raise TargetUnsupported(refusal)
            if metrics.is_metric(candidate.name) and entry.target in MAP_TARGETS:
                raise bpf.BpfError(errno.EINVAL, f"a metric is one file, attached to no map: "
                                                 f"target {entry.target} needs a map")
            try:
                obj.load()
            except bpf.VerifierError as error:
                raise ProgramRejected(error.strerror, _log_tail(error.log)) from error
            except bpf.BpfError as error:
                raise ProgramRejected(error.strerror) from error
        except BaseException:
            obj.close()
            raise
        log.debug("view %s: %s %s, target %s, from %s", candidate.name,
                  "program" if len(programs) == 1 else "programs",
                  ", ".join(program.name for program in programs), entry.target, candidate.path)
        restricted = not candidate.built_in and not declares_world_readable(content)
        return View(candidate.name, programs, candidate.path, identity, restricted)

    def _close_new(self, scan, current):
        for view in scan.views.values():
            if current.get(view.name) is not view:
                view.close()

    # -- applying: in the event loop, between requests --------------------

    def apply(self, scan):
        """Serve what `scan` found. The names of views added, replaced or gone are
        returned, for the filesystem to make the kernel forget them; programs no
        longer served are closed (a file open on one keeps it: its link holds it)."""
        old = {view.name: number for number, view in self._views.items()
               if number not in OWN_NUMBERS}
        views = dict(self._own)
        added, replaced = [], []
        for name, view in scan.views.items():
            number = old.get(name)
            if number is None or self._views[number] is not view:
                (added if number is None else replaced).append(name)
                number = self._next_number
                self._next_number += 1
            views[number] = view
        removed = sorted(set(old) - set(scan.views))
        retired = [self._views[number] for name, number in old.items()
                   if views.get(number) is not self._views[number]]
        self._views = views
        self._numbers = self._numbers_of(views)
        self.entries = sorted(scan.entries, key=lambda entry: metrics.path(entry.name))
        for view in retired:
            view.close()
        if added or replaced or removed:
            log.info("views: %s", "; ".join(
                f"{what} {', '.join(names)}" for what, names in
                (("added", added), ("replaced", replaced), ("removed", removed)) if names))
        return sorted(added + replaced + removed)

    def reload(self):
        """Scan and apply at once (at start, before anything is served)."""
        return self.apply(self.scan())

    def close(self):
        for view in self.serving():
            view.close()
        self._views = dict(self._own)
        self._numbers = self._numbers_of(self._views)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _skip(entry, reason, details=(), state="skipped", level=logging.ERROR):
    """`entry` not served, and one log line saying why."""
    entry.skip(reason, details, state)
    suffix = f" [{' | '.join(entry.details)}]" if entry.details else ""
    log.log(level, "view %s %s: %s%s", entry.name, state, reason, suffix)


def _iterator_programs(obj, path, metric):
    """The object's iterator programs, by name: one, or for a metric one or more
    of one target."""
    programs = sorted((p for p in obj.programs if p.iterator_target), key=lambda p: p.name)
    if not programs or (len(programs) > 1 and not metric):
        raise bpf.BpfError(errno.EINVAL, f"{path} has {len(programs)} iterator programs, "
                                         "not one")
    targets = sorted({p.iterator_target for p in programs})
    if len(targets) > 1:
        raise bpf.BpfError(errno.EINVAL, f"{path}: a metric's iterator programs have one "
                                         f"target, not {len(targets)} ({', '.join(targets)})")
    return programs


def declares_world_readable(content):
    """Whether the ELF object `content` holds ITERFS_WORLD_READABLE's marker."""
    try:
        return _elf_section(content, ACCESS_SECTION).rstrip(b"\0") == WORLD_READABLE
    except (struct.error, ValueError, IndexError):
        return False        # not an ELF file libbpf would take anyway


def _elf_section(content, wanted):
    """The bytes of the ELF64 section named `wanted`, or b"" if there is none."""
    if content[:4] != b"\x7fELF" or content[4] != 2:          # ELFCLASS64, as BPF's
        raise ValueError("not an ELF64 object")
    order = "<" if content[5] == 1 else ">"                     # ELFDATA2LSB
    header = struct.Struct(order + "16xHHIQQQIHHHHHH")
    (*_, section_offset, _, _, _, _, entry_size, count, names_index) = \
        header.unpack_from(content)
    section = struct.Struct(order + "IIQQQQIIQQ")

    def entry(index):
        return section.unpack_from(content, section_offset + index * entry_size)

    names_offset = entry(names_index)[4]
    for index in range(count):
        name, _, _, _, offset, size, *_ = entry(index)
        start = names_offset + name
        if content[start:content.index(b"\0", start)] == wanted:
            return content[offset:offset + size]
    return b""


def _log_tail(verifier_log):
    return [line for line in verifier_log.rstrip().splitlines() if line][-VERIFIER_LINES:]
