"""What a name in the mount, a program file or /proc's options stands for.
iterfs.processes and iterfs.fs load libbpf (and fs pyfuse3) when imported:
where they are not installed, their tests are skipped, saying so."""

import types

import pytest

from iterfs.directories import VIEW_NAME, view_name

try:
    from iterfs import processes
    WITHOUT_LIBBPF = ""
except OSError as error:        # libbpf.so.1 is not installed
    processes = None
    WITHOUT_LIBBPF = f"iterfs.processes needs libbpf: {error}"

needs_libbpf = pytest.mark.skipif(processes is None, reason=WITHOUT_LIBBPF)


PID_MAX = 4_194_304


@needs_libbpf
@pytest.mark.parametrize("name, pid", [
    (b"1", 1), (b"42", 42), (b"4194304", 4_194_304), (b"9", 9)])
def test_pid_names(name, pid):
    assert processes.parse_pid(name, PID_MAX) == pid


@needs_libbpf
@pytest.mark.parametrize("name", [
    b"0", b"042", b"+1", b"-1", b" 1", b"1 ", b"1\n", b"1_0", "\u0663".encode(),
    b"4194305", b"99999999999", b"", b"self", b"0x10", b"1.0"])
def test_what_names_no_pid(name):
    """Only what /proc would name a process: canonical ASCII decimal, in range."""
    assert processes.parse_pid(name, PID_MAX) is None


@needs_libbpf
def test_map_ids_go_up_to_the_maximum_given():
    assert processes.parse_id(b"2147483647", 0x7FFF_FFFF) == 0x7FFF_FFFF
    assert processes.parse_id(b"2147483648", 0x7FFF_FFFF) is None


@needs_libbpf
@pytest.mark.parametrize("options, level, gid", [
    ("rw,nosuid,nodev,noexec,relatime", 0, None),
    ("rw,hidepid=2", 2, None),
    ("rw,hidepid=invisible,gid=27", 2, 27),
    ("rw,hidepid=ptraceable", 4, None),
    ("rw,hidepid=noaccess", 1, None),
    ("rw,hidepid=off", 0, None),
])
def test_hidepid_as_proc_gives_it(options, level, gid):
    hidepid = processes.HidePid.parse(options)
    assert (hidepid.level, hidepid.gid) == (level, gid)


@needs_libbpf
def test_hidepid_gid_exempts_its_members_but_at_ptraceable():
    assert processes.HidePid(processes.INVISIBLE, 27).exempts({27})
    assert not processes.HidePid(processes.INVISIBLE, 27).exempts({28})
    assert not processes.HidePid(processes.NOT_PTRACEABLE, 27).exempts({27})


@needs_libbpf
def test_proc_hidepid_takes_the_last_proc_mounted_at_proc(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
        "30 22 0:26 / /proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw\n"
        "40 1 0:21 / /proc rw shared:12 - proc proc rw,hidepid=invisible,gid=5\n")
    assert processes.proc_hidepid(str(mountinfo)) == processes.HidePid(2, 5)


@pytest.mark.parametrize("file_name, view", [
    ("tcp.bpf.c", "tcp"), ("tcp.bpf.o", "tcp"), ("my.view.bpf.o", "my.view"),
    ("tcp.c", None), ("tcp.o", None), (".bpf.c", None), ("tcp.bpf.c.orig", None)])
def test_which_files_are_programs(file_name, view):
    assert view_name(file_name) == view


@pytest.mark.parametrize("name, valid", [
    ("tcp", True), ("ipv6_route", True), ("a.b-c", True), ("_x", True),
    (".status", False), ("-rf", False), ("a b", False), ("a/b", False),
    ("x" * 255, True), ("x" * 256, False), ("", False), ("caf\u00e9", False)])
def test_view_names(name, valid):
    assert bool(VIEW_NAME.match(name)) == valid


def import_fs():
    try:
        from iterfs import fs
    except (ImportError, OSError) as error:
        pytest.skip(f"iterfs.fs needs pyfuse3 and libbpf: {error}")
    return fs


@pytest.fixture
def filesystem():
    """An IterFS over two views, a process directory (1) and a map directory
    (2): enough to name their entries, no mount."""
    fs = import_fs()
    views = {1: types.SimpleNamespace(per_map=False), 2: types.SimpleNamespace(per_map=True)}
    filesystem = fs.IterFS(views)
    try:
        yield fs, filesystem
    finally:
        filesystem._pumps.shutdown()


@pytest.mark.parametrize("name, key", [
    (b"self", "SELF"), (b"all", "ALL"), (b"1", 1), (b"4194304", 4_194_304),
    (b"01", None), (b"Self", None), (b"self ", None), (b"4194305", None)])
def test_names_in_a_process_directory(filesystem, name, key):
    fs, filesystem = filesystem
    filesystem._pid_max = 4_194_304
    key = getattr(fs, key) if isinstance(key, str) else key
    assert filesystem._entry_key(1, name) == key


@pytest.mark.parametrize("name, key", [
    (b"7", 7), (b"2147483647", 2_147_483_647), (b"2147483648", None),
    (b"self", None), (b"all", None), (b"07", None)])
def test_names_in_a_map_directory(filesystem, name, key):
    assert filesystem[1]._entry_key(2, name) == key


def test_named_keys_are_no_pid_nor_map_id():
    fs = import_fs()
    assert fs.NAMED == {b"self": fs.SELF, b"all": fs.ALL}
    assert min(fs.SELF, fs.ALL) > max(fs.MAX_MAP_ID, 4_194_304)
    assert {fs.KEY_NAMES[key].encode() for key in (fs.SELF, fs.ALL)} == set(fs.NAMED)
