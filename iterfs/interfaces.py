"""What the filesystem serves, as it uses it: a view (a program's, or a file
iterfs writes itself) gives links, a link gives walks. Each is a
typing.Protocol: bpf's Link and IteratorStream have the shape without
knowing of it (the binding knows nothing of the filesystem); iterfs's own
classes name the protocol they follow."""

from typing import Protocol


class Stream(Protocol):
    """One walk from its start (bpf.IteratorStream, status.TextStream)."""

    def read(self, size: int) -> bytes:
        """The next bytes, at most `size`, as the kernel gives them; b"" at the end."""

    def fill(self, size: int) -> bytes:
        """`size` bytes, fewer only at the end."""

    def close(self) -> None:
        ...


class Link(Protocol):
    """What attaching a view gives (bpf.Link, status.TextLink): each open() is a
    fresh walk, told what the file's open() saw (bpf.Opening)."""

    fd: int

    def open(self, opening=...) -> Stream:
        ...

    def close(self) -> None:
        ...


class Served(Protocol):
    """A view at the mount's root or in metrics/ (views.View, status.StatusFile,
    metrics.MetricsDirectory)."""

    name: str
    target: str | None          # the iterator target; None for a file iterfs writes
    per_process: bool           # a directory of processes: self, all, <pid>
    per_map: bool               # a directory of the maps its program can walk
    is_directory: bool
    private: bool               # what /proc shows only to who may ptrace-read
    root_only: bool             # mode 0400
    is_metric: bool             # served in metrics/ (metrics.py), not at the root

    def attach(self, **parameters) -> Link:
        """A link for one open(): `pid`, `tid` or `map_id` for a directory's entry."""
