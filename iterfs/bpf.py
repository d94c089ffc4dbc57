"""BPF objects, programs, iterator links and iterator streams, over libbpf.

Ownership is explicit: an Object owns its Programs; attaching a Program returns a
Link that the caller closes; a Link opens IteratorStreams that the caller closes.
Each is a context manager and none relies on garbage collection to release its fd.

    with bpf.load("build/progs/tcp6.bpf.o") as obj:
        with obj.program("tcp6").attach_iterator() as link:
            with link.open() as stream:
                text = stream.read()
"""

import ctypes
import dataclasses
import enum
import errno
import io
import logging
import os
import struct
import threading

from . import kconfig as kernel_config
from .libbpf import (BPF_PROG_TYPE_TRACING, BPF_TRACE_ITER, BTF_KIND_FUNC, LIBBPF_DEBUG,
                     LIBBPF_INFO, LIBBPF_WARN, ffi, lib)
from .libc import libc

log = logging.getLogger("iterfs.libbpf")

VERIFIER_LOG_SIZE = 1 << 20
# bpf_seq_read answers EAGAIN after visiting a million objects without output;
# each retry makes progress, so only a program that never advances exhausts this.
MAX_EAGAIN_RETRIES = 1000


class BpfError(OSError):
    """A libbpf or bpf(2) step failed: errno is the kernel's, the message names the step."""


class VerifierError(BpfError):
    """The kernel refused to load a program; `log` holds the verifier's log."""

    def __init__(self, code, message, program, verifier_log):
        super().__init__(code, message)
        self.program = program
        self.log = verifier_log

    def __str__(self):
        tail = "\n".join(self.log.rstrip().splitlines()[-5:])
        return f"{super().__str__()}\nverifier log (last lines):\n{tail}"


def _error(step, code, detail=None):
    message = f"{step}: {os.strerror(code)}"
    if detail:
        message += f" ({detail})"
    return BpfError(code, message)


# libbpf reports through one process-wide print callback. Its warnings go to the
# log, and while a thread opens or loads an object everything it says is also kept
# so that the error raised can say what libbpf said: some refusals (an ELF section
# it cannot size, in 1.1) are only ever said at debug level.
_capture = threading.local()


@ffi.callback("int(int, const char *, void *)")
def _print(level, fmt, args):
    try:
        messages = getattr(_capture, "messages", None)
        wanted = (log.isEnabledFor(logging.DEBUG) or level == LIBBPF_WARN
                  or messages is not None)
        if not wanted:
            return 0
        buf = ctypes.create_string_buffer(4096)
        libc.vsnprintf(buf, len(buf), ctypes.c_void_p(int(ffi.cast("uintptr_t", fmt))),
                       ctypes.c_void_p(int(ffi.cast("uintptr_t", args))))
        message = buf.value.decode(errors="replace").rstrip()
        if messages is not None:
            messages.append((level, message))
        if level == LIBBPF_WARN and messages is None:
            log.warning("%s", message)
        elif level in (LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG):
            log.debug("%s", message)
    except Exception:  # a callback from C must never raise
        pass
    return 0


lib.libbpf_set_print(_print)


class _CapturedWarnings:
    def __enter__(self):
        _capture.messages = []
        return _capture.messages

    def __exit__(self, *exc):
        _capture.messages = None


def _last_warning(messages):
    """What libbpf said last before failing: its last warning, else its last word."""
    warnings = [message for level, message in messages if level == LIBBPF_WARN]
    said = warnings or [message for _, message in messages]
    return said[-1].splitlines()[-1] if said else None


