"""ViewTable.apply (the numbers views keep across reloads) and find_programs
(which file becomes which view), without a kernel: views found are stand-ins."""

import os

import pytest

from iterfs import directories
from iterfs.directories import ProgramDirectory, find_programs

try:
    from iterfs import views
    WITHOUT_LIBBPF = ""
except OSError as error:        # views loads libbpf.so.1 (bpf.py)
    views = None
    WITHOUT_LIBBPF = f"iterfs.views needs libbpf: {error}"

needs_libbpf = pytest.mark.skipif(views is None, reason=WITHOUT_LIBBPF)


class View:
    """What apply() asks of a view: its name, and close()."""

    def __init__(self, name):
        self.name = name
        self.closes = 0

    def close(self):
        self.closes += 1


def scan(*found, entries=None):
    return views.Scan(entries or [views.Entry(view.name, f"/p/{view.name}.bpf.o")
                                  for view in found], {view.name: view for view in found})


def numbers(table):
    return {table[number].name: number for number in table}


@needs_libbpf
def test_views_keep_their_numbers_until_their_program_changes():
    table = views.ViewTable([], compiler=None)
    tcp, udp, unix = View("tcp"), View("udp"), View("unix")
    assert table.apply(scan(tcp, udp)) == ["tcp", "udp"]
    first = numbers(table)
    assert first[".status"] == views.STATUS_NUMBER
    assert first["metrics"] == views.METRICS_NUMBER          # iterfs's own, as .status
    assert list(first) == [".status", "metrics", "tcp", "udp"]   # iterated by name
    assert table.number(b"tcp") == first["tcp"] and table.number(b"nope") is None

    # The same programs: nothing changes, nothing is closed.
    assert table.apply(scan(tcp, udp)) == []
    assert numbers(table) == first and tcp.closes == udp.closes == 0

    # udp's program changed, unix is new: new numbers for both, the old udp closed.
    new_udp = View("udp")
    assert table.apply(scan(tcp, new_udp, unix)) == ["udp", "unix"]
    second = numbers(table)
    assert second["tcp"] == first["tcp"]
    assert second["udp"] not in first.values() and second["unix"] not in first.values()
    assert udp.closes == 1 and new_udp.closes == 0

    # tcp gone, then back: closed once, and never its old number again.
    assert table.apply(scan(new_udp, unix)) == ["tcp"]
    assert tcp.closes == 1 and table.number(b"tcp") is None
    back = View("tcp")
    assert table.apply(scan(back, new_udp, unix)) == ["tcp"]
    assert table.number(b"tcp") not in (first["tcp"], second["udp"], second["unix"])
    assert len(set(numbers(table).values())) == 5          # .status and metrics too

    table.close()
    assert back.closes == new_udp.closes == unix.closes == 1
    assert list(numbers(table)) == [".status", "metrics"]     # what iterfs serves itself stays


@needs_libbpf
def test_status_says_what_became_of_each_file():
    table = views.ViewTable([], compiler=None)
    tcp = View("tcp")
    broken = views.Entry("broken", "/p/broken.bpf.c")
    broken.state, broken.reason, broken.details = "skipped", "compile failed", ["x.c:1: error"]
    serving = views.Entry("tcp", "/p/tcp.bpf.o", target="tcp")
    table.apply(scan(tcp, entries=[serving, broken]))
    text = table[views.STATUS_NUMBER].attach(stuck={"tcp": (2, 7.4)}).open().read().decode()
    assert text.splitlines() == [
        "view   state   target source",
        "broken skipped -      /p/broken.bpf.c",
        "  reason: compile failed",
        "  | x.c:1: error",
        "tcp    serving tcp    /p/tcp.bpf.o",
        "  stuck: 2 walks waiting on the kernel, the longest for 7 s",
    ]


# -- find_programs: which file becomes which view ------------------------------


@pytest.fixture
def trusted(monkeypatch):
    """Every directory trusted: what trust.py decides has tests of its own."""
    monkeypatch.setattr(directories, "check_trusted", lambda path: None)


def program_directory(path, *files, **options):
    path.mkdir()
    for name in files:
        (path / name).write_bytes(b"")
    return ProgramDirectory(str(path), **options)


def found(candidates):
    return [(c.name, os.path.basename(os.path.dirname(c.path)) + "/" + os.path.basename(c.path),
             c.refused) for c in candidates]


def test_the_first_file_of_a_name_takes_it(tmp_path, trusted):
    built_in = program_directory(tmp_path / "builtin", "tcp.bpf.o", "udp.bpf.o",
                                 built_in=True)
    drop_ins = program_directory(tmp_path / "dropins", "tcp.bpf.c", "mine.bpf.o",
                                 "mine.bpf.c", "notes.txt")
    assert found(find_programs([built_in, drop_ins])) == [
        ("tcp", "builtin/tcp.bpf.o", None),
        ("udp", "builtin/udp.bpf.o", None),
        ("mine", "dropins/mine.bpf.c", None),       # a source before its object
        ("mine", "dropins/mine.bpf.o", "name taken by " + str(tmp_path / "dropins/mine.bpf.c")),
        ("tcp", "dropins/tcp.bpf.c", "name taken by " + str(tmp_path / "builtin/tcp.bpf.o")),
    ]
    assert [c.built_in for c in find_programs([built_in, drop_ins])] == \
        [True, True, False, False, False]


def test_names_no_view_may_have_are_refused(tmp_path, trusted):
    directory = program_directory(tmp_path / "p", "-rf.bpf.o", "a b.bpf.c", "ok.bpf.o")
    refused = {name: why for name, _, why in found(find_programs([directory]))}
    assert refused["ok"] is None
    assert refused["-rf"].startswith("a view's name is") and refused["a b"] == refused["-rf"]


def test_an_absent_directory_has_no_programs(tmp_path, trusted):
    assert find_programs([ProgramDirectory(str(tmp_path / "none"), optional=True)]) == []


def test_a_directory_others_may_write_is_refused(tmp_path):
    """Whoever runs the test: a directory writable by all is no one's to trust."""
    directory = program_directory(tmp_path / "open", "tcp.bpf.o")
    os.chmod(directory.path, 0o777)
    [candidate] = find_programs([directory])
    assert candidate.refused.startswith("directory refused")
