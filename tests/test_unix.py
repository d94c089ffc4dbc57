"""unix: /proc/net/unix reproduced by a BPF program, compared byte for byte."""

import ctypes
import errno
import os
import re
import secrets
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import OBJECTS, OpenSockets, ROOT, needs_view, read_in_chunks, read_quiet

pytestmark = needs_view('unix')
from iterfs import bpf

PROC = "/proc/net/unix"
OBJECT = OBJECTS / "unix.bpf.o"
HEADER = "Num       RefCount Protocol Flags    Type St Inode Path"
ROW = re.compile(r"(?P<num>[0-9a-f]{16}): (?P<refcount>[0-9A-F]{8}) (?P<protocol>[0-9A-F]{8}) "
                 r"(?P<flags>[0-9A-F]{8}) (?P<type>[0-9A-F]{4}) (?P<st>[0-9A-F]{2}) "
                 r"(?P<inode> *\d+)(?: (?P<path>.*))?")
SO_ACCEPTCON = "00010000"
SS_UNCONNECTED, SS_CONNECTING, SS_CONNECTED = "01", "02", "03"
STREAM, DGRAM, SEQPACKET = "0001", "0002", "0005"
UNIX_PATH_MAX = 108
READ_SIZES = (333, 4096, 1 << 20)
ITERATOR_BUFFER = 32768         # what one read() of a BPF iterator returns at most

libc = ctypes.CDLL(None, use_errno=True)


def parse(lines):
    """{inode, or the socket's pointer where the inode is 0: row fields}."""
    assert lines[0] == HEADER
    rows = {}
    for line in lines[1:]:
        row = ROW.fullmatch(line)
        assert row, repr(line)
        fields = row.groupdict()
        fields["inode"] = int(fields["inode"])
        rows[fields["inode"] or fields["num"]] = fields
    return rows


def inode(sock):
    return os.fstat(sock.fileno()).st_ino


class Sockets(OpenSockets):
    """AF_UNIX sockets and the files of those bound to paths, all gone at exit."""

    def __init__(self, directory):
        super().__init__()
        self.directory = directory
        self.token = secrets.token_hex(4).encode()      # names unique to this test

    def new(self, kind=socket.SOCK_STREAM):
        sock = socket.socket(socket.AF_UNIX, kind)
        self.all.append(sock)
        return sock

    def pair(self, kind=socket.SOCK_STREAM):
        pair = socket.socketpair(socket.AF_UNIX, kind)
        self.all.extend(pair)
        return pair

    def path(self, name, length=None):
        path = os.fsencode(self.directory) + b"/" + self.token + name
        return path.ljust(length, b"p") if length else path

    def bind(self, sock, name):
        """bind() with exactly `name` as sun_path: Python refuses a 108-byte path."""
        address = struct.pack("H", socket.AF_UNIX) + name
        if libc.bind(sock.fileno(), address, len(address)) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), name)

    def listener(self, name, kind=socket.SOCK_STREAM):
        sock = self.new(kind)
        sock.bind(name)
        sock.listen(64)
        return sock

    def connected(self, listener):
        """A connection accepted by `listener`: (client, server)."""
        client = self.new(listener.type)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
        self.all.append(server)
        return client, server

    def close(self):
        super().close()
        for entry in os.scandir(self.directory):
            if stat.S_ISSOCK(entry.stat(follow_symlinks=False).st_mode):
                os.unlink(entry.path)


@pytest.fixture
def sockets(tmp_path):
    with Sockets(tmp_path) as s:
        yield s


def every_kind(sockets):
    """Sockets of every type, state and kind of name; {what: socket or name}."""
    made = {}
    for kind, name in ((socket.SOCK_STREAM, "stream"), (socket.SOCK_DGRAM, "dgram"),
                       (socket.SOCK_SEQPACKET, "seqpacket")):
        made[name + " pair"] = sockets.pair(kind)

    path = sockets.path(b"listener")
    listener = made["path listener"] = sockets.listener(path)
    made["connected client"], made["accepted"] = sockets.connected(listener)
    made["embryo client"] = sockets.new()
    made["embryo client"].connect(path)            # never accepted: the server side
    made["listener path"] = path                   # has no socket and no inode yet

    abstract = b"\0" + sockets.token + b"-seqpacket"
    listener = made["abstract listener"] = sockets.listener(abstract, socket.SOCK_SEQPACKET)
    made["abstract client"], made["abstract accepted"] = sockets.connected(listener)

    made["embedded NULs"] = sockets.new(socket.SOCK_DGRAM)
    made["embedded NULs"].bind(b"\0" + sockets.token + b"\0a\0\0b")
    made["longest abstract"] = sockets.new(socket.SOCK_DGRAM)
    made["longest abstract"].bind(
        (b"\0" + sockets.token + b"-longest").ljust(UNIX_PATH_MAX - 3, b"x") + b"\0\0\0")
    made["longest path"] = sockets.new(socket.SOCK_DGRAM)
    sockets.bind(made["longest path"], sockets.path(b"-longest", UNIX_PATH_MAX))
    made["path with space"] = sockets.new(socket.SOCK_DGRAM)
    made["path with space"].bind(sockets.path(" with space é".encode()))
    made["only a NUL"] = sockets.new(socket.SOCK_DGRAM)
    try:
        made["only a NUL"].bind(b"\0")
    except OSError as error:            # someone else on the machine has it
        assert error.errno == errno.EADDRINUSE
        del made["only a NUL"]
    made["autobound"] = sockets.new(socket.SOCK_DGRAM)
    made["autobound"].bind(b"")
    made["unnamed"] = sockets.new(socket.SOCK_DGRAM)
    made["dgram client"] = sockets.new(socket.SOCK_DGRAM)
    made["dgram client"].connect(made["embedded NULs"].getsockname())
    return made