class Object:
    """An ELF object file of BPF programs, opened and then loaded into the kernel."""

    def __init__(self, path, kconfig=None, content=None):
        """`kconfig`: CONFIG_ lines for the object's __kconfig externs; by
        default, values read off the running system where libbpf cannot read
        the kernel's config itself (see kconfig.py). `content`: the object's
        bytes, already read from `path` (trust.read_trusted), opened from
        memory rather than by opening `path` again; `path` then only names it,
        and names its maps, as libbpf names them for a file."""
        self.path = os.fspath(path)
        if kconfig is None:
            kconfig = kernel_config.fallback()
        opts = ffi.new("struct bpf_object_open_opts *")
        opts.sz = ffi.sizeof("struct bpf_object_open_opts")
        if kconfig:
            kconfig_text = ffi.new("char[]", kconfig.encode())
            opts.kconfig = kconfig_text
        with _CapturedWarnings() as warnings:
            if content is None:
                self._obj = lib.bpf_object__open_file(self.path.encode(), opts)
            else:
                # The name libbpf gives an object file: its base name up to the first dot.
                name = ffi.new("char[]", os.path.basename(self.path).split(".")[0].encode())
                opts.object_name = name
                # libbpf reads the ELF from this buffer until the object is loaded.
                self._content = ffi.new("char[]", bytes(content))
                self._obj = lib.bpf_object__open_mem(self._content, len(content), opts)
            code = ffi.errno
        if self._obj == ffi.NULL:
            self._obj = None
            raise _error(f"open BPF object {self.path}", code or errno.EINVAL,
                         _last_warning(warnings))
        self.name = ffi.string(lib.bpf_object__name(self._obj)).decode()
        self.programs = []
        prog = lib.bpf_object__next_program(self._obj, ffi.NULL)
        while prog != ffi.NULL:
            self.programs.append(Program(self, prog))
            prog = lib.bpf_object__next_program(self._obj, prog)
        self.maps = []
        self.session_maps = None
        map_ = lib.bpf_object__next_map(self._obj, ffi.NULL)
        while map_ != ffi.NULL:
            self.maps.append(Map(self, map_))
            map_ = lib.bpf_object__next_map(self._obj, map_)

    def load(self):
        """Load every program; the kernel verifies each one now, and only now."""
        buffers = []
        for program in self.programs:
            buf = ffi.new("char[]", VERIFIER_LOG_SIZE)
            lib.bpf_program__set_log_buf(program._prog, buf, len(buf))
            buffers.append((program, buf))
        with _CapturedWarnings() as warnings:
            ret = lib.bpf_object__load(self._obj)
        for program, _ in buffers:
            lib.bpf_program__set_log_buf(program._prog, ffi.NULL, 0)
        if ret < 0:
            code = -ret
            for program, buf in buffers:
                verifier_log = ffi.string(buf).decode(errors="replace")
                if verifier_log:
                    raise VerifierError(
                        code, f"load program {program.name} from {self.path}: "
                        f"{os.strerror(code)}", program.name, verifier_log)
            raise _error(f"load BPF object {self.path}", code, _last_warning(warnings))
        self.session_maps = SessionMaps(self.maps)
        return self

    def program(self, name=None, *, section=None):
        """The program with this function name, or in this ELF section."""
        for program in self.programs:
            if (name is None or program.name == name) and \
                    (section is None or program.section == section):
                return program
        wanted = f"name {name!r}" if name is not None else f"section {section!r}"
        raise BpfError(errno.ENOENT, f"{self.path}: no program with {wanted}")

    @property
    def closed(self):
        return self._obj is None

    def close(self):
        if self._obj is not None:
            if self.session_maps is not None:
                self.session_maps.release()
                self.session_maps = None
            lib.bpf_object__close(self._obj)
            self._obj = None
            self.programs = []
            self.maps = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load(path, kconfig=None, content=None):
    """Open and load an object file (or its `content`, see Object); close it (a
    context manager) when done."""
    obj = Object(path, kconfig, content)
    try:
        return obj.load()
    except BaseException:
        obj.close()
        raise


class Map:
    """One map an Object declares. Once the Object is closed libbpf has freed it:
    using it then raises EBADF."""

    def __init__(self, obj, map_):
        self.object = obj
        self.__map = map_
        self.name = ffi.string(lib.bpf_map__name(map_)).decode()
        self.type = lib.bpf_map__type(map_)

    @property
    def _map(self):
        if self.object.closed:
            raise BpfError(errno.EBADF, f"map {self.name}: {self.object.path} is closed")
        return self.__map

    @property
    def kernel_has_type(self):
        """Whether the running kernel can create a map of this type."""
        return lib.libbpf_probe_bpf_map_type(self.type, ffi.NULL) == 1

    def set_autocreate(self, autocreate):
        """Whether Object.load() creates it: off for a type the kernel lacks
        (no program loaded may use it then). Before load only."""
        code = lib.bpf_map__set_autocreate(self._map, autocreate)
        if code < 0:
            raise _error(f"set autocreate of map {self.name}", -code)

    @property
    def fd(self):
        return lib.bpf_map__fd(self._map)


