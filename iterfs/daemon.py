"""The daemon: check the machine, load the views, mount, serve until told to stop;
rescan the program directories on SIGHUP."""

import argparse
import contextlib
import ctypes
import errno
import faulthandler
import logging
import os
import re
import resource
import signal
import socket
import stat
import sys
from pathlib import Path

import pyfuse3
import trio

from . import credentials, reload
from .compiler import Compiler
from .directories import ProgramDirectory
from .escape import OneLineFilter
from .libc import libc
from .fs import MAX_OPEN_PER_UID, IterFS, open_limit
from .task_walks import ProcessList
from .trust import read_trusted
from .views import ViewTable

log = logging.getLogger("iterfs")

SOURCE_TREE = Path(__file__).resolve().parent.parent
DEFAULT_OBJECTS = SOURCE_TREE / "build" / "progs"
DEFAULT_HEADERS = SOURCE_TREE / "progs"
SYSTEM_PROGRAMS = Path("/etc/iterfs/progs.d")
DEFAULT_CACHE = Path("/var/cache/iterfs")
MOUNT_OPTIONS = ("fsname=iterfs", "subtype=iterfs", "ro", "nosuid", "nodev", "noexec")
CAPABILITIES = {"CAP_SYS_ADMIN": 21, "CAP_BPF": 39}
# --allow-other: a reader's iterator is created under the reader's uid and gid.
READER_CAPABILITIES = {"CAP_SETGID": 6, "CAP_SETUID": 7}
EXIT_USAGE = 2
MNT_DETACH = 2
SHUTDOWN_GRACE = 2.0


class SetupError(Exception):
    """A problem the user can fix, said in one line."""


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        prog="mount.py", description="Mount BPF iterators as files (iterfs).")
    parser.add_argument("mountpoint", help="an existing empty directory")
    parser.add_argument("-o", dest="options", action="append", default=[],
                        metavar="OPTION", help="extra FUSE mount option (repeatable)")
    parser.add_argument("--objects", type=Path, default=DEFAULT_OBJECTS, metavar="DIR",
                        help="directory of compiled views, *.bpf.o (default: %(default)s)")
    parser.add_argument("--allow-other", action="store_true",
                        help="let every user read, with /proc's rules (default: root only)")
    parser.add_argument("--max-open-per-uid", type=int, default=MAX_OPEN_PER_UID, metavar="N",
                        help="iterators one uid may hold open at once (default: %(default)s)")
    parser.add_argument("--progs", type=Path, action="append", default=[], metavar="DIR",
                        help="a directory of views of your own, *.bpf.c and *.bpf.o, after "
                        f"the built-in ones and {SYSTEM_PROGRAMS} (repeatable)")
    parser.add_argument("--headers", type=Path, default=DEFAULT_HEADERS, metavar="DIR",
                        help="where iterfs.h and the views' other headers are, for "
                        "compiling *.bpf.c (default: %(default)s)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, metavar="DIR",
                        help="where compiled *.bpf.c are kept (default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="log every request")
    parser.add_argument("--reload", type=int, metavar="PID",
                        help="mount nothing: have the daemon PID serving MOUNTPOINT rescan "
                        "the program directories, and wait until it is done "
                        f"(at most {reload.TIMEOUT:.0f} s; what systemctl reload runs)")
    return parser.parse_args(argv)


def setup_logging(debug):
    # journald stamps each line itself.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format=stamp + "%(name)s %(levelname)s: %(message)s",
                        stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(OneLineFilter())


def effective_capabilities():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def check_environment(mountpoint, objects, progs=(), allow_other=False):
    if os.geteuid() != 0:
        raise SetupError(f"must run as root (effective uid is {os.geteuid()})")
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last_cap = int(f.read())
    held = effective_capabilities()
    needed = dict(CAPABILITIES, **(READER_CAPABILITIES if allow_other else {}))
    missing = [name for name, bit in needed.items()
               if bit <= last_cap and not held & (1 << bit)]
    if allow_other and not credentials.SUPPORTED:
        raise SetupError(f"--allow-other is not supported on {os.uname().machine}: "
                         "iterfs cannot act as a reader there")
    if missing:
        raise SetupError("missing capabilit" + ("ies " if len(missing) > 1 else "y ")
                         + " and ".join(missing))
    try:
        if not stat.S_ISCHR(os.stat("/dev/fuse").st_mode):
            raise SetupError("/dev/fuse is not a character device")
    except FileNotFoundError:
        raise SetupError("/dev/fuse is missing: load the fuse module (modprobe fuse)")
    if not stat.S_ISDIR(usable_mountpoint(mountpoint)):
        raise SetupError(f"mount point {mountpoint} is not a directory")
    if not objects.is_dir() or not any(objects.glob("*.bpf.o")):
        raise SetupError(f"no compiled views (*.bpf.o) in {objects}: run `make setup`")
    for directory in progs:
        if not directory.is_dir():
            raise SetupError(f"program directory {directory} is not a directory")


def usable_mountpoint(mountpoint):
    """The mount point's mode, once every dead iterfs mount on it is detached."""
    while True:
        try:
            mode = os.stat(mountpoint).st_mode
            if not os.path.ismount(mountpoint):
                return mode
            os.statvfs(mountpoint)      # a dead mount's root attributes may be cached
        except FileNotFoundError:
            raise SetupError(f"mount point {mountpoint} does not exist")
        except OSError as error:
            if error.errno != errno.ENOTCONN:
                raise SetupError(f"mount point {mountpoint}: {error.strerror}")
            detach_dead_mount(mountpoint)
            continue
        raise SetupError(f"mount point {mountpoint} is already a mount")


def mount_types(mountpoint):
    """The filesystem types mounted at `mountpoint`, from /proc/self/mountinfo."""
    types = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, super_fields = line.partition(" - ")
            point = fields.split()[4]
            # mountinfo escapes space, tab, newline and backslash in octal.
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)
            if point == mountpoint:
                types.append(super_fields.split()[0])
    return types


