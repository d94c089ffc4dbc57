"""trust.py on its own: how a path is resolved and what is refused on the way."""

import os
import tempfile
from pathlib import Path

import pytest

from iterfs import trust

NOBODY = 65534


@pytest.fixture
def top():
    """A directory of root's, mode 0755, under /tmp (root's, sticky)."""
    with tempfile.TemporaryDirectory(prefix="iterfs-trust-") as directory:
        os.chmod(directory, 0o755)
        yield Path(directory)


def write(path, text, mode=0o644):
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_content_is_read_from_the_file_checked(top):
    program = write(top / "a.bpf.c", "int a;\n")
    found = trust.read_trusted(program)
    assert (found.real_path, found.content) == (str(program), b"int a;\n")


def test_symlinks_are_followed_and_their_target_checked(top):
    (top / "sub").mkdir(mode=0o755)
    program = write(top / "sub" / "a.bpf.c", "int a;\n")
    (top / "link").symlink_to("sub/../sub/a.bpf.c")
    (top / "chain").symlink_to(top / "link")
    assert trust.read_trusted(top / "chain").real_path == str(program)
    os.chown(program, NOBODY, NOBODY)
    with pytest.raises(trust.UntrustedError) as refused:
        trust.read_trusted(top / "chain")
    assert refused.value.strerror == (f"{top / 'chain'}: symlink to {program}, owned by "
                                      f"uid {NOBODY}, not root")


def test_a_symlink_another_user_owns_is_refused(top):
    write(top / "a.bpf.c", "int a;\n")
    (top / "link").symlink_to(top / "a.bpf.c")
    os.lchown(top / "link", NOBODY, NOBODY)
    with pytest.raises(trust.UntrustedError) as refused:
        trust.read_trusted(top / "link")
    assert refused.value.strerror == (f"{top / 'link'}: symlink {top / 'link'} owned by "
                                      f"uid {NOBODY}, not root")


def test_sticky_directories_are_passed_only_when_root_owns_them(top):
    sticky = top / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    (sticky / "sub").mkdir(mode=0o755)
    program = write(sticky / "sub" / "a.bpf.c", "int a;\n")
    assert trust.read_trusted(program).content == b"int a;\n"
    os.chown(sticky, NOBODY, NOBODY)
    with pytest.raises(trust.UntrustedError) as refused:
        trust.read_trusted(program)
    assert refused.value.strerror == (f"{program}: directory {sticky} owned by uid {NOBODY}, "
                                      "not root")
    os.chown(sticky, 0, 0)
    os.chmod(sticky, 0o777)         # writable by all without the sticky bit
    with pytest.raises(trust.UntrustedError) as refused:
        trust.read_trusted(program)
    assert refused.value.strerror == (f"{program}: directory {sticky} writable by group and "
                                      "others (mode 0777)")
    # A program directory itself is refused if others may write it, sticky or not.
    os.chmod(sticky, 0o1777)
    with pytest.raises(trust.UntrustedError):
        trust.check_trusted(sticky)
    trust.check_trusted(sticky / "sub")


def test_only_regular_files_are_opened(top):
    os.mkfifo(top / "fifo.bpf.c", 0o644)
    with pytest.raises(trust.UntrustedError) as refused:     # and no wait for a writer
        trust.read_trusted(top / "fifo.bpf.c")
    assert refused.value.strerror == f"{top / 'fifo.bpf.c'}: not a regular file"
    (top / "dangling.bpf.c").symlink_to(top / "absent")
    with pytest.raises(FileNotFoundError):
        trust.read_trusted(top / "dangling.bpf.c")