# What a walk and the daemon tell each other (progs/iterfs.h, struct opening):
# the map the daemon writes before an iterator's first read, by thread id, and
# the maps whose entries, by session id, the daemon deletes when it closes the
# iterator. A program that has none of them is told nothing.
OPENINGS_MAP = "openings"
SESSION_MAPS = frozenset({"sessions", "walks", "udp_walks"})
# session_id, start_boottime, exec_id, flags, unused, pid_ns, user_ns
OPENING = struct.Struct("=QQQIIQQ")
OPENED_PROCESS, OPENED_OWN = 1, 2


class SessionMaps:
    """An object's maps of walks (OPENINGS_MAP, SESSION_MAPS), by fds of their
    own: they stay while a link or an iterator of the object is open, after a
    reload closed the object (its links, and the files open on them, stay too).
    Counted: the object holds one reference, each link and open iterator one."""

    def __init__(self, maps):
        names = {m.name: m for m in maps}
        self._fds = []
        try:
            self.openings = self._dup(names[OPENINGS_MAP]) if OPENINGS_MAP in names else -1
            self.sessions = [self._dup(m) for name, m in names.items() if name in SESSION_MAPS]
        except BaseException:
            self._close()
            raise
        self._users = 1
        self._lock = threading.Lock()

    def _dup(self, map_):
        fd = os.dup(map_.fd)
        self._fds.append(fd)
        return fd

    def acquire(self):
        with self._lock:
            self._users += 1
        return self

    def release(self):
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self._close()

    def _close(self):
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def tell(self, opening):
        """Say what open() saw to the walk whose first read this thread makes;
        the key to read its answer with."""
        key = struct.pack("=I", threading.get_native_id())
        value = OPENING.pack(0, opening.start_boottime, opening.exec_id, opening.flags, 0,
                             opening.pid_ns, opening.user_ns)
        _check(lib.bpf_map_update_elem(self.openings, key, value, 0), "tell a walk")
        return key

    def answer(self, key):
        """The session id the walk answered under `key` (0 if none), taken out."""
        value = ffi.new("char[]", OPENING.size)
        found = lib.bpf_map_lookup_elem(self.openings, key, value) == 0
        lib.bpf_map_delete_elem(self.openings, key)
        return OPENING.unpack(ffi.buffer(value, OPENING.size))[0] if found else 0

    def forget(self, session):
        """Delete what the walk `session` left in the maps."""
        key = struct.pack("=Q", session)
        for fd in self.sessions:
            code = lib.bpf_map_delete_elem(fd, key)
            if code < 0 and code != -errno.ENOENT:
                _check(code, "delete a walk's state")


def _check(code, step):
    if code < 0:
        raise _error(step, -code)


@dataclasses.dataclass(frozen=True)
class Opening:
    """What open() saw, for the walks of one open file: for a file of one
    process, that process (its leader's start time and exec count); for a
    reader whose pid or user namespace is not the daemon's, the kernel
    addresses of those (namespaces.Namespaces, which holds them)."""
    flags: int = 0
    start_boottime: int = 0
    exec_id: int = 0
    pid_ns: int = 0
    user_ns: int = 0


