"""streaming.OpenIterator over fake streams: what a FUSE read of a view gets,
and how the pump and the event loop share the stream. No kernel, no mount."""

import errno
import os
import random
import time

import pytest
import trio

from conftest import read_all, run, until
from fakes import SEQ_BUFFER, ManualPool, content
from iterfs import streaming
from iterfs.streaming import INTERACTIVE_BYTES, READ_AHEAD, READ_CHUNK, Budget, Lane

MiB = 1 << 20


def assert_closed(opened, reader, lane):
    """Everything the open file held is let go, once."""
    assert all(stream.closed for stream in reader.streams)
    assert opened.link.closes == 1
    assert reader.releases == 1
    assert opened not in lane.walks


async def pump_resting(opened):
    """Until the pump has nothing to do (what .status sees of it)."""
    await until(lambda: opened.waiting_since is None, what="the pump rests")


# -- what a reader gets ---------------------------------------------------------


@pytest.mark.parametrize("size", [1, 4096, 100_000, 128 * 1024, 3 * MiB])
@pytest.mark.parametrize("chunks", [(SEQ_BUFFER,), (4096, 17, SEQ_BUFFER, 1000)])
@run
async def test_a_sequential_read_gets_the_walk_whole(kit, size, chunks):
    data = content(2 * MiB + 12345 if size > 1 else 70_000)
    lane = kit.lane()
    opened, reader = kit.open(data, lane=lane, chunks=chunks)
    assert await read_all(opened, size) == data
    # At the end, and again after it: nothing, as a file's end gives.
    assert await opened.read(len(data), size) == b""
    assert await opened.read(len(data), size) == b""
    assert len(reader.streams) == 1          # never walked again
    opened.close()
    assert_closed(opened, reader, lane)
    assert opened._budget.held == 0


@run
async def test_an_empty_walk_reads_as_an_empty_file(kit):
    opened, reader = kit.open(b"")
    assert await opened.read(0, 4096) == b""
    assert await opened.read(0, 4096) == b""
    opened.close()
    assert reader.streams[0].closed


@run
async def test_the_walk_begins_at_the_first_read(kit):
    """As /proc's: a file that lists the reader's own fds shows itself."""
    opened, reader = kit.open(content(1000))
    await trio.sleep(0.05)
    assert reader.streams[0].reads == []
    assert await opened.read(0, 10) == content(1000)[:10]
    opened.close()


@run
async def test_seeks_forward_within_and_past_what_was_read_ahead(kit):
    data = content(3 * MiB)
    opened, reader = kit.open(data)
    assert await opened.read(0, 4096) == data[:4096]
    await pump_resting(opened)
    # Within what was read ahead, then past it (the rest skipped with fill).
    assert await opened.read(100_000, 5000) == data[100_000:105_000]
    assert await opened.read(2 * MiB + 3, 7) == data[2 * MiB + 3:2 * MiB + 10]
    assert reader.streams[0].fills >= 1
    assert await opened.read(2 * MiB + 10, 4096) == data[2 * MiB + 10:2 * MiB + 10 + 4096]
    # Past the end: nothing, and the walk is not begun again.
    assert await opened.read(5 * MiB, 4096) == b""
    assert len(reader.streams) == 1
    opened.close()
    assert reader.streams[0].closed


@run
async def test_a_seek_back_walks_again_from_the_start(kit):
    data = content(MiB)
    lane = kit.lane()
    opened, reader = kit.open(data, lane=lane)
    assert await opened.read(500_000, 4096) == data[500_000:504_096]
    assert await opened.read(10, 100) == data[10:110]
    assert len(reader.streams) == 2
    assert reader.streams[0].closed and not reader.streams[1].closed
    assert await read_all(opened, 65536, 110) == data[110:]
    opened.close()
    assert_closed(opened, reader, lane)


