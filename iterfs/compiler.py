"""Compiling a view's BPF C into an object, as the Makefile does, once per content.

    source.bpf.c  ->  clang -g -O2 -target bpf ...  ->  <cache>/objects/<key>/<name>.bpf.o

What is compiled is exactly what was checked: the source is read once from
the file trust.py checked, and clang compiles a private copy of those bytes
(in a root-only directory of the cache), never the path. The headers it
includes are listed first (clang -M, which compiles nothing) and each is
checked before anything is compiled; the compile then lists what it read
(-MD), and a header that was not checked before fails it. So a header someone
else could write never reaches the compiler's output, not even once. clang and
bpftool are root's files in fixed system directories, found once, never
through PATH, and run with a fixed environment (no CPATH, no
CCC_OVERRIDE_OPTIONS).

The key is a hash of everything the object depends on: the compiler's version,
the flags, the source, and every header it included (vmlinux.h, progs/*.h,
libbpf's, the source's neighbours), as clang itself lists them. A second
compile of the same content finds its object in the cache and runs nothing:

    <cache>/vmlinux/<BTF sha256>/vmlinux.h   generated from the running kernel's BTF
    <cache>/deps/<source key>                the headers the last compile included
    <cache>/objects/<key>/<name>.bpf.o       the object (named so libbpf names
                                             its maps after the view)
    <cache>/compile-*/                       a compile's private copy and output
"""

import contextlib
import errno
import hashlib
import logging
import os
import platform
import re
import subprocess
import tempfile
from pathlib import Path

from .directories import SOURCE_SUFFIX
from .trust import check_trusted, check_trusted_file, read_trusted

log = logging.getLogger("iterfs.compiler")

BTF = Path("/sys/kernel/btf/vmlinux")
COMPILE_TIMEOUT = 300
# The first error's lines that the status file and the log show.
ERROR_LINES = 6
# uname -m as the kernel's arch/ directories name it (the Makefile's ARCH).
ARCHITECTURES = {"x86_64": "x86", "aarch64": "arm64", "ppc64le": "powerpc",
                 "s390x": "s390", "riscv64": "riscv"}
# Where the tools are looked for, in this order; never PATH.
TOOL_DIRECTORIES = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin")
# The tools' whole environment: nothing of the daemon's (CPATH, C_INCLUDE_PATH and
# CCC_OVERRIDE_OPTIONS change what clang reads and does, unseen by the cache key).
TOOL_ENVIRONMENT = {"PATH": ":".join(TOOL_DIRECTORIES), "LC_ALL": "C"}


class CompileError(OSError):
    """clang could not compile a program; `output` is what it said."""

    def __init__(self, source, message, output=""):
        super().__init__(errno.EINVAL, f"compile {source}: {message}")
        self.output = output

    @property
    def details(self):
        """The first error and the lines after it (where it is and why)."""
        lines = self.output.rstrip().splitlines()
        first = next((i for i, line in enumerate(lines) if "error:" in line), 0)
        return [line for line in lines[first:first + ERROR_LINES]
                if not line.endswith(" generated.")]


def bpf_flags(include_directories):
    """The Makefile's BPF_CFLAGS, but -Werror: a warning in someone's view is
    logged, not fatal."""
    machine = platform.machine()
    arch = ARCHITECTURES.get(machine, machine)
    return ["-g", "-O2", "-target", "bpf", f"-D__TARGET_ARCH_{arch}", "-Wall",
            *(f"-I{directory}" for directory in include_directories)]


