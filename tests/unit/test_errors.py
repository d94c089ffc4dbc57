"""The one path from an OSError to the caller's errno (iterfs.fs.fuse_error)."""

import errno
import logging

import pytest


@pytest.fixture
def fs():
    try:
        from iterfs import fs
    except (ImportError, OSError) as error:
        pytest.skip(f"iterfs.fs needs pyfuse3 and libbpf: {error}")
    return fs


@pytest.mark.parametrize("code", [errno.ENOENT, errno.ESRCH])
def test_a_process_or_object_gone_is_enoent_and_logs_nothing(fs, caplog, code):
    with caplog.at_level(logging.DEBUG, logger="iterfs.fs"):
        answer = fs.fuse_error(ProcessLookupError(code, "gone"), "task/42", "open")
    assert answer.errno == errno.ENOENT
    assert caplog.records == []


def test_any_other_errno_is_passed_on_with_one_line(fs, caplog):
    with caplog.at_level(logging.DEBUG, logger="iterfs.fs"):
        answer = fs.fuse_error(OSError(errno.EAGAIN, "read iterator failing: ..."),
                               "failing", "read")
    assert answer.errno == errno.EAGAIN
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "failing: read: Resource temporarily unavailable (EAGAIN)")]


def test_no_errno_is_eio(fs, caplog):
    assert fs.fuse_error(OSError("no errno"), "lookup").errno == errno.EIO