@run
async def test_a_seek_stops_the_pump_at_its_next_chunk(kit):
    """A seek waits for the read the kernel is in, not for the read-ahead."""
    data = content(4 * MiB)
    gate = kit.gate(allowed=1)
    opened, reader = kit.open(data, gate=lambda walk: gate if walk == 0 else None)
    assert await opened.read(0, 4096) == data[:4096]
    await until(lambda: gate.waiting == 1, what="the pump reads on")

    async def let_the_walk_go():
        await trio.sleep(0.1)
        gate.open()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(let_the_walk_go)
        assert await opened.read(100, 10) == data[100:110]
    assert reader.streams[0].position == 2 * SEQ_BUFFER
    opened.close()


@run
async def test_reads_larger_than_the_read_ahead_are_answered_whole(kit):
    data = content(3 * MiB)
    opened, _ = kit.open(data)
    assert await opened.read(0, 2 * MiB) == data[:2 * MiB]
    assert await opened.read(2 * MiB, 2 * MiB) == data[2 * MiB:]
    opened.close()


@run
async def test_the_pump_reads_ahead_up_to_read_ahead_and_no_further(kit):
    data = content(4 * MiB)
    opened, reader = kit.open(data)
    assert await opened.read(0, 4096) == data[:4096]
    await pump_resting(opened)
    read = reader.streams[0].position
    assert READ_AHEAD <= read < READ_AHEAD + 4096 + SEQ_BUFFER
    # Taking from the buffer lets it read on, again up to READ_AHEAD ahead.
    assert await opened.read(4096, 200_000) == data[4096:204_096]
    await pump_resting(opened)
    assert READ_AHEAD <= reader.streams[0].position - 204_096 < READ_AHEAD + SEQ_BUFFER
    opened.close()


# -- errors from the walk -------------------------------------------------------


@run
async def test_an_error_comes_after_the_bytes_before_it(kit):
    data = content(MiB)
    fail_at = 10 * SEQ_BUFFER
    opened, _ = kit.open(data, fail_at=fail_at)
    assert await opened.read(0, fail_at - 100) == data[:fail_at - 100]
    assert await opened.read(fail_at - 100, 4096) == data[fail_at - 100:fail_at]
    with pytest.raises(OSError) as raised:
        await opened.read(fail_at, 4096)
    assert raised.value.errno == errno.EIO
    with pytest.raises(OSError):         # and stays, as the walk cannot go on
        await opened.read(fail_at, 4096)
    opened.close()


@run
async def test_a_seek_back_after_an_error_walks_again(kit):
    data = content(MiB)
    # The first walk fails at 64 KiB; the second goes through.
    opened, reader = kit.open(data, fail_at=lambda walk: 2 * SEQ_BUFFER if walk == 0 else None)
    with pytest.raises(OSError):
        await read_all(opened, 4096)
    assert await read_all(opened, 4096, 0) == data
    assert len(reader.streams) == 2
    opened.close()


@run
async def test_an_error_that_is_no_oserror_reaches_the_reader_as_one(kit):
    opened, _ = kit.open(content(MiB), fail_at=0, error=RuntimeError("a bug"))
    with pytest.raises(OSError, match="a bug"):
        await opened.read(0, 4096)
    opened.close()


# -- closing ------------------------------------------------------------------


@run
async def test_close_while_idle_closes_at_once(kit):
    lane = kit.lane()
    opened, reader = kit.open(content(100_000), lane=lane)
    assert await opened.read(0, 4096)
    await pump_resting(opened)          # at the end of the walk
    opened.close()
    assert_closed(opened, reader, lane)


@run
async def test_close_never_waits_for_a_walk_the_kernel_holds_up(kit):
    """release() must not wait on a blocked read(2): the pump closes the
    stream when the kernel lets it go, and only then."""
    data = content(MiB)
    gate = kit.gate(allowed=1)
    lane = kit.lane()
    opened, reader = kit.open(data, lane=lane, gate=gate)
    assert await opened.read(0, 4096) == data[:4096]
    stream = reader.streams[0]
    await until(lambda: gate.waiting == 1, what="the pump blocks in the walk")
    started = time.monotonic()
    opened.close()
    assert time.monotonic() - started < 0.5
    assert not stream.closed and opened.link.closes == 0     # the pump still reads it
    gate.open()
    await until(lambda: stream.closed, what="the pump closes the stream")
    await until(lambda: opened not in lane.walks, what="the walk is forgotten")
    assert_closed(opened, reader, lane)
    assert opened._budget.held == 0


