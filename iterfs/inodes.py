"""Inode numbers: computed from what a path names, never stored.

    1                                  the root (FUSE's)
    2 + n                              view number n (views.ViewTable: never
                                       reused, so an inode stays one program's
                                       across reloads)
    s << 48 | (n + 1) << 32 | k        the file for key k (a pid, SELF, ALL or a
                                       map id) in view n's directory

s is 0 but for a process a reader in a pid namespace of its own looked up by
the number it has there (fs.PidSlots). A view's inode is below 2**32, an
entry's at or above it, so the two never meet.
"""

import collections
import errno

ROOT = 1                    # pyfuse3.ROOT_INODE, FUSE_ROOT_ID
FIRST_VIEW = 2
SELF = 0xFFFF_FFFF          # the keys of `self` and `all`: no pid or map id is as large
ALL = 0xFFFF_FFFE
MAX_VIEWS = 0xFFFF          # view numbers an entry's inode holds (16 bits)
MAX_PID_SLOTS = 0xFFFF      # pid namespaces an inode tells apart (16 bits)
_KEY_BITS = 32
_SLOT_SHIFT = 48
_KEY_MASK = (1 << _KEY_BITS) - 1

Inode = collections.namedtuple("Inode", "view key slot")
"""What an inode names: view None for the root, key None for a view itself."""


def of_view(view):
    return FIRST_VIEW + view


def of_entry(view, key, slot=0):
    """The inode of key `key` in view `view`'s directory, for pid slot `slot`.
    EOVERFLOW past MAX_VIEWS views."""
    if not 0 <= view < MAX_VIEWS:
        raise OSError(errno.EOVERFLOW, f"view number {view} does not fit an inode")
    return slot << _SLOT_SHIFT | (view + 1) << _KEY_BITS | key


def with_key(inode, key):
    """An entry's inode with another key: the same view and slot (a listing's
    entries share one attributes object, given each inode in turn)."""
    return inode & ~_KEY_MASK | key


def decode(inode):
    """The Inode an inode number stands for. It says nothing of whether that
    view is served: the view table does."""
    if inode == ROOT:
        return Inode(None, None, 0)
    if inode <= _KEY_MASK:
        return Inode(inode - FIRST_VIEW, None, 0)
    return Inode((inode >> _KEY_BITS & MAX_VIEWS) - 1, inode & _KEY_MASK, inode >> _SLOT_SHIFT)
