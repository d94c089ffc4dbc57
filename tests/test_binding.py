"""The libbpf binding on its own, without FUSE, against the real kernel."""

import errno
import os
from pathlib import Path

import pytest

from iterfs import bpf

from conftest import OBJECTS, TEST_OBJECTS, escape_newlines, parse_task_file, process_fds


BPF_PROG_TYPE_TRACING = 26     # include/uapi/linux/bpf.h


def own_fds():
    return set(os.listdir("/proc/self/fd"))


def test_programs_found_by_name_and_by_section():
    with bpf.load(OBJECTS / "tcp6.bpf.o") as obj:
        program = obj.program("tcp6")
        assert program.section == "iter/tcp"
        assert program.iterator_target == "tcp"
        # The kernel holds it: the fd is a BPF program's, of the tracing type.
        info = dict(line.split(":\t", 1) for line in
                    Path(f"/proc/self/fdinfo/{program.fd}").read_text().splitlines()
                    if ":\t" in line)
        assert int(info["prog_id"]) > 0
        assert int(info["prog_type"]) == BPF_PROG_TYPE_TRACING
        assert obj.program(section="iter/tcp") is program
        with pytest.raises(bpf.BpfError) as missing:
            obj.program("no_such_program")
        assert missing.value.errno == errno.ENOENT


def test_task_iterator_limited_to_one_process(holder):
    with bpf.load(OBJECTS / "task_file.bpf.o") as obj:
        with obj.program("task_file").attach_iterator(pid=holder.pid) as link:
            with link.open() as stream:
                rows = parse_task_file(stream.read().decode())
    expected = {fd: escape_newlines(path) for fd, path in process_fds(holder.pid).items()}
    assert {row.fd: row.path for row in rows} == expected
    assert {(row.tgid, row.pid) for row in rows} == {(holder.pid, holder.pid)}


def test_every_open_of_a_link_walks_again(holder):
    with bpf.load(OBJECTS / "task_file.bpf.o") as obj:
        with obj.program("task_file").attach_iterator(pid=holder.pid) as link:
            with link.open() as first:
                whole = first.read()
            with link.open() as second:
                pieces = []
                while piece := second.read(7):
                    pieces.append(piece)
            with link.open() as third:
                filled = third.fill(len(whole) + 100)
                assert third.fill(10) == b""
    assert b"".join(pieces) == whole == filled
    assert whole.count(b"\n") == len(process_fds(holder.pid)) + 1


def test_streams_and_links_close_their_fds():
    before = own_fds()
    with bpf.load(OBJECTS / "tcp6.bpf.o") as obj:
        loaded = own_fds()
        for _ in range(50):
            with obj.program("tcp6").attach_iterator() as link, link.open() as stream:
                stream.read(1)
            assert link.closed and stream.closed
        assert own_fds() == loaded
        with pytest.raises(ValueError):
            stream.fileno()
    assert own_fds() == before


def test_a_closed_object_leaves_its_links_and_refuses_the_rest(holder):
    """libbpf frees an object's programs and maps when it is closed: using one
    then is EBADF, not a read of freed memory. A link attached before walks on,
    as the kernel's link holds the program."""
    obj = bpf.load(OBJECTS / "task_file.bpf.o")
    program, map_ = obj.program("task_file"), obj.maps[0]
    with program.attach_iterator(pid=holder.pid) as link:
        obj.close()
        assert obj.closed
        for use in (lambda: program.fd, lambda: program.attach_iterator(),
                    lambda: map_.fd, lambda: program.set_autoload(False)):
            with pytest.raises(bpf.BpfError) as refused:
                use()
            assert refused.value.errno == errno.EBADF
        with link.open() as stream:
            rows = parse_task_file(stream.read().decode())
    assert {row.fd for row in rows} == set(process_fds(holder.pid))


def test_verifier_rejection_carries_the_log():
    with pytest.raises(bpf.VerifierError) as rejected:
        bpf.load(TEST_OBJECTS / "verifier_reject.bpf.o")
    error = rejected.value
    assert isinstance(error, OSError)
    assert error.errno == errno.EACCES
    assert error.program == "verifier_reject"
    assert "invalid mem access" in error.log
    assert "verifier_reject" in str(error) and "invalid mem access" in str(error)


def test_missing_object_names_step_and_path(tmp_path):
    missing = tmp_path / "absent.bpf.o"
    with pytest.raises(bpf.BpfError) as failed:
        bpf.load(missing)
    assert failed.value.errno == errno.ENOENT
    assert "open BPF object" in str(failed.value) and str(missing) in str(failed.value)


def test_pid_and_tid_together_are_refused():
    with bpf.load(OBJECTS / "task_file.bpf.o") as obj:
        with pytest.raises(ValueError):
            obj.program("task_file").attach_iterator(pid=1, tid=1)

