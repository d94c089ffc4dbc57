"""The C library, opened once for all of iterfs: the calls Python has no
function for (umount2, setns, and syscall for per-thread credentials) and
vsnprintf, which expands libbpf's printf-style messages."""

import ctypes

libc = ctypes.CDLL(None, use_errno=True)