class Program:
    """One program of an Object. Once the Object is closed libbpf has freed it:
    using it then raises EBADF. A link attached before stays valid: the kernel's
    link holds the program."""

    def __init__(self, obj, prog):
        self.object = obj
        self.__prog = prog
        self.name = ffi.string(lib.bpf_program__name(prog)).decode()
        self.section = ffi.string(lib.bpf_program__section_name(prog)).decode()

    @property
    def _prog(self):
        if self.object.closed:
            raise BpfError(errno.EBADF, f"program {self.name}: {self.object.path} is closed")
        return self.__prog

    @property
    def iterator_target(self):
        """The iterator target named by an `iter/<target>` section, else None."""
        kind, _, target = self.section.partition("/")
        return target if kind in ("iter", "iter.s") and target else None

    @property
    def fd(self):
        return lib.bpf_program__fd(self._prog)

    def set_autoload(self, autoload):
        """Whether Object.load() loads this program: off for a variant the
        running kernel cannot take. Before load only."""
        code = lib.bpf_program__set_autoload(self._prog, autoload)
        if code < 0:
            raise _error(f"set autoload of {self.name}", -code)

    def attach_iterator(self, *, pid=None, tid=None, map_id=None):
        """Attach as an iterator. `pid` limits a task iterator to one process,
        `tid` to one thread; `map_id` names the map a map iterator walks; with
        none of them it walks every object of its target."""
        if sum(x is not None for x in (pid, tid, map_id)) > 1:
            raise ValueError("give one of pid, tid and map_id")
        if map_id is not None:
            return self._attach_to_map(map_id)
        opts = ffi.NULL
        if pid is not None or tid is not None:
            link_info = ffi.new("union bpf_iter_link_info *")
            if pid is not None:
                link_info.task.pid = pid
            else:
                link_info.task.tid = tid
            opts = _iterator_options(link_info)
        return self._attach(opts, f"attach iterator {self.name}")

    def _attach_to_map(self, map_id):
        # The link holds the map once attached: the fd is only needed to name it.
        map_fd = _map_fd(map_id)
        try:
            link_info = ffi.new("union bpf_iter_link_info *")
            link_info.map.map_fd = map_fd
            return self._attach(_iterator_options(link_info),
                                f"attach iterator {self.name} to map {map_id}")
        finally:
            os.close(map_fd)

    def _attach(self, opts, step):
        link = lib.bpf_program__attach_iter(self._prog, opts)
        if link == ffi.NULL:
            raise _error(step, ffi.errno or errno.EINVAL)
        maps = self.object.session_maps
        return Link(link, self, maps and maps.acquire())


def _iterator_options(link_info):
    """Options pointing at `link_info`, which the caller keeps alive until attached."""
    opts = ffi.new("struct bpf_iter_attach_opts *")
    opts.sz = ffi.sizeof("struct bpf_iter_attach_opts")
    opts.link_info = link_info
    opts.link_info_len = ffi.sizeof(link_info[0])
    return opts


class Link:
    """An attached iterator. Each open() starts a fresh walk of its objects.
    It holds its object's maps of walks until closed: a walk begun again after
    a reload closed the object (a read behind the file's position) is told what
    open() saw, as the first was."""

    def __init__(self, link, program, session_maps):
        """`session_maps`: a reference of the link's own (released at close)."""
        self._link = link
        self.program = program
        self._maps = session_maps
        self.fd = lib.bpf_link__fd(link)

    def open(self, opening=Opening()):
        """A fresh walk; its program is told `opening` (if it has the maps)."""
        fd = lib.bpf_iter_create(self.fd)
        if fd < 0:
            raise _error(f"create iterator {self.program.name}", -fd)
        try:
            return IteratorStream(fd, self.program.name, self._maps and self._maps.acquire(),
                                  opening)
        except BaseException:
            os.close(fd)
            raise

    def close(self):
        if self._link is not None:
            lib.bpf_link__destroy(self._link)
            self._link = None
            self.fd = -1
            if self._maps is not None:
                self._maps.release()
                self._maps = None

    @property
    def closed(self):
        return self._link is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class IteratorStream(io.RawIOBase):
    """The read side of an iterator: a binary, unseekable, file-like object."""

    def __init__(self, fd, name, session_maps=None, opening=Opening()):
        """`session_maps`: a reference of the stream's own (released at close)."""
        super().__init__()
        self._fd = fd
        self.name = name
        self._maps = session_maps
        self._opening = opening
        # Told once the first read told the walk what open() saw.
        self._told = session_maps is None or session_maps.openings < 0
        self._session = 0            # the walk's session id, as it answered

    def fileno(self):
        self._checkClosed()
        return self._fd

    def readable(self):
        return True

    def readinto(self, buffer):
        return self._retrying(os.readv, [buffer])

    def read(self, size=-1):
        """The next bytes the kernel gives, at most `size` (32 KiB at most a call,
        the iterator's seq_file buffer); b"" at the end."""
        if size < 0:
            return self.readall()
        return self._retrying(os.read, size)

    def _retrying(self, read, argument):
        self._checkClosed()
        if not self._told:
            return self._first_read(read, argument)
        return self._read(read, argument)

    def _first_read(self, read, argument):
        """The read that begins the walk: the program is told what open() saw,
        under this thread's id, and answers with the session's id."""
        key = self._maps.tell(self._opening)
        try:
            return self._read(read, argument)
        finally:
            self._session = self._maps.answer(key)
            self._told = True

    def _read(self, read, argument):
        for _ in range(MAX_EAGAIN_RETRIES):
            try:
                return read(self._fd, argument)
            except BlockingIOError:
                continue
            except OSError as error:
                raise _error(f"read iterator {self.name}", error.errno) from error
        raise BpfError(errno.EAGAIN, f"read iterator {self.name}: no progress")

    def fill(self, size):
        """Read until `size` bytes or the end of the iterator, whichever is first."""
        buffer = bytearray(size)
        view = memoryview(buffer)
        filled = 0
        while filled < size:
            n = self.readinto(view[filled:])
            if not n:
                break
            filled += n
        del view
        del buffer[filled:]
        return bytes(buffer)

    def close(self):
        if not self.closed:
            try:
                os.close(self._fd)
                if self._maps is not None:
                    try:
                        if self._session:
                            self._maps.forget(self._session)
                    finally:
                        self._maps.release()
            finally:
                super().close()


