"""mount.py's mistakes: one clear line on stderr and exit status 2, nothing mounted."""

import os
import subprocess
import sys

from conftest import MOUNT_PY, running_daemon


def run_mount(*args, prefix=(), timeout=30):
    return subprocess.run([*prefix, sys.executable, str(MOUNT_PY), *map(str, args)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def assert_refused(result, *words):
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("iterfs: ")
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_missing_mount_point(tmp_path):
    assert_refused(run_mount(tmp_path / "absent"), "does not exist")


def test_mount_point_is_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    assert_refused(run_mount(tmp_path / "file"), "not a directory")


def test_mount_point_already_mounted(tmp_path):
    with running_daemon(tmp_path / "mnt") as daemon:
        assert_refused(run_mount(daemon.mountpoint), "already a mount")
        assert (daemon.mountpoint / "tcp6").read_text().startswith("  sl")


def test_no_compiled_views(tmp_path):
    (tmp_path / "mnt").mkdir()
    (tmp_path / "empty").mkdir()
    assert_refused(run_mount(tmp_path / "mnt", "--objects", tmp_path / "empty"),
                   "make setup")


def test_program_directory_missing(tmp_path):
    (tmp_path / "mnt").mkdir()
    assert_refused(run_mount(tmp_path / "mnt", "--progs", tmp_path / "absent"),
                   f"program directory {tmp_path / 'absent'} is not a directory")


def test_not_root(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    os.chmod(tmp_path, 0o755)
    # Reading the tree must not depend on where it was cloned (/root is 0700):
    # nobody keeps CAP_DAC_READ_SEARCH, which confers no right to mount or load BPF.
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
              "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search")
    assert_refused(run_mount(mnt, prefix=nobody), "must run as root")
    assert not os.path.ismount(mnt)


def test_missing_capabilities(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    without = ("setpriv", "--inh-caps=-all", "--bounding-set=-bpf,-sys_admin")
    assert_refused(run_mount(mnt, prefix=without), "CAP_SYS_ADMIN", "CAP_BPF")
    without_bpf = ("setpriv", "--inh-caps=-all", "--bounding-set=-bpf")
    assert_refused(run_mount(mnt, prefix=without_bpf), "missing capability CAP_BPF")
    assert not os.path.ismount(mnt)


def test_allow_other_needs_setuid_and_setgid(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    without = ("setpriv", "--inh-caps=-all", "--bounding-set=-setuid,-setgid")
    assert_refused(run_mount(mnt, "--allow-other", prefix=without), "CAP_SETGID and CAP_SETUID")
    assert not os.path.ismount(mnt)


def test_bad_option_is_a_usage_error(tmp_path):
    result = run_mount(tmp_path, "--no-such-option")
    assert result.returncode == 2
    assert "usage: mount.py" in result.stderr

