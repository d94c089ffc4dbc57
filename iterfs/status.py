"""`.status`: the file iterfs writes itself, saying what became of each program
file found (views.ViewTable's scan), which walks the kernel holds up, and how
the last reload went (what `iterfs --reload` waits on).

It is served as a view is: attaching gives a link, each open() of which reads
the text as it was at open from its start, like an iterator's fresh walk."""

import dataclasses
import io
import re

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


@dataclasses.dataclass
class Reloads:
    """The rescans asked for with SIGHUP: the number of the last one started,
    and whether it is `running`, `done` or `failed` (with why). They run one at
    a time, in order, so every rescan numbered below it is over."""
    number: int = 0
    state: str = "done"
    reason: str = ""

    def start(self):
        self.number += 1
        self.state, self.reason = "running", ""

    def finish(self, failure=""):
        self.state, self.reason = ("failed", failure) if failure else ("done", "")

    def line(self):
        """`.status`'s last line; none before the first reload."""
        if not self.number:
            return ""
        reason = f": {escape(self.reason)}" if self.state == "failed" else ""
        return f"reload {self.number} {self.state}{reason}\n"


RELOAD_LINE = re.compile(r"reload (\d+) (running|done|failed)(?:: (.*))?")


def parse_reloads(text):
    """The Reloads that `.status`'s `text` ends with (a view's line cannot
    match: its second column is a state, not a number)."""
    last = text.rstrip("\n").rpartition("\n")[2]
    match = RELOAD_LINE.fullmatch(last)
    if not match:
        return Reloads()
    return Reloads(int(match.group(1)), match.group(2), match.group(3) or "")


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

    def __init__(self, entries, reloads=None):
        """`entries`: a function giving the Entries of the views now served;
        `reloads`: the daemon's Reloads, changed in place as they run."""
        self._entries = entries
        self._reloads = reloads or Reloads()

    def attach(self, stuck=None):
        """stuck: {view name: (walks, seconds)} that made no progress lately."""
        return TextLink(render(self._entries(), stuck or {}, self._reloads))


def render(entries, stuck, reloads=None):
    """The text: a header, a line per entry in a column each for its name
    (its path in the mount: metrics/<name> for a metric), state and target,
    then its source; under it why it is not served, and the
    walks of a view served that made no progress lately (`stuck`). Last, once
    there has been a reload, how the latest one stands (`reloads`)."""
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
    return "".join(line + "\n" for line in lines) + (reloads.line() if reloads else "")