# -- maps and iterator targets -------------------------------------------------


class MapType(enum.IntEnum):
    """enum bpf_map_type, the kinds the map iterators attach to (uapi: stable)."""
    HASH = 1
    ARRAY = 2
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    SOCKMAP = 15
    SOCKHASH = 18
    SK_STORAGE = 24


@dataclasses.dataclass(frozen=True)
class MapInfo:
    id: int
    type: int
    key_size: int
    value_size: int
    name: str

    @property
    def type_name(self):
        try:
            return MapType(self.type).name.lower()
        except ValueError:
            return f"type {self.type}"


def _map_fd(map_id):
    fd = lib.bpf_map_get_fd_by_id(map_id)
    if fd < 0:
        raise _error(f"open map {map_id}", -fd)
    return fd


def map_info(map_id):
    """What the kernel says of map `map_id`; BpfError (ENOENT) if there is none."""
    fd = _map_fd(map_id)
    try:
        info = ffi.new("struct bpf_map_info *")
        size = ffi.new("uint32_t *", ffi.sizeof(info[0]))
        if lib.bpf_obj_get_info_by_fd(fd, info, size) < 0:
            raise _error(f"map {map_id} info", ffi.errno or errno.EINVAL)
        return MapInfo(info.id, info.type, info.key_size, info.value_size,
                       ffi.string(info.name).decode(errors="replace"))
    finally:
        os.close(fd)


def map_ids():
    """The id of every map loaded, in ascending order."""
    ids = []
    next_id = ffi.new("uint32_t *")
    while lib.bpf_map_get_next_id(ids[-1] if ids else 0, next_id) == 0:
        ids.append(next_id[0])
    return ids


