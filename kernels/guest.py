"""One kernel's column of the matrix, run on that kernel (natively or in a VM).

Mounts iterfs, reads what became of each built-in view from /.status, then runs
the kernel-dependent tests (`pytest -m kernel`) with one mount shared by all.
The last line printed is `ITERFS-MATRIX <json>`, which kernels/matrix.py reads:

    {"kernel": release, "views": {view: [state, reason]}, "tests": {outcome: n},
     "failed": [test ids], "seconds": s}

Exits 0 when no view is rejected and no test failed.
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

MARKER = "ITERFS-MATRIX "
FILE_LIMIT = 65536
# Loading every view takes tens of seconds under emulation.
MOUNT_TIMEOUT = 300


def failed_views(views):
    """The views a kernel left out for a fault of ours: neither served nor
    unsupported (rejected, skipped, or missing from /.status)."""
    return sorted(view for view, (state, _) in views.items()
                  if state not in ("serving", "unsupported"))


def view_states():
    """{view: [state, reason]} as a mount's /.status says."""
    from conftest import ALL_METRICS, ALL_VIEWS, METRICS, STATUS, parse_status, running_daemon

    with tempfile.TemporaryDirectory(prefix="iterfs-matrix-") as top:
        with running_daemon(Path(top) / "mnt") as daemon:
            entries = parse_status((daemon.mountpoint / STATUS).read_text())
    states = {}
    for view in [*ALL_VIEWS, *(f"{METRICS}/{name}" for name in ALL_METRICS)]:
        state, _, _, lines = entries.get(view, ("missing", "-", "-", []))
        reason = " ".join(line.removeprefix("reason: ") for line in lines[:1])
        states[view] = [state, reason]
    return states


def kernel_test_files():
    """The test files that hold kernel tests: only they are collected, since an
    emulated guest takes seconds to import each file."""
    return sorted(str(path) for path in (ROOT / "tests").glob("test_*.py")
                  if "pytest.mark.kernel" in path.read_text())


def run_tests(extra):
    """pytest -m kernel; {outcome: count} and the failed tests' ids.

    The tests' files go to a tmpfs of their own: a guest's /tmp is an overlay,
    which overlayfs refuses as the upper layer the overlay test mounts. Both,
    and the report, are gone when this returns."""
    top = Path(tempfile.mkdtemp(prefix="iterfs-matrix-"))
    try:
        return _run_tests(extra, top)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _run_tests(extra, top):
    report = top / "report.xml"
    scratch = top / "tmp"
    scratch.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "iterfs-matrix", str(scratch)], check=True)
    environment = dict(os.environ, ITERFS_SHARED_MOUNT="1", PYTHONDONTWRITEBYTECODE="1")
    try:
        subprocess.run([sys.executable, "-m", "pytest", "-m", "kernel", "-p", "no:cacheprovider",
                        "-q", "-rs", f"--junitxml={report}", f"--basetemp={scratch}/pytest",
                        *extra, *kernel_test_files()],
                       cwd=ROOT, env=environment, check=False)
    finally:
        # Detached at once: what the rmtree above then sees is the empty directory.
        subprocess.run(["umount", "--lazy", str(scratch)], check=False)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failed = []
    if not report.exists():
        counts["failed"] = 1
        return counts, ["pytest wrote no report"]
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
            failed.append(name)
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts, failed


def main():
    start = time.monotonic()
    # A guest starts with 1024 fds; the host's tests expect the daemon's room.
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))
    except (ValueError, OSError):   # no CAP_SYS_RESOURCE: as high as the hard limit
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.environ.setdefault("ITERFS_MOUNT_TIMEOUT", str(MOUNT_TIMEOUT))
    result = {"kernel": os.uname().release}
    try:
        result["views"] = view_states()
    except Exception as error:     # reported in the table, not a traceback
        result["views"] = {}
        result["error"] = f"mount: {error}"
    result["tests"], result["failed"] = run_tests(sys.argv[1:])
    result["seconds"] = round(time.monotonic() - start)
    print(MARKER + json.dumps(result), flush=True)
    return 1 if failed_views(result["views"]) or result["failed"] or "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
