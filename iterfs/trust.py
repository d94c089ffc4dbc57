"""Whether a file may become a program: what it holds will run in the kernel.

Only root may have written it: the file (or directory) must be owned by root and
writable by neither its group nor others. A symlink is followed and its target
must pass the same test; the link itself grants nothing (its directory is
checked as a directory).
"""

import errno
import os
import stat


class UntrustedError(PermissionError):
    """A program directory or file that someone other than root could have written."""

    def __init__(self, path, why):
        super().__init__(errno.EPERM, f"{path}: {why}")
        self.path = path


def check_trusted(path):
    """Raise UntrustedError unless only root can have written `path`."""
    path = os.fspath(path)
    status = os.lstat(path)
    what = ""
    if stat.S_ISLNK(status.st_mode):
        status = os.stat(path)
        what = f"symlink to {os.path.realpath(path)}, "
    if status.st_uid != 0:
        raise UntrustedError(path, f"{what}owned by uid {status.st_uid}, not root")
    writable = [who for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH))
                if status.st_mode & bit]
    if writable:
        raise UntrustedError(path, f"{what}writable by {' and '.join(writable)} "
                                   f"(mode {stat.S_IMODE(status.st_mode):04o})")