def _sha256(*parts):
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else str(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def find_tool(name):
    """The absolute path of `name` in TOOL_DIRECTORIES, a file only root can have
    written; None if there is none. The first one found decides."""
    for directory in TOOL_DIRECTORIES:
        path = os.path.join(directory, name)
        if os.path.lexists(path):
            try:
                check_trusted_file(path)
            except OSError as error:
                log.error("%s refused: %s", path, error.strerror or error)
                return None
            return path
    return None


def _parse_dependencies(text):
    """The files of a make rule written by clang -MD: `target: dep dep \\ ...`,
    unescaped as clang escapes them (DependencyFile.cpp, PrintFilename): a
    space after an odd run of backslashes, `\\#` and `$$` are part of a name."""
    _, _, rest = text.replace("\\\n", " ").partition(": ")
    paths, current, i = [], [], 0
    while i < len(rest):
        char = rest[i]
        if char == "\\":
            end = i
            while end < len(rest) and rest[end] == "\\":
                end += 1
            run, following = end - i, rest[end:end + 1]
            if following == " ":
                # 2n + 1 backslashes: n of them and a space; 2n: n, then the next name.
                current.append("\\" * (run // 2) + (" " if run % 2 else ""))
                end += run % 2
            elif following == "#":
                current.append("\\" * (run - 1) + "#")
                end += 1
            else:
                current.append("\\" * run)
            i = end
            continue
        if char == "$" and rest[i + 1:i + 2] == "$":
            current.append("$")
            i += 2
            continue
        if char.isspace():
            if current:
                paths.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    if current:
        paths.append("".join(current))
    return [os.path.abspath(path) for path in paths]


class Compiler:
    """Compiles with clang against the running kernel's vmlinux.h and the
    headers of progs/ (`headers`), keeping what it built in `cache`. clang and
    bpftool are found once, here; a compile without them fails saying which."""

    def __init__(self, headers, cache):
        self.headers = Path(headers)
        self.cache = Path(cache)
        self.clang = find_tool("clang")
        self.bpftool = find_tool("bpftool")
        self._version = None

    def compile(self, source):
        """The object built from `source` (a path); CompileError if clang fails,
        PermissionError if the source, the cache or a header it includes is not
        to be trusted."""
        source = os.path.abspath(source)
        program = read_trusted(source)
        self._prepare_cache()
        flags = bpf_flags([self._vmlinux_directory(), self.headers])
        source_key = _sha256(self._clang_version(), *flags, source, program.content)
        name = os.path.basename(source)[:-len(SOURCE_SUFFIX)]
        cached = self._cached(source_key, name)
        if cached is not None:
            log.debug("%s: compiled before: %s", source, cached)
            return cached
        return self._compile(source, program.content, flags, source_key, name)

    def _cached(self, source_key, name):
        deps = self.cache / "deps" / source_key
        try:
            dependencies = deps.read_text().splitlines()
            key = _object_key(source_key, _checked_headers(dependencies))
        except FileNotFoundError:
            return None      # never compiled, or a header is gone
        path = self.cache / "objects" / key / f"{name}.bpf.o"
        return path if path.exists() else None

    def _compile(self, source, content, flags, source_key, name):
        with tempfile.TemporaryDirectory(dir=self.cache, prefix="compile-") as work:
            # The copy alone in its directory; the source's own directory comes
            # first for "quoted" includes, as if clang read the source there.
            copy_directory = os.path.join(work, "source")
            os.mkdir(copy_directory, 0o700)
            copy = os.path.join(copy_directory, os.path.basename(source))
            with open(copy, "xb") as f:
                f.write(content)
            flags = [*flags, "-iquote", os.path.dirname(source)]
            listed = os.path.join(work, "listed")
            try:
                self._run(source, copy, [self.clang, *flags, "-M", "-MF", listed, copy])
            except CompileError as error:
                _check_mentioned(error.output, source)
                raise
            headers = _checked_headers(_dependencies(listed, copy))
            output = os.path.join(work, f"{name}.bpf.o")
            deps = os.path.join(work, "deps")
            log.info("compiling %s", source)
            # No -ffile-prefix-map naming the source in the debug info: clang
            # would then read the source's lines for BTF from the source's path.
            result = self._run(source, copy, [self.clang, *flags, "-MD", "-MF", deps, "-c",
                                              copy, "-o", output])
            if result.stderr.strip():
                log.warning("%s: clang warned: %s", source, result.stderr.strip().splitlines()[0])
            unchecked = sorted(set(_dependencies(deps, copy)) - set(headers))
            if unchecked:
                raise CompileError(source, f"{unchecked[0]} was read by clang but not "
                                           "listed before: changed while compiling")
            key = _object_key(source_key, headers)
            directory = self.cache / "objects" / key
            directory.mkdir(exist_ok=True)
            os.chmod(output, 0o644)
            os.replace(output, directory / f"{name}.bpf.o")
            self._write(self.cache / "deps" / source_key, "".join(d + "\n" for d in headers))
        return directory / f"{name}.bpf.o"

    def _run(self, source, copy, command):
        """clang's result; CompileError if it failed, saying what it said of the
        copy as said of the source."""
        if command[0] is None:
            raise CompileError(source, _missing("clang"))
        try:
            result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                    text=True, errors="replace", timeout=COMPILE_TIMEOUT,
                                    env=TOOL_ENVIRONMENT)
        except subprocess.TimeoutExpired:
            raise CompileError(source, f"clang took more than {COMPILE_TIMEOUT} s") from None
        result.stderr = result.stderr.replace(copy, source)
        if result.returncode != 0:
            raise CompileError(source, f"clang exited with status {result.returncode}",
                               result.stderr)
        return result

    def _clang_version(self):
        if self.clang is None:
            raise CompileError("programs", _missing("clang"))
        if self._version is None:
            self._version = subprocess.run([self.clang, "--version"], capture_output=True,
                                           text=True, timeout=60, env=TOOL_ENVIRONMENT).stdout
        return self._version

    def _prepare_cache(self):
        """The cache holds what will run in the kernel: root's alone (0700)."""
        self.cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        for directory in (self.cache, self.cache / "deps", self.cache / "objects",
                          self.cache / "vmlinux"):
            directory.mkdir(mode=0o700, exist_ok=True)
            check_trusted(directory)

    def _vmlinux_directory(self):
        """Where vmlinux.h of the running kernel is: generated once per kernel BTF."""
        directory = self.cache / "vmlinux" / _file_sha256(BTF)
        if not (directory / "vmlinux.h").exists():
            directory.mkdir(exist_ok=True)
            log.info("generating %s from %s", directory / "vmlinux.h", BTF)
            if self.bpftool is None:
                raise CompileError("vmlinux.h", _missing("bpftool"))
            with _partial(directory / "vmlinux.h") as partial, open(partial, "w") as out:
                result = subprocess.run(
                    [self.bpftool, "btf", "dump", "file", str(BTF), "format", "c"],
                    stdout=out, stderr=subprocess.PIPE, text=True, timeout=COMPILE_TIMEOUT,
                    env=TOOL_ENVIRONMENT)
                if result.returncode != 0:
                    raise CompileError("vmlinux.h", "bpftool btf dump failed", result.stderr)
        return directory

    def _write(self, path, text):
        with _partial(path) as partial:
            partial.write_text(text)


def _missing(tool):
    return f"{tool} is not installed in {', '.join(TOOL_DIRECTORIES)} (or not root's)"


def _dependencies(path, copy):
    """The headers clang listed in the make rule at `path`, the copy left out."""
    with open(path) as f:
        return [d for d in _parse_dependencies(f.read()) if d != copy]


def _checked_headers(paths):
    """{path: sha256 of its content} for headers each only root can have
    written (trust.py): UntrustedError at the first that is not."""
    return {path: hashlib.sha256(read_trusted(path).content).hexdigest() for path in paths}


def _check_mentioned(output, source):
    """Listing the headers preprocesses them, and an error there quotes where it
    is: clang's words are shown only if every file they name is root's alone."""
    for path in dict.fromkeys(re.findall(r"^(?:In file included from )?([^:\n]+):\d+:",
                                         output, re.M)):
        if os.path.abspath(path) != source:
            with contextlib.suppress(FileNotFoundError):
                read_trusted(path)


def _object_key(source_key, headers):
    return _sha256(source_key, *(f"{path} {digest}" for path, digest in headers.items()))


@contextlib.contextmanager
def _partial(path):
    """A file of its own name to write, renamed to `path` when done: another
    daemon sharing the cache sees the whole file or none."""
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        yield Path(partial)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
