"""`.status`: the file iterfs writes itself, saying what became of each program
file found (views.ViewTable's scan) and which walks the kernel holds up.

It is served as a view is: attaching gives a link, each open() of which reads
the text as it was at open from its start, like an iterator's fresh walk."""

import dataclasses
import io

from .escape import escape
from .metrics import path
from .interfaces import Link, Served, Stream


@dataclasses.dataclass
class Entry:
    """One program file's line in .status. Its state is one of
    serving: loaded and served;
    unsupported: the kernel lacks the target or refuses any program for it;
    rejected: the kernel takes programs for the target but not this one;
    skipped: never reached the kernel (a compile error, an untrusted file, a
    name taken)."""
    name: str
    source: str
    state: str = "serving"
    target: str = None
    reason: str = ""
    details: list = dataclasses.field(default_factory=list)

    def skip(self, reason, details=(), state="skipped"):
        self.state, self.reason, self.details = state, reason, list(details)


class TextLink(Link):
    """What attaching gives for a file iterfs writes itself."""

    fd = -1

    def __init__(self, text):
        self._data = text.encode()

    def open(self, opening=None):
        return TextStream(self._data)

    def close(self):
        pass


class TextStream(io.BytesIO, Stream):
    """A walk of the text."""

    def fill(self, size):
        return self.read(size)


class StatusFile(Served):
    """`.status`, served as a single-file view."""

    name = ".status"
    target = None
    per_process = per_map = is_directory = private = root_only = is_metric = False

    def __init__(self, entries):
        """`entries`: a function giving the Entries of the views now served."""
        self._entries = entries

    def attach(self, stuck=None):
        """stuck: {view name: (walks, seconds)} that made no progress lately."""
        return TextLink(render(self._entries(), stuck or {}))


def render(entries, stuck):
    """The text: a header, a line per entry in a column each for its name
    (its path in the mount: metrics/<name> for a metric), state and target,
    then its source; under it why it is not served, and the
    walks of a view served that made no progress lately (`stuck`)."""
    rows = [("view", "state", "target", "source")]
    rows += [(escape(path(e.name), " "), e.state, e.target or "-", escape(e.source)) for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for row, entry in zip(rows, [None, *entries]):
        lines.append(" ".join(f"{cell:<{width}}" for cell, width in zip(row, widths))
                     + " " + row[3])
        if entry is not None and entry.reason:
            lines.append(f"  reason: {escape(entry.reason)}")
            lines += [f"  | {escape(line)}" for line in entry.details]
        if entry is not None and entry.state == "serving" and entry.name in stuck:
            walks, seconds = stuck[entry.name]
            lines.append(f"  stuck: {walks} {'walk' if walks == 1 else 'walks'} "
                         f"waiting on the kernel, the longest for {seconds:.0f} s")
    return "".join(line + "\n" for line in lines)
