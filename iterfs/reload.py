"""`iterfs --reload PID MOUNTPOINT`: a reload that returns once it is done.

SIGHUP alone returns before the rescan it asks for has run, and Debian 12's
systemd (252) has no Type=notify-reload to wait for one; so the unit's
ExecReload runs this. It reads the number of the last reload from
MOUNTPOINT/.status, sends the daemon PID a SIGHUP, and waits until .status
says a later reload is over. That one started after the first read, so it
saw the program directories as they were when this was run. Exit 0 when it succeeded, 1 with one line when it
failed, the daemon went away, or nothing was over within the timeout."""

import os
import signal
import sys
import threading
import time
from pathlib import Path

from .status import parse_reloads

# Under the 90 s systemd gives ExecReload by default (TimeoutStartSec=), so
# that this says why before systemd kills it.
TIMEOUT = 60.0
POLL = 0.05


class ReloadError(Exception):
    """Why the reload is not known to be done, in one line."""


def read_within(path, seconds):
    """The text of `path`, read in a thread of its own so that a daemon that
    does not answer costs `seconds`, not forever."""
    result = {}

    def read():
        try:
            result["text"] = Path(path).read_text()
        except OSError as error:
            result["error"] = error

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(max(seconds, 0))
    if reader.is_alive():
        raise ReloadError(f"{path} did not answer within {seconds:g} s")
    if "error" in result:
        raise ReloadError(f"cannot read {path}: {result['error'].strerror}")
    return result["text"]


def alive(pid):
    """Whether `pid` runs (a zombie, not yet reaped, has exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def reload(pid, mountpoint, timeout=TIMEOUT):
    """Ask the daemon `pid` serving `mountpoint` for a rescan and wait for it.
    Returns the number of the reload that was done; raises ReloadError."""
    status = Path(mountpoint) / ".status"
    deadline = time.monotonic() + timeout
    before = parse_reloads(read_within(status, timeout)).number
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ReloadError(f"no process {pid} to reload") from None
    while True:
        # A read is given a second even past the deadline: one that answers
        # at all answers in milliseconds.
        reloads = parse_reloads(read_within(status, max(deadline - time.monotonic(), 1.0)))
        if reloads.number > before and reloads.state != "running":
            if reloads.state == "failed":
                raise ReloadError(f"reload {reloads.number} failed, the views served are "
                                  f"as they were: {reloads.reason}")
            return reloads.number
        if not alive(pid):
            raise ReloadError(f"process {pid} exited during the reload")
        if time.monotonic() >= deadline:
            raise ReloadError(f"no reload was done within {timeout:g} s "
                              f"(the last: reload {reloads.number} {reloads.state})")
        time.sleep(POLL)


def main(pid, mountpoint, timeout=TIMEOUT):
    try:
        reload(pid, mountpoint, timeout)
    except ReloadError as error:
        print(f"iterfs: {error}", file=sys.stderr)
        return 1
    return 0
