"""Acting as a reader: an iterator created with the reader's credentials.

The kernel decides some of what an iterator shows from the credentials of the
file it reads through (f_cred): /ksym's addresses (kallsyms_show_value), and the
socket views' kernel pointers (progs/sock.h, reader_pointer). So the iterator
of a reader other than root is created while the creating thread has that
reader's effective uid and gid.

setresuid(2) in glibc changes every thread of the process; the system call
itself changes only the calling thread, and that is what is called here.
Leaving euid 0 clears the thread's effective capabilities; the real and saved
uids stay 0, so returning to euid 0 restores them.
"""

import contextlib
import ctypes
import os
import platform

# (setresuid, setresgid) system call numbers
_SYSCALLS = {"x86_64": (117, 119), "aarch64": (147, 149), "riscv64": (147, 149),
             "ppc64le": (164, 169), "s390x": (208, 210)}
SUPPORTED = platform.machine() in _SYSCALLS
_UNCHANGED = ctypes.c_long(-1)
_libc = ctypes.CDLL(None, use_errno=True)


def _call(number, effective):
    if _libc.syscall(ctypes.c_long(number), _UNCHANGED, ctypes.c_long(effective),
                     _UNCHANGED) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"switching this thread's credentials: {os.strerror(code)}")


@contextlib.contextmanager
def acting_as(uid, gid):
    """This thread alone has effective uid `uid` and gid `gid` inside the block.
    The daemon refuses --allow-other where this is not SUPPORTED."""
    set_uid, set_gid = _SYSCALLS[platform.machine()]
    _call(set_gid, gid)
    try:
        _call(set_uid, uid)
        try:
            yield
        finally:
            _call(set_uid, 0)
    finally:
        _call(set_gid, 0)
