"""ksym: /proc/kallsyms reproduced by a BPF program, compared byte for byte.

/proc/kallsyms is read as root (the tests run as root), so it shows the real
addresses; the iterator decides the same way from the daemon's credentials.

Ours is read between two reads of /proc, again until the three are equal byte
for byte. The one tolerance, used only when that does not happen: the symbols
of BPF programs (and their trampolines and dispatchers), which kallsyms lists
under the pseudo-module [bpf] and which come and go whenever any process loads
or unloads a program. One loaded and unloaded between the two reads of /proc
may be in ours only; and kallsyms is walked by position, /proc's walk as well
as ours, so a program unloaded during the walk moves the next ones back one
position and one of them is not shown. So the [bpf] lines may differ, but only
they: every other line (core and module symbols, ftrace and kprobe trampolines)
must be identical and in its place, and the [bpf] lines must be [bpf] lines,
each once, in one block where /proc has it.
"""

import re

import pytest

from conftest import needs_view, read_in_chunks

pytestmark = needs_view('ksym')

KALLSYMS = "/proc/kallsyms"
BPF = "\t[bpf]"
BPF_LINE = re.compile(r"[0-9a-f]{16} t bpf_\S+\t\[bpf\]")
ATTEMPTS = 10


def read_whole(path):
    with open(path) as f:
        return f.read()


def without_bpf(lines):
    return [line for line in lines if not line.endswith(BPF)]


def bpf_block_start(lines):
    return next(i for i, line in enumerate(lines) if line.endswith(BPF))


def assert_same_but_bpf_churn(before, ours, after):
    """`ours` read between `before` and `after` (texts of /proc/kallsyms)."""
    assert ours.endswith("\n")
    before, ours, after = before.splitlines(), ours.splitlines(), after.splitlines()
    assert without_bpf(ours) == without_bpf(before) == without_bpf(after)
    ours_bpf = [line for line in ours if line.endswith(BPF)]
    assert ours_bpf, "no [bpf] line, though the daemon holds programs"
    for line in ours_bpf:
        assert BPF_LINE.fullmatch(line), line
    # Programs are added at the end of the kernel's list: a walk by position
    # can skip one when another is removed, never show one twice.
    assert len(set(ours_bpf)) == len(ours_bpf), "a [bpf] line twice"
    start = bpf_block_start(ours)
    assert ours[start:start + len(ours_bpf)] == ours_bpf, "[bpf] lines not in one block"
    assert start == bpf_block_start(before)
    # Programs there all along (the daemon's own) are shown as /proc shows them.
    assert set(ours_bpf) & set(before) & set(after)


def compare(mount, read=read_whole):
    """Reads /proc, ours, /proc until the three are equal, byte for byte;
    failing that (programs loaded or unloaded all along), compares the last
    three with the tolerance for [bpf] lines. Returns our text."""
    for _ in range(ATTEMPTS):
        before = read_whole(KALLSYMS)
        ours = read(mount.mountpoint / "ksym")
        after = read_whole(KALLSYMS)
        if before == ours == after:
            return ours
    assert_same_but_bpf_churn(before, ours, after)
    return ours


@pytest.mark.kernel
def test_same_bytes_as_proc(mount):
    ours = compare(mount)
    lines = ours.splitlines()
    assert len(lines) > 10000
    # Real addresses (the reader is root), 16 digits as %px prints them.
    assert all(len(line.split(" ", 1)[0]) == 16 for line in lines)
    assert any(not line.startswith("0000000000000000") for line in lines)
    # The daemon's own programs are there, under [bpf], so the tolerance above
    # does not hide a view that never shows BPF symbols.
    assert any(line.endswith("_ksym" + BPF) for line in lines)


@pytest.mark.parametrize("size", [333, 4096])
def test_small_reads_give_the_same_bytes(mount, size):
    ours = compare(mount, read=lambda path: read_in_chunks(path, size))
    assert len(ours) > 1 << 20


def test_every_symbol_once(mount):
    """The iterator's final call carries the last symbol's state again: it must
    not be printed a second time, nor any symbol the kernel shows twice after a
    full buffer."""
    ours = read_whole(mount.mountpoint / "ksym").splitlines()
    proc = read_whole(KALLSYMS).splitlines()
    assert without_bpf(ours)[-1] == without_bpf(proc)[-1]
    assert len(without_bpf(ours)) == len(without_bpf(proc))
    assert ours[-1].split()[2] != ours[-2].split()[2]


def test_tolerance_is_for_bpf_lines_only(mount):
    """The comparison above accepts [bpf] lines coming and going, and nothing
    else. (The mount is there for its programs' [bpf] lines.)"""
    proc = read_whole(KALLSYMS)
    lines = proc.splitlines(keepends=True)
    start = bpf_block_start([line.rstrip("\n") for line in lines])
    new = "ffffffffc0000000 t bpf_prog_0123456789abcdef_new\t[bpf]\n"
    loaded = "".join(lines[:start] + [new] + lines[start:])
    assert_same_but_bpf_churn(proc, proc, loaded)
    assert_same_but_bpf_churn(proc, loaded, proc)           # loaded and unloaded meanwhile
    assert_same_but_bpf_churn(loaded, proc, loaded)         # skipped by a walk by position
    changed = proc.replace(lines[0], "0" * 16 + lines[0][16:], 1)
    with pytest.raises(AssertionError):
        assert_same_but_bpf_churn(proc, changed, loaded)    # a core symbol's address
    with pytest.raises(AssertionError):
        assert_same_but_bpf_churn(proc, new + proc, proc)   # a [bpf] line out of place
    with pytest.raises(AssertionError):
        assert_same_but_bpf_churn(proc, "".join(lines[:start] + [new, new] + lines[start:]),
                                  loaded)                   # one twice
    with pytest.raises(AssertionError):
        assert_same_but_bpf_churn(proc, "".join(lines[:start] + [new.replace(" t ", " T ")]
                                               + lines[start:]), loaded)    # not as kallsyms