def read_unix(mount):
    return read_quiet(PROC, mount.mountpoint / "unix")


def quiet(read_ours, attempts=20):
    """(proc, ours) as bytes, read when /proc did not change around our read."""
    for _ in range(attempts):
        before = Path(PROC).read_bytes()
        ours = read_ours()
        if Path(PROC).read_bytes() == before:
            return before, ours
        time.sleep(0.05)
    pytest.fail(f"{PROC} kept changing")


def read_iterator(link, size):
    """The iterator fd itself read in `size` bytes, with no FUSE in between."""
    with link.open() as stream:
        chunks = []
        while chunk := os.read(stream.fileno(), size):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def iterator_link():
    with bpf.load(OBJECT) as obj:
        with obj.program("unix").attach_iterator() as link:
            yield link


@pytest.mark.kernel
def test_same_file_as_proc(mount, sockets):
    every_kind(sockets)
    proc, ours = read_unix(mount)
    assert ours[0] == HEADER == proc[0]
    assert ours == proc


@pytest.mark.kernel
def test_rows_match_by_inode(mount, sockets):
    made = every_kind(sockets)
    proc, ours = read_unix(mount)
    rows, proc_rows = parse(ours), parse(proc)
    assert rows == proc_rows

    def row(name, index=None):
        sock = made[name] if index is None else made[name][index]
        return rows[inode(sock)]

    for name, kind in (("stream pair", STREAM), ("dgram pair", DGRAM),
                       ("seqpacket pair", SEQPACKET)):
        for index in (0, 1):
            assert row(name, index)["type"] == kind
            assert row(name, index)["st"] == SS_CONNECTED
            assert row(name, index)["path"] is None
    path = made["listener path"].decode()
    assert row("path listener")["flags"] == SO_ACCEPTCON
    assert row("path listener")["st"] == SS_UNCONNECTED
    assert row("path listener")["path"] == path
    assert row("accepted")["path"] == path          # an accepted socket has its listener's name
    assert row("accepted")["flags"] == row("connected client")["flags"] == "00000000"
    assert row("connected client")["path"] is None
    embryos = [r for r in rows.values() if r["path"] == path and r["inode"] == 0]
    assert [(r["st"], r["type"]) for r in embryos] == [(SS_CONNECTING, STREAM)]

    token = sockets.token.decode()
    assert row("abstract listener")["type"] == SEQPACKET
    assert row("abstract listener")["flags"] == SO_ACCEPTCON
    assert row("abstract listener")["path"] == f"@{token}-seqpacket"
    assert row("embedded NULs")["path"] == f"@{token}@a@@b"
    assert row("longest abstract")["path"].startswith(f"@{token}-longest")
    assert row("longest abstract")["path"].endswith("x@@@")
    assert len(row("longest abstract")["path"]) == UNIX_PATH_MAX
    assert row("longest path")["path"] == sockets.path(b"-longest", UNIX_PATH_MAX).decode()
    assert len(row("longest path")["path"]) == UNIX_PATH_MAX
    assert row("path with space")["path"].endswith(" with space é")
    if "only a NUL" in made:
        assert row("only a NUL")["path"] == "@"
    assert re.fullmatch(r"@[0-9a-f]{5}", row("autobound")["path"])
    assert row("unnamed")["path"] is None
    assert row("dgram client")["st"] == SS_CONNECTED


def test_unnamed_sockets_end_at_the_inode(mount, sockets):
    a, b = sockets.pair()
    proc, ours = read_unix(mount)
    lines = [line for line in ours if line.endswith(f" {inode(a)}")]
    assert len(lines) == 1, lines
    assert lines[0] in proc


