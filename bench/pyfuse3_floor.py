"""What pyfuse3 and trio cost by themselves: the smallest pyfuse3 filesystem
that answers the requests the benchmarks time, serving from memory, as
bench/fuse_floor.c does in C:

    small   a read-only file of SIZE bytes (OPEN, READ, READ for EOF, RELEASE,
            direct_io, as iterfs's files)
    unsized the same bytes in a file of unknown size: st_size 0, as iterfs's
            and /proc's files (the tests ask the kernel what it does with one)
    dir/    ENTRIES files named 1, 2, 3... (OPENDIR, READDIRPLUS, RELEASEDIR;
            entries with timeouts 0, as iterfs lists processes)

    python bench/pyfuse3_floor.py MOUNTPOINT SIZE ENTRIES

No BPF, no /proc, no threads: the gap between it and fuse_floor.c is the
Python side's own cost per request. Prints "ready" once mounted; runs until
unmounted or sent SIGINT/SIGTERM.
"""

import errno
import signal
import stat
import sys

import pyfuse3
import trio

SMALL_INODE = 2
DIR_INODE = 3
UNSIZED_INODE = 4
FILES = (SMALL_INODE, UNSIZED_INODE)
ENTRY_BASE = 1 << 32


class Floor(pyfuse3.Operations):
    def __init__(self, size, entries):
        super().__init__()
        self.content = b"x" * size
        self.names = [str(n).encode() for n in range(1, entries + 1)]

    def _attributes(self, inode, timeout=3600):
        attributes = pyfuse3.EntryAttributes()
        attributes.st_ino = inode
        attributes.entry_timeout = attributes.attr_timeout = timeout
        if inode in (pyfuse3.ROOT_INODE, DIR_INODE):
            attributes.st_mode = stat.S_IFDIR | 0o555
        else:
            attributes.st_mode = stat.S_IFREG | 0o444
            attributes.st_size = len(self.content) if inode == SMALL_INODE else 0
        return attributes

    async def lookup(self, parent_inode, name, ctx=None):
        inodes = {b"small": SMALL_INODE, b"dir": DIR_INODE, b"unsized": UNSIZED_INODE}
        if parent_inode != pyfuse3.ROOT_INODE or name not in inodes:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attributes(inodes[name])

    async def getattr(self, inode, ctx=None):
        return self._attributes(inode)

    async def open(self, inode, flags, ctx):
        if inode not in FILES:
            raise pyfuse3.FUSEError(errno.EISDIR)
        return pyfuse3.FileInfo(fh=inode, direct_io=True, keep_cache=False)

    async def read(self, fh, off, size):
        return self.content[off:off + size]

    async def release(self, fh):
        pass

    async def opendir(self, inode, ctx):
        if inode != DIR_INODE:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(self, fh, start_id, token):
        attributes = self._attributes(ENTRY_BASE, timeout=0)
        for offset in range(start_id, len(self.names)):
            attributes.st_ino = ENTRY_BASE + offset + 1
            if not pyfuse3.readdir_reply(token, self.names[offset], attributes, offset + 1):
                return

    async def releasedir(self, fh):
        pass


async def serve():
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            async def stop():
                async for _ in signals:
                    pyfuse3.terminate()
                    return
            nursery.start_soon(stop)
            print("ready", flush=True)
            await pyfuse3.main()
            nursery.cancel_scope.cancel()


def main():
    mountpoint, size, entries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pyfuse3.init(Floor(size, entries), mountpoint,
                 {"fsname=pyfuse3_floor", "ro", "default_permissions"})
    try:
        trio.run(serve)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
