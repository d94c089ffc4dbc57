"""Fixtures of the unit tier: open files over fake streams, in plain Python."""

import functools
import threading
import time

import pytest
import trio

from fakes import FakeLink, FakeReader, FakeStream, Gate
from iterfs import streaming

TEST_SECONDS = 20       # a test that hangs fails instead


def run(test):
    """Run an async test function in trio, as the daemon's event loop runs reads."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        async def main():
            with trio.fail_after(TEST_SECONDS):
                await test(*args, **kwargs)
        trio.run(main)
    return wrapper


async def until(condition, seconds=5.0, what="the condition"):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s")
        await trio.sleep(0.002)


class Kit:
    """Makes what a test opens, and leaves nothing behind: every gate opened,
    every lane's threads ended, and what the streams saw broken reported."""

    def __init__(self):
        self.violations = []
        self.lanes = []
        self.gates = []
        self.readers = []

    def lane(self, *, lowered_pool=False, threads=4, name="test"):
        lane = streaming.Lane(name, threads, lowered_pool)
        self.lanes.append(lane)
        return lane

    def gate(self, allowed=None):
        gate = Gate(allowed)
        self.gates.append(gate)
        return gate

    def stream_maker(self, data, **options):
        """A reader's make_stream: each walk over `data` alike; options per walk
        may be given as functions of the walk's number."""
        def make(walk):
            chosen = {key: value(walk) if callable(value) else value
                      for key, value in options.items()}
            stream = FakeStream(data, self.violations, **chosen)
            self.gates.append(stream.gate)
            return stream
        return make

    def open(self, data, *, lane=None, budget=None, uid=0, name="view", **options):
        """An OpenIterator over `data` (in the event loop), and its reader."""
        reader = FakeReader(self.stream_maker(data, **options), uid)
        self.readers.append(reader)
        lane = lane if lane is not None else self.lane()
        budget = budget if budget is not None else streaming.Budget(
            streaming.BUFFERED_BYTES, streaming.ROOT_BUFFERED_BYTES)
        opened = streaming.OpenIterator(FakeLink(), lane, budget, name, reader, None)
        return opened, reader

    def finish(self):
        for gate in self.gates:
            gate.open()
        for lane in self.lanes:
            lane.shutdown()
        # Pool threads are not daemons: wait for them, or pytest waits at exit.
        deadline = time.monotonic() + 10
        prefixes = tuple(f"iterfs-{lane.name}"[:12] + "_" for lane in self.lanes)
        while prefixes and any(t.name.startswith(prefixes) for t in threading.enumerate()):
            assert time.monotonic() < deadline, "pump threads still running"
            time.sleep(0.01)


@pytest.fixture
def kit():
    kit = Kit()
    try:
        yield kit
    finally:
        kit.finish()
    assert kit.violations == [], "the stream was misused"


async def read_all(opened, size, offset=0):
    """Read from `offset` to the end in reads of `size`, as cat does."""
    pieces = []
    while True:
        data = await opened.read(offset, size)
        if not data:
            return b"".join(pieces)
        pieces.append(data)
        offset += len(data)