@run
async def test_close_while_a_seek_skips_leaves_the_stream_to_it(kit):
    """A seek far ahead skips in a worker thread (fill): a release meanwhile
    must not close the stream under it; the worker closes it when done."""
    data = content(4 * MiB)
    gate = kit.gate()
    lane = kit.lane()
    opened, reader = kit.open(data, lane=lane, gate=gate)
    assert await opened.read(0, 4096) == data[:4096]
    await pump_resting(opened)
    gate.close()
    stream = reader.streams[0]

    async def close_soon():
        await until(lambda: gate.waiting == 1, what="the seek skips")
        opened.close()
        assert not stream.closed
        gate.open()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(close_soon)
        with pytest.raises(OSError) as raised:
            await opened.read(3 * MiB, 4096)
    assert raised.value.errno == errno.EBADF
    await until(lambda: stream.closed, what="the worker closes the stream")
    assert_closed(opened, reader, lane)


@run
async def test_close_fails_a_read_that_waits(kit):
    gate = kit.gate(allowed=0)
    opened, reader = kit.open(content(MiB), gate=gate)

    async def close_soon():
        await until(lambda: gate.waiting == 1, what="the read waits")
        opened.close()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(close_soon)
        with pytest.raises(OSError) as raised, trio.fail_after(2):     # not when the walk goes on
            await opened.read(0, 4096)
    assert raised.value.errno == errno.EBADF
    gate.open()
    await until(lambda: reader.streams[0].closed, what="the pump closes the stream")


@run
async def test_close_drops_a_pump_that_never_started(kit):
    """A pump waiting for a thread (all the view's busy in the kernel) is
    cancelled: the stream is closed now, not when a thread frees."""
    lane = Lane("test", 1, False)
    kit.lanes.append(lane)
    busy = kit.gate(allowed=0)
    blocker = lane.interactive.submit(busy.pass_)       # the lane's one thread
    opened, reader = kit.open(content(MiB), lane=lane)

    async def close_soon():
        await trio.sleep(0.05)
        opened.close()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(close_soon)
        with pytest.raises(OSError):
            await opened.read(0, 4096)
    assert_closed(opened, reader, lane)
    assert reader.streams[0].reads == []
    busy.open()
    blocker.result(timeout=5)


# -- the limits on what is held -------------------------------------------------


@run
async def test_a_users_files_leave_roots_reserve_alone(kit):
    total, reserve = 8 * SEQ_BUFFER, 4 * SEQ_BUFFER
    budget = Budget(total, reserve)
    data = content(MiB)
    user, user_reader = kit.open(data, budget=budget, uid=1000)
    assert await user.read(0, 100) == data[:100]
    await pump_resting(user)
    # Read ahead while a chunk more fits in what users may hold.
    assert budget.held <= total - reserve
    assert total - reserve - budget.held < READ_CHUNK
    assert user_reader.streams[0].position < READ_AHEAD

    root, root_reader = kit.open(data, budget=budget, uid=0)
    assert await root.read(0, 100) == data[:100]
    await pump_resting(root)
    assert reserve - SEQ_BUFFER <= root_reader.streams[0].position <= reserve + SEQ_BUFFER
    assert budget.held <= total

    # Past the limit, a read is still answered whole: what it asks is read.
    assert await user.read(100, 300_000) == data[100:300_100]
    user.close()
    root.close()
    assert budget.held == 0


# -- the pump threads ---------------------------------------------------------