class KernelTargets:
    """The iterator targets the running kernel registers, and whether it takes a
    program for each. A target has a function bpf_iter_<target> in the kernel's
    BTF (or a module's), which libbpf looks up to load the program: a target
    missing there can never be loaded."""

    def __init__(self):
        self._vmlinux = lib.btf__load_vmlinux_btf()
        if self._vmlinux == ffi.NULL:
            self._vmlinux = None
            raise _error("load the kernel's BTF", ffi.errno or errno.ENOENT)
        self._refusals = {}

    def __contains__(self, target):
        return self._find(target) is not None

    def _find(self, target):
        """(module name or None, BTF type id) of bpf_iter_<target>, or None."""
        name = f"bpf_iter_{target}".encode()
        type_id = lib.btf__find_by_name_kind(self._vmlinux, name, BTF_KIND_FUNC)
        if type_id > 0:
            return None, type_id
        for module in _btf_modules():
            type_id = self._in_module(module, name)
            if type_id > 0:
                return module, type_id
        return None

    def _in_module(self, module, name):
        btf = lib.btf__load_module_btf(module.encode(), self._vmlinux)
        if btf == ffi.NULL:
            return -1
        try:
            return lib.btf__find_by_name_kind(btf, name, BTF_KIND_FUNC)
        finally:
            lib.btf__free(btf)

    def refusal(self, target):
        """Why the kernel takes no program for `target`, or None if it takes one.

        The test is the least program there is: `return 0`, attached to the
        target. A kernel that lacks the target, or refuses even that program
        (some builds refuse every iter/bpf_map_elem program with EPERM), can
        serve no view of it; a view whose program fails where this loads is
        refused for what its program does."""
        if target not in self._refusals:
            self._refusals[target] = self._probe(target)
        return self._refusals[target]

    def _probe(self, target):
        found = self._find(target)
        if found is None:
            return (f"iterator target {target} is not in this kernel "
                    f"(no bpf_iter_{target} in its BTF)")
        module, type_id = found
        module_fd = _kernel_btf_fd(module) if module else -1
        if module and module_fd < 0:
            return f"iterator target {target}: module {module}'s BTF cannot be opened"
        try:
            return _load_empty_iterator(target, type_id, max(module_fd, 0))
        finally:
            if module_fd >= 0:
                os.close(module_fd)

    def close(self):
        if self._vmlinux is not None:
            lib.btf__free(self._vmlinux)
            self._vmlinux = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# r0 = 0; exit: BPF_ALU64 | BPF_MOV | BPF_K, then BPF_JMP | BPF_EXIT
_EMPTY_PROGRAM = ((0xb7, 0, 0, 0), (0x95, 0, 0, 0))


def _load_empty_iterator(target, type_id, module_fd):
    insns = ffi.new("struct bpf_insn[]", _EMPTY_PROGRAM)
    log_buf = ffi.new("char[]", 4096)
    opts = ffi.new("struct bpf_prog_load_opts *")
    opts.sz = ffi.sizeof("struct bpf_prog_load_opts")
    opts.expected_attach_type = BPF_TRACE_ITER
    opts.attach_btf_id = type_id
    opts.attach_btf_obj_fd = module_fd
    opts.log_level = 1
    opts.log_size = len(log_buf)
    opts.log_buf = log_buf
    fd = lib.bpf_prog_load(BPF_PROG_TYPE_TRACING, b"iterfs_probe", b"GPL", insns,
                           len(_EMPTY_PROGRAM), opts)
    if fd >= 0:
        os.close(fd)
        return None
    said = [line for line in ffi.string(log_buf).decode(errors="replace").splitlines()
            if line and not line[0].isdigit() and not line.startswith(("processed ", "verification"))]
    detail = f": {said[-1]}" if said else ""
    return (f"the kernel refuses even an empty iter/{target} program: "
            f"{os.strerror(-fd)} ({errno.errorcode.get(-fd, -fd)}){detail}")


def _kernel_btf_fd(module):
    """An fd of the kernel's BTF object of `module`, or -1."""
    next_id = ffi.new("uint32_t *")
    btf_id = 0
    name = ffi.new("char[]", 64)
    while lib.bpf_btf_get_next_id(btf_id, next_id) == 0:
        btf_id = next_id[0]
        fd = lib.bpf_btf_get_fd_by_id(btf_id)
        if fd < 0:
            continue
        info = ffi.new("struct bpf_btf_info *")
        info.name = int(ffi.cast("uintptr_t", name))
        info.name_len = len(name)
        size = ffi.new("uint32_t *", ffi.sizeof(info[0]))
        if lib.bpf_obj_get_info_by_fd(fd, info, size) == 0 and info.kernel_btf and \
                ffi.string(name).decode(errors="replace") == module:
            return fd
        os.close(fd)
    return -1


def _btf_modules():
    try:
        return sorted(name for name in os.listdir("/sys/kernel/btf") if name != "vmlinux")
    except FileNotFoundError:
        return []
