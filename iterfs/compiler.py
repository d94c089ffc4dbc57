"""Compiling a view's BPF C into an object, as the Makefile does, once per content.

    source.bpf.c  ->  clang -g -O2 -target bpf ...  ->  <cache>/objects/<key>/<name>.bpf.o

The key is a hash of everything the object depends on: the compiler's version,
the flags, the source, and every header it included (vmlinux.h, progs/*.h,
libbpf's, the source's neighbours), as clang itself lists them (-MD). A second
compile of the same content finds its object in the cache and runs nothing:

    <cache>/vmlinux/<BTF sha256>/vmlinux.h   generated from the running kernel's BTF
    <cache>/deps/<source key>                the headers the last compile included
    <cache>/objects/<key>/<name>.bpf.o       the object (named so libbpf names
                                             its maps after the view)
"""

import contextlib
import errno
import hashlib
import logging
import os
import platform
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


def _parse_dependencies(text):
    """The files of a make rule written by clang -MD: `target: dep dep \\ ...`."""
    _, _, rest = text.replace("\\\n", " ").partition(": ")
    paths, current, escaped = [], "", False
    for char in rest:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                paths.append(current)
            current = ""
        else:
            current += char
    if current:
        paths.append(current)
    return [os.path.abspath(path) for path in paths]


class Compiler:
    """Compiles with clang against the running kernel's vmlinux.h and the
    headers of progs/ (`headers`), keeping what it built in `cache`."""

    def __init__(self, headers, cache):
        self.headers = Path(headers)
        self.cache = Path(cache)

    def compile(self, source):
        """The object built from `source` (a path); CompileError if clang fails,
        PermissionError if the cache or a header included is not to be trusted."""
        source = os.path.abspath(source)
        self._prepare_cache()
        flags = bpf_flags([self._vmlinux_directory(), self.headers])
        source_key = _sha256(self._clang_version(), *flags, source,
                             read_trusted(source).content)
        name = os.path.basename(source)[:-len(SOURCE_SUFFIX)]
        cached = self._cached(source_key, name)
        if cached is not None:
            log.debug("%s: compiled before: %s", source, cached)
            return cached
        return self._compile(source, flags, source_key, name)

    def _cached(self, source_key, name):
        deps = self.cache / "deps" / source_key
        try:
            dependencies = deps.read_text().splitlines()
            key = self._object_key(source_key, dependencies)
        except FileNotFoundError:
            return None      # never compiled, or a header is gone
        path = self.cache / "objects" / key / f"{name}.bpf.o"
        return path if path.exists() else None

    def _object_key(self, source_key, dependencies):
        for dependency in dependencies:
            check_trusted_file(dependency)
        return _sha256(source_key, *(f"{d} {_file_sha256(d)}" for d in dependencies))

    def _compile(self, source, flags, source_key, name):
        with tempfile.TemporaryDirectory(dir=self.cache, prefix="compile-") as work:
            output = os.path.join(work, f"{name}.bpf.o")
            deps = os.path.join(work, "deps")
            command = ["clang", *flags, "-MD", "-MF", deps, "-c", source, "-o", output]
            log.info("compiling %s", source)
            result = self._run(source, command)
            if result.returncode != 0:
                raise CompileError(source, f"clang exited with status {result.returncode}",
                                   result.stderr)
            if result.stderr.strip():
                log.warning("%s: clang warned: %s", source, result.stderr.strip().splitlines()[0])
            with open(deps) as f:
                dependencies = [d for d in _parse_dependencies(f.read()) if d != source]
            key = self._object_key(source_key, dependencies)
            directory = self.cache / "objects" / key
            directory.mkdir(exist_ok=True)
            os.chmod(output, 0o644)
            os.replace(output, directory / f"{name}.bpf.o")
            self._write(self.cache / "deps" / source_key, "".join(d + "\n" for d in dependencies))
        return directory / f"{name}.bpf.o"

    def _run(self, source, command):
        try:
            return subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, errors="replace", timeout=COMPILE_TIMEOUT)
        except FileNotFoundError:
            raise CompileError(source, f"{command[0]} is not installed") from None
        except subprocess.TimeoutExpired:
            raise CompileError(source, f"clang took more than {COMPILE_TIMEOUT} s") from None

    def _clang_version(self):
        try:
            return subprocess.run(["clang", "--version"], capture_output=True, text=True,
                                  timeout=60).stdout
        except FileNotFoundError:
            raise CompileError("programs", "clang is not installed") from None

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
            with _partial(directory / "vmlinux.h") as partial, open(partial, "w") as out:
                try:
                    result = subprocess.run(
                        ["bpftool", "btf", "dump", "file", str(BTF), "format", "c"],
                        stdout=out, stderr=subprocess.PIPE, text=True, timeout=COMPILE_TIMEOUT)
                except FileNotFoundError:
                    raise CompileError("vmlinux.h", "bpftool is not installed") from None
                if result.returncode != 0:
                    raise CompileError("vmlinux.h", "bpftool btf dump failed", result.stderr)
        return directory

    def _write(self, path, text):
        with _partial(path) as partial:
            partial.write_text(text)


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
