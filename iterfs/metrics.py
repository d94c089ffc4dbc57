"""`metrics/`: the views whose name ends in `.prom`, in Prometheus's text format.

node_exporter's textfile collector reads every `*.prom` file of the directory it
is pointed at: pointed at `metrics/`, it scrapes iterfs, and each scrape walks
the kernel's objects then. A metric view is a single file whatever its target:
open() attaches its program with no parameter (every object of the target), as
a single-file view's. The built-in ones (progs/metrics/) print totals the
kernel counts; a drop-in named `<name>.prom.bpf.c` is served here too, by the
same rules as any view of one's own.

The text format wants each metric's samples together, and one call of an
iterator program prints 32 KiB at most (the seq_file buffer). So a metric with
a sample per object and more than one metric (slab.prom: three per cache) may
hold several programs of one target, one metric each, printing as their walks
go: its file is their walks, one after another, in the order of the programs'
names (Walks). Each walk is its own moment: an object created or gone between
them is in some metrics and not in the others.
"""

import collections

from .bpf import Opening
from .interfaces import Link, Served, Stream

DIRECTORY = "metrics"
SUFFIX = ".prom"


def is_metric(name):
    """Whether the view called `name` is served in metrics/."""
    return name.endswith(SUFFIX) and len(name) > len(SUFFIX)


def path(name):
    """Where the view called `name` is in the mount."""
    return f"{DIRECTORY}/{name}" if is_metric(name) else name


class MetricsDirectory(Served):
    """`metrics/` itself, always there, empty where no metric is served."""

    name = DIRECTORY
    target = None
    per_process = per_map = private = root_only = is_metric = False
    is_directory = True

    def attach(self, **parameters):
        raise IsADirectoryError(DIRECTORY)


class Walks(Link):
    """The links of a metric's programs, in order: each open() a walk of each,
    created at once (as the reader, in its namespaces: credentials.Reader.walk)
    and read one after the other."""

    def __init__(self, links):
        self.links = list(links)
        self.fd = self.links[0].fd

    def open(self, opening=Opening()):
        streams = []
        try:
            for link in self.links:
                streams.append(link.open(opening))
        except BaseException:
            close_all(streams)
            raise
        return WalksStream(streams)

    def close(self):
        close_all(self.links)


class WalksStream(Stream):
    """The walks of Walks.open(), read as one: each to its end, then the next."""

    def __init__(self, streams):
        self._streams = collections.deque(streams)

    def read(self, size):
        while self._streams:
            data = self._streams[0].read(size)
            if data:
                return data
            self._streams.popleft().close()
        return b""

    def fill(self, size):
        parts = []
        while size and self._streams:
            data = self._streams[0].fill(size)
            parts.append(data)
            size -= len(data)
            if size:        # fewer than asked: that walk is over
                self._streams.popleft().close()
        return b"".join(parts)

    def close(self):
        streams, self._streams = self._streams, collections.deque()
        close_all(streams)


def close_all(closables):
    """Close each, all of them even when one raises (the first error is raised)."""
    error = None
    for closable in closables:
        try:
            closable.close()
        except BaseException as raised:
            error = error or raised
    if error is not None:
        raise error