@pytest.mark.parametrize("lowered_pool", [False, True])
@run
async def test_a_file_that_streams_is_pumped_at_lower_priority(kit, lowered_pool):
    lane = kit.lane(lowered_pool=lowered_pool)
    data = content(3 * MiB)
    opened, reader = kit.open(data, lane=lane)
    start_nice = os.getpriority(os.PRIO_PROCESS, 0)
    assert await read_all(opened, 128 * 1024) == data
    reads = reader.streams[0].reads
    first = reads[:INTERACTIVE_BYTES // SEQ_BUFFER]
    last = reads[INTERACTIVE_BYTES // SEQ_BUFFER + 1:]
    assert {nice for _, nice in first} == {start_nice}
    assert {nice for _, nice in last} == {max(start_nice, streaming.STREAMING_NICE)}
    if lowered_pool:
        # On the lowered pool's threads, never on the interactive ones after.
        interactive = {thread for thread, _ in first}
        assert not interactive & {thread for thread, _ in last}
    opened.close()


@run
async def test_random_reads_and_seeks_all_get_the_right_bytes(kit, monkeypatch):
    """Reads of any size at any offset, the pump at work: every byte where it
    belongs, and the stream never used by two at once (fakes.FakeStream)."""
    monkeypatch.setattr(streaming, "INTERACTIVE_BYTES", 3 * SEQ_BUFFER)
    monkeypatch.setattr(streaming, "READ_AHEAD", 5 * SEQ_BUFFER)
    data = content(MiB)
    lane = kit.lane(lowered_pool=True)
    opened, reader = kit.open(data, lane=lane, chunks=(SEQ_BUFFER, 5000, 333))
    chance = random.Random(22)
    offset = 0
    for _ in range(400):
        if chance.random() < 0.15:
            offset = chance.randrange(len(data) + 1000)
        size = chance.choice([1, 4096, 65536, 131072, chance.randrange(1, 200_000)])
        got = await opened.read(offset, size)
        assert got == data[offset:offset + size]
        offset += len(got)
        if chance.random() < 0.3:
            await trio.sleep(0.001)     # let the pump get ahead, sometimes
    opened.close()
    await until(lambda: all(s.closed for s in reader.streams), what="every walk closed")
    assert_closed(opened, reader, lane)



@run
async def test_a_seek_waits_for_the_pump_that_took_over_in_the_lowered_pool(kit):
    """A pump that streams hands over to the lowered pool's threads. Its
    successor, or a pump the event loop started after it, is the one a seek
    must wait for: here the handing-over thread is slow to come back from its
    submit, while a pump started after it reads. The seek must not walk again
    (closing the stream) under that reader."""
    interactive, lowered = ManualPool(), ManualPool()
    lane = kit.lane()
    lane.interactive, lane.streaming = interactive, lowered
    data = content(2 * MiB)
    first_walk = kit.gate(allowed=1)
    opened, reader = kit.open(data, lane=lane,
                              gate=lambda walk: first_walk if walk == 0 else None)
    lowered.hold_submits(1.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(opened.read, 0, SEQ_BUFFER)
        await until(lambda: interactive.pending == 1, what="the first pump is asked for")
        interactive.run_next()
    # The first pump reads on past INTERACTIVE_BYTES, and hands over.
    first_walk.allow(INTERACTIVE_BYTES // SEQ_BUFFER)
    await until(lambda: lowered.held_submits == 1, what="the pump hands over")
    # Its successor fills the read-ahead and rests.
    first_walk.allow(READ_AHEAD // SEQ_BUFFER - INTERACTIVE_BYTES // SEQ_BUFFER)
    successor = lowered.run_next()
    await until(successor.future.done, seconds=3, what="the successor rests")
    # A read makes room: the event loop starts a pump, which blocks in the walk.
    assert await opened.read(SEQ_BUFFER, SEQ_BUFFER) == data[SEQ_BUFFER:2 * SEQ_BUFFER]
    lowered.release()
    await until(lambda: all(job.future.done() for job in interactive.jobs),
                what="the first pump ends")
    lowered.run_all()
    await until(lambda: first_walk.waiting == 1, what="the last pump reads")

    async def let_the_walk_go():
        await trio.sleep(0.3)
        first_walk.open()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(let_the_walk_go)
        assert await opened.read(0, 100) == data[:100]
    assert await read_all(opened, 65536, 100) == data[100:]
    opened.close()
    lowered.join()
    assert_closed(opened, reader, lane)
