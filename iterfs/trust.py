"""Whether a file may become a program: what it holds will run in the kernel.

Only root may have written it, nor anything that decides which file its path
names. So the path is resolved here one name at a time, as the kernel would:

- every directory passed through, `/` included, is owned by root and writable
  by neither its group nor others; a root-owned directory with the sticky bit
  (/tmp) may be writable by all, since there no one but root can rename or
  remove what root owns, and whatever another user makes in it fails the test
  at the next name;
- every symlink followed is owned by root (a link's owner may replace it in a
  sticky directory); a symlink is allowed, its target is what is checked;
- the file itself is opened once at its resolved path, without following a
  link there, and the opened file is checked (fstat): a regular file owned by
  root, writable by neither its group nor others.

Its content is then read from that same open file: what was checked is what is
hashed and compiled or loaded. Since no one but root can change any name on the
resolved path, the content under that path is root's for as long as it stays so.
"""

import dataclasses
import errno
import os
import stat

MAX_SYMLINKS = 40       # as the kernel's path walk (ELOOP past it)


class UntrustedError(PermissionError):
    """A program directory or file that someone other than root could have written."""

    def __init__(self, path, why):
        super().__init__(errno.EPERM, f"{path}: {why}")
        self.path = path


@dataclasses.dataclass(frozen=True)
class TrustedFile:
    path: str           # as asked for
    real_path: str      # where it is: no symlink, no `.` or `..`
    content: bytes


def _writable(mode):
    return [who for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH))
            if mode & bit]


def _refusal(status, *, sticky_allowed):
    """Why a file or directory with `status` is not root's alone, or None."""
    if status.st_uid != 0:
        return f"owned by uid {status.st_uid}, not root"
    writable = _writable(status.st_mode)
    if writable and not (sticky_allowed and status.st_mode & stat.S_ISVTX):
        return (f"writable by {' and '.join(writable)} "
                f"(mode {stat.S_IMODE(status.st_mode):04o})")
    return None


def resolve(path):
    """The real path of `path` (absolute, no symlink), checking every directory
    passed through and every symlink followed; UntrustedError at the first that
    is not root's. The last name is not checked, only resolved."""
    path = os.fspath(path)
    if not os.path.isabs(path):
        path = os.path.join(os.getcwd(), path)
    names = [name for name in path.split("/") if name]
    current, links = "/", 0
    _check_directory(path, current, _lstat(path, current))
    while names:
        name = names.pop(0)
        if name == ".":
            continue
        if name == "..":
            current = os.path.dirname(current)     # an ancestor: checked already
            continue
        candidate = os.path.join(current, name)
        status = _lstat(path, candidate)
        if stat.S_ISLNK(status.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, f"{path}: {os.strerror(errno.ELOOP)}")
            if status.st_uid != 0:
                raise UntrustedError(path, f"symlink {candidate} owned by uid "
                                           f"{status.st_uid}, not root")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = "/"
            names[:0] = [name for name in target.split("/") if name]
            continue
        if names:
            _check_directory(path, candidate, status)
        current = candidate
    return current


def _lstat(path, name):
    try:
        return os.lstat(name)
    except OSError as error:        # a dangling symlink, a file gone
        raise OSError(error.errno, f"{path}: {error.strerror}") from None


def _check_directory(path, directory, status):
    if not stat.S_ISDIR(status.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, f"{path}: {directory}: "
                                                f"{os.strerror(errno.ENOTDIR)}")
    why = _refusal(status, sticky_allowed=True)
    if why:
        raise UntrustedError(path, f"directory {directory} {why}")


def _what(path, real_path):
    """How a refusal names what it refused: the symlink's target where it is one."""
    return "" if os.path.abspath(path) == real_path else f"symlink to {real_path}, "


def check_trusted(path):
    """Raise UntrustedError unless only root can have written the directory
    `path` and every directory on its way from `/`. The directory itself may not
    be writable by others even with the sticky bit: a program directory's names
    decide views."""
    real_path = resolve(path)
    status = os.stat(real_path, follow_symlinks=False)
    if not stat.S_ISDIR(status.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, f"{path}: {os.strerror(errno.ENOTDIR)}")
    why = _refusal(status, sticky_allowed=False)
    if why:
        raise UntrustedError(path, _what(path, real_path) + why)


def open_trusted(path):
    """The file at `path`, opened once: an fd (the caller closes it) and its
    real path; UntrustedError unless only root can have written it."""
    real_path = resolve(path)
    fd = os.open(real_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                 | os.O_CLOEXEC)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise UntrustedError(path, _what(path, real_path) + "not a regular file")
        why = _refusal(status, sticky_allowed=False)
        if why:
            raise UntrustedError(path, _what(path, real_path) + why)
    except BaseException:
        os.close(fd)
        raise
    return fd, real_path


def read_trusted(path):
    """What the file at `path` holds, read from the one open that was checked."""
    fd, real_path = open_trusted(path)
    with os.fdopen(fd, "rb") as f:
        return TrustedFile(os.fspath(path), real_path, f.read())


def check_trusted_file(path):
    """The real path of a file only root can have written (a tool to run)."""
    fd, real_path = open_trusted(path)
    os.close(fd)
    return real_path
