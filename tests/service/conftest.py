"""The container the service tests share, booted once for the module, and the
times they measured, printed at the end of the run."""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from container import Container

ROOT = Path(__file__).resolve().parents[2]
# make test-service builds it (debootstrap) when it is missing.
DEBIAN_ROOT = ROOT / "build" / "service" / "bookworm"


@pytest.fixture(scope="module")
def container():
    """A Debian 12 root with `make install` copied into its /usr/local, booted."""
    if not (DEBIAN_ROOT / ".complete").exists():
        pytest.fail(f"no Debian root in {DEBIAN_ROOT}: run make test-service, which builds it")
    destination = Path(tempfile.mkdtemp(prefix="iterfs-service-install-"))
    try:
        subprocess.run(["make", "-s", "install", f"DESTDIR={destination}"], cwd=ROOT,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=300)
        with Container(DEBIAN_ROOT) as booted:
            # The same paths as the host's: the venv's python is /usr/bin/python3.
            subprocess.run(["cp", "-a", f"{destination}/usr/local/.", str(booted.path("/usr/local"))],
                           check=True, timeout=60)
            shutil.rmtree(destination)
            booted.first_boot_seconds = booted.boot()
            yield booted
    finally:
        shutil.rmtree(destination, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    """What each test measured (record_property), one line each."""
    lines = []
    for outcome in ("passed", "failed"):
        for report in terminalreporter.getreports(outcome):
            if report.when == "call" and report.user_properties:
                name = report.nodeid.rpartition("::")[2]
                lines.append(f"{name}: " + ", ".join(f"{key} {value}"
                                                     for key, value in report.user_properties))
    if lines:
        terminalreporter.section("measured")
        for line in lines:
            terminalreporter.write_line(line)
