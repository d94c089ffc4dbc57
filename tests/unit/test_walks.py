"""metrics.Walks: a metric of several programs, its walks read one after another
as one stream, over fake walks that keep the kernel stream's contract."""

import errno

import pytest

from fakes import FakeLink, FakeStream, content

try:
    from iterfs import metrics
    WITHOUT_LIBBPF = ""
except OSError as error:        # metrics loads libbpf.so.1 (bpf.py)
    metrics = None
    WITHOUT_LIBBPF = f"iterfs.metrics needs libbpf: {error}"

pytestmark = pytest.mark.skipif(metrics is None, reason=WITHOUT_LIBBPF)


@pytest.fixture
def violations():
    """What the fake streams saw misused: nothing, checked at the end."""
    seen = []
    yield seen
    assert seen == [], "a stream was misused"


class Link(FakeLink):
    """A program's link: each open() a fresh FakeStream over `data`."""

    def __init__(self, data, violations, fail_open=False, fail_close=False, **stream):
        super().__init__()
        self.data, self.violations, self.stream = data, violations, stream
        self.fail_open, self.fail_close = fail_open, fail_close
        self.opened = []

    def open(self, opening=None):
        if self.fail_open:
            raise OSError(errno.EMFILE, "create iterator: EMFILE")
        stream = FakeStream(self.data, self.violations, **self.stream)
        self.opened.append(stream)
        return stream

    def close(self):
        super().close()
        if self.fail_close:
            raise OSError(errno.EBADF, "close: EBADF")


def walks(violations, *sizes, **stream):
    datas = [content(size, seed) for seed, size in enumerate(sizes)]
    return metrics.Walks([Link(data, violations, **stream) for data in datas]), b"".join(datas)


@pytest.mark.parametrize("chunks", [(32 * 1024,), (1000, 7, 4096)])
def test_reads_give_each_walk_to_its_end_then_the_next(violations, chunks):
    link, whole = walks(violations, 70000, 0, 5, 40000, chunks=chunks)
    stream = link.open()
    read = bytearray()
    while data := stream.read(16384):
        assert len(data) <= 16384
        read += data
    assert bytes(read) == whole
    assert stream.read(100) == b""
    assert all(s.closed for l in link.links for s in l.opened)


def test_fill_crosses_walks(violations):
    link, whole = walks(violations, 3000, 0, 3000, 3000, chunks=(1000, 333))
    stream = link.open()
    assert stream.fill(2500) == whole[:2500]
    assert stream.fill(4000) == whole[2500:6500]     # across an empty walk
    assert stream.fill(10000) == whole[6500:]         # fewer only at the end
    assert stream.fill(10) == b""


def test_each_walk_closes_as_it_ends_and_close_closes_the_rest(violations):
    link, whole = walks(violations, 100, 100, 100)
    stream = link.open()
    assert stream.fill(150) == whole[:150]
    first, second, third = (l.opened[0] for l in link.links)
    assert first.closed and not second.closed and not third.closed
    stream.close()
    assert second.closed and third.closed
    stream.close()                  # again: nothing left
    assert stream.read(10) == b""


def test_an_error_comes_after_the_walks_before_it(violations):
    data = content(500)
    link = metrics.Walks([Link(data, violations),
                          Link(data, violations, fail_at=100, chunks=(100,))])
    stream = link.open()
    assert stream.fill(600) == data + data[:100]
    with pytest.raises(OSError) as raised:
        stream.read(100)
    assert raised.value.errno == errno.EIO


def test_a_walk_that_cannot_open_closes_those_opened(violations):
    first, second = Link(b"x", violations), Link(b"y", violations, fail_open=True)
    link = metrics.Walks([first, second])
    with pytest.raises(OSError) as raised:
        link.open()
    assert raised.value.errno == errno.EMFILE
    assert first.opened[0].closed


def test_close_closes_every_link_even_when_one_fails(violations):
    links = [Link(b"", violations), Link(b"", violations, fail_close=True), Link(b"", violations)]
    with pytest.raises(OSError):
        metrics.Walks(links).close()
    assert [l.closes for l in links] == [1, 1, 1]