def test_names_are_printed_raw_as_the_kernel_does(mount, sockets):
    """Only NUL becomes '@': a newline, a tab or a byte that is not UTF-8 goes out as is."""
    odd = b"\nnew line\ttab \\ \xff"
    sockets.new(socket.SOCK_DGRAM).bind(b"\0" + sockets.token + odd + b"\0")
    sockets.new(socket.SOCK_DGRAM).bind(sockets.path(odd))
    proc, ours = quiet(lambda: (mount.mountpoint / "unix").read_bytes())
    assert ours == proc
    assert b" @" + sockets.token + odd + b"@\n" in ours
    assert b" " + sockets.path(odd) + b"\n" in ours


def test_empty_table_still_has_header():
    """In a network namespace of its own, with no unix socket, as /proc there."""
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
              "from iterfs import bpf\n"
              f"with bpf.load({str(OBJECT)!r}) as obj:\n"
              "    with obj.program('unix').attach_iterator() as link:\n"
              "        with link.open() as stream:\n"
              "            ours = stream.read()\n"
              f"sys.stdout.buffer.write(open({PROC!r}, 'rb').read() + b'--\\n' + ours)\n")
    out = subprocess.run(["unshare", "--net", sys.executable, "-c", script],
                         check=True, capture_output=True, timeout=60).stdout
    proc, ours = out.split(b"--\n")
    assert proc == ours == HEADER.encode() + b"\n"


def many(sockets, pairs=1500, named=1000):
    for index in range(pairs):
        sockets.pair((socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET)[index % 3])
    for index in range(named):
        name = b"-many-%05d" % index
        if index % 2:
            sockets.new(socket.SOCK_DGRAM).bind((b"\0" + sockets.token + name).ljust(100, b"a"))
        else:
            sockets.new(socket.SOCK_DGRAM).bind(sockets.path(name))


def test_thousands_of_sockets_stream_in_any_read_size(mount, sockets):
    many(sockets)
    for size in READ_SIZES:
        proc, ours = quiet(lambda: read_in_chunks(mount.mountpoint / "unix", size).encode())
        assert len(proc.splitlines()) > 4000
        assert ours == proc, f"read size {size}"


def test_iterator_read_in_small_pieces_loses_no_socket(iterator_link, sockets):
    """The kernel drops the rest of a hash bucket wherever one read() of the
    iterator ends; the program must end reads only where that loses nothing."""
    many(sockets)
    for size in READ_SIZES + (1, 57):
        proc, ours = quiet(lambda: read_iterator(iterator_link, size))
        assert ours == proc, f"read size {size}"


def same_bucket_names(sockets, count):
    """Abstract names the kernel hashes into one bucket: it hashes a name by the
    one's complement sum of its 16-bit words, which swapping two words keeps."""
    words = [bytes((0x41 + i % 26, 0x61 + i // 26)) for i in range(49)]
    names = []
    for i in range(len(words)):
        for j in range(i + 1, len(words)):
            swapped = list(words)
            swapped[i], swapped[j] = swapped[j], swapped[i]
            names.append(b"\0i" + sockets.token + b"".join(swapped))
            if len(names) == count:
                return names
    raise ValueError(count)


def crowded_bucket(sockets, count):
    prefix = "@i" + sockets.token.decode()
    for name in same_bucket_names(sockets, count):
        assert len(name) == UNIX_PATH_MAX
        sockets.new(socket.SOCK_DGRAM).bind(name)
    lines = Path(PROC).read_text().splitlines()
    ours = [index for index, line in enumerate(lines) if prefix in line]
    # /proc walks the table bucket by bucket: one bucket's sockets are adjacent.
    assert ours == list(range(ours[0], ours[0] + count)), "not one bucket"
    return sum(len(lines[index]) + 1 for index in ours)


def test_one_bucket_of_most_of_a_read(mount, iterator_link, sockets):
    assert ITERATOR_BUFFER * 3 // 4 < crowded_bucket(sockets, 150) < ITERATOR_BUFFER
    for size in READ_SIZES:
        proc, ours = quiet(lambda: read_iterator(iterator_link, size))
        assert ours == proc, f"iterator read size {size}"
        proc, ours = quiet(lambda: read_in_chunks(mount.mountpoint / "unix", size).encode())
        assert ours == proc, f"read size {size}"


def test_bucket_larger_than_a_read_fails_loudly(mount, sockets):
    """Documented limit: the kernel cannot hand a bucket's sockets over in two
    reads, so one whose lines exceed one read fails with E2BIG, never shortened."""
    assert crowded_bucket(sockets, 300) > ITERATOR_BUFFER
    with pytest.raises(OSError) as raised:
        read_in_chunks(mount.mountpoint / "unix", 1 << 20)
    assert raised.value.errno == errno.E2BIG