def detach_dead_mount(mountpoint):
    """A dead iterfs mount (its daemon was killed) is detached, so that a restart
    after a crash mounts again; another filesystem's is not ours to touch."""
    types = mount_types(mountpoint)
    if not types or types[-1] != "fuse.iterfs":
        raise SetupError(f"mount point {mountpoint} is a dead FUSE mount, not iterfs's: "
                         f"detach it with fusermount3 -u -z {mountpoint}")
    if libc.umount2(os.fsencode(mountpoint), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        raise SetupError(f"cannot detach the dead iterfs mount at {mountpoint}: "
                         f"{os.strerror(code)}")
    log.warning("mount point %s held a dead iterfs mount: detached it", mountpoint)


@contextlib.contextmanager
def open_process_list(objects):
    """The program that lists processes for the process directories, beside the
    views' directory (build/internal, lib/iterfs/internal); without it, they
    list /proc, with one line saying so. It runs in the kernel as a view's
    program does: only root's file is loaded (trust.py), from the one read checked."""
    path = Path(objects).resolve().parent / "internal" / "processes.bpf.o"
    try:
        process_list = ProcessList(path, read_trusted(path).content)
    except OSError as error:
        log.warning("process directories list /proc: cannot load %s: %s", path,
                    error.strerror or error)
        yield None
        return
    with process_list:
        yield process_list


def raise_fd_limit():
    """Every open file holds two fds (link and iterator): take all the kernel allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def notify_ready():
    """Tell systemd (Type=notify) that the mount is live."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"READY=1", address)
    except OSError as error:
        log.warning("cannot notify %s that the mount is ready: %s", address, error.strerror)


async def announce_ready():
    await trio.sleep(0)     # let pyfuse3.main() start its workers first
    notify_ready()


async def serve(views, fs):
    async with trio.open_nursery() as nursery:
        await nursery.start(stop_on_signal, nursery.cancel_scope)
        await nursery.start(reload_on_hangup, views, fs)
        # Runs once pyfuse3.main() below has started its workers: requests are
        # being answered by the time systemd hears that the mount is ready.
        nursery.start_soon(announce_ready)
        try:
            await pyfuse3.main(max_tasks=fs.request_tasks)
        except* ConnectionAbortedError:     # from pyfuse3's workers, in a group
            # The kernel ended the connection itself: seen here when the last
            # files of a lazily unmounted mount close with many releases queued
            # (fusermount3 -u -z), and what /sys/fs/fuse/connections/N/abort
            # does. Either way the mount is gone; what is left is to close what
            # it held, and exit 0.
            log.info("the kernel closed the FUSE connection (ECONNABORTED)")
        nursery.cancel_scope.cancel()


async def reload_on_hangup(views, fs, task_status=trio.TASK_STATUS_IGNORED):
    """SIGHUP (systemctl reload) rescans the program directories. Compiling and
    loading happen in a worker thread while requests are answered; the new table
    replaces the old one between two requests."""
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        task_status.started()
        async for _ in signals:
            # Signals that arrive during a rescan make one more after it: each
            # started after them, as `iterfs --reload` needs (reload.py).
            views.reloads.start()
            log.info("SIGHUP: rescanning the program directories (reload %d)",
                     views.reloads.number)
            try:
                # Abandoned at unmount: the scan changes nothing the daemon serves.
                scan = await trio.to_thread.run_sync(views.scan, abandon_on_cancel=True)
            except Exception as error:
                failure = f"{type(error).__name__}: {error}"
                log.error("reload failed, serving the views as they were: %s", failure)
                views.reloads.finish(failure)
                continue
            changed = views.apply(scan)
            await fs.forget_views(changed)
            # Only now: a reader told the reload is done finds the new views.
            views.reloads.finish()
            log.info("reloaded: %d views served", len(views.serving()))


async def stop_on_signal(scope, task_status=trio.TASK_STATUS_IGNORED):
    """The first signal lets requests in progress finish, for SHUTDOWN_GRACE
    seconds at most; a second one cancels them at once."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            if scope.deadline == float("inf"):
                log.info("%s: unmounting", signal.Signals(signum).name)
                pyfuse3.terminate()
                scope.deadline = trio.current_time() + SHUTDOWN_GRACE
            else:
                log.info("%s again: cancelling requests in progress",
                         signal.Signals(signum).name)
                scope.cancel()


def main(argv=None):
    args = parse_arguments(argv)
    setup_logging(args.debug)
    faulthandler.enable()
    mountpoint = os.path.abspath(args.mountpoint)
    if args.reload is not None:
        return reload.main(args.reload, mountpoint)
    try:
        check_environment(mountpoint, args.objects, args.progs, args.allow_other)
    except SetupError as error:
        print(f"iterfs: {error}", file=sys.stderr)
        return EXIT_USAGE
    raise_fd_limit()
    # Until the daemon listens for it, a SIGHUP must not kill it.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    directories = [ProgramDirectory(os.path.abspath(args.objects), built_in=True),
                   ProgramDirectory(str(SYSTEM_PROGRAMS), optional=True),
                   *(ProgramDirectory(os.path.abspath(p)) for p in args.progs)]
    compiler = Compiler(os.path.abspath(args.headers), os.path.abspath(args.cache))
    with ViewTable(directories, compiler) as views, contextlib.ExitStack() as stack:
        try:
            views.reload()
        except OSError as error:        # no kernel BTF: no view could load
            print(f"iterfs: {error.strerror or error}", file=sys.stderr)
            return 1
        if not views.serving():
            print(f"iterfs: no view in {args.objects} could be loaded", file=sys.stderr)
            return 1
        process_list = stack.enter_context(open_process_list(args.objects))
        fs = IterFS(views, max_open_per_uid=args.max_open_per_uid,
                    max_open=open_limit(resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
                    process_list=process_list)
        options = set(pyfuse3.default_options) | set(MOUNT_OPTIONS) | set(args.options)
        if args.allow_other:
            options.add("allow_other")
        if args.debug:
            options.add("debug")
        try:
            pyfuse3.init(fs, mountpoint, options)
        except RuntimeError as error:
            print(f"iterfs: cannot mount {mountpoint}: {error}", file=sys.stderr)
            return 1
        log.info("mounted %s: %s", mountpoint, ", ".join(v.name for v in views.serving()))
        try:
            trio.run(serve, views, fs)
        finally:
            fs.close_all()
            pyfuse3.close(unmount=True)
        log.info("unmounted %s", mountpoint)
    return 0
