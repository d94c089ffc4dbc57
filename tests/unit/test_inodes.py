"""The inode codec (iterfs/inodes.py): every inode decodes to what made it."""

import errno

import pytest

from iterfs import inodes


def test_root_and_views():
    assert inodes.decode(inodes.ROOT) == (None, None, 0)
    for view in (0, 1, 77, inodes.MAX_VIEWS - 1):
        assert inodes.decode(inodes.of_view(view)) == (view, None, 0)


@pytest.mark.parametrize("key", [1, 4_194_304, 0x7FFF_FFFF, inodes.SELF, inodes.ALL])
@pytest.mark.parametrize("view", [0, 5, inodes.MAX_VIEWS - 1])
@pytest.mark.parametrize("slot", [0, 1, inodes.MAX_PID_SLOTS])
def test_entries_decode_to_what_made_them(view, key, slot):
    inode = inodes.of_entry(view, key, slot)
    assert inode < 1 << 64                      # FUSE's nodeid
    assert inodes.decode(inode) == (view, key, slot)
    assert inodes.decode(inodes.with_key(inode, 42)) == (view, 42, slot)


def test_views_and_entries_never_meet():
    largest_view = inodes.of_view(inodes.MAX_VIEWS - 1)
    smallest_entry = inodes.of_entry(0, 0)
    assert largest_view < smallest_entry
    assert inodes.decode(smallest_entry).key == 0


def test_a_view_past_the_inode_is_eoverflow():
    with pytest.raises(OSError) as failed:
        inodes.of_entry(inodes.MAX_VIEWS, 1)
    assert failed.value.errno == errno.EOVERFLOW
