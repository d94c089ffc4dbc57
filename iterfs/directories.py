"""Program directories: which file in them becomes which view.

In each directory, `<name>.bpf.c` (compiled by iterfs) and `<name>.bpf.o` (loaded
as it is) become the view `<name>`. Directories are taken in the order given:
the built-in views, then /etc/iterfs/progs.d, then each --progs. The first file
found for a name decides that view, whether or not it then compiles and loads;
within one directory a source comes before an object of the same name. Every
later file of that name is refused, saying which file took the name. A name
ending in `.prom` is a metric, served in metrics/ (metrics.py); `metrics` itself
is that directory's, no program's.

A directory is checked here (trust.check_trusted); a program file is checked
where it is opened, once, for its content to be compiled or loaded.
"""

import dataclasses
import logging
import os
import re

from . import metrics
from .trust import check_trusted

log = logging.getLogger("iterfs.views")

SOURCE_SUFFIX = ".bpf.c"
OBJECT_SUFFIX = ".bpf.o"
# Names that need no quoting in a shell and are no option (no leading '-'); a
# leading dot is kept for iterfs's own files (.status), so no program takes them.
VIEW_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}\Z")


@dataclasses.dataclass(frozen=True)
class ProgramDirectory:
    path: str
    optional: bool = False      # absent is normal (/etc/iterfs/progs.d)
    built_in: bool = False      # --objects: iterfs's own views, not drop-ins


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A file that would become the view `name`, and why it may not, if it may not."""
    name: str
    path: str
    refused: str = None
    built_in: bool = False

    @property
    def is_source(self):
        return self.path.endswith(SOURCE_SUFFIX)


def view_name(file_name):
    """The view a file in a program directory would be, or None if it is no program."""
    for suffix in (SOURCE_SUFFIX, OBJECT_SUFFIX):
        if file_name.endswith(suffix) and len(file_name) > len(suffix):
            return file_name[:-len(suffix)]
    return None


def find_programs(directories):
    """Every program file in `directories`, in the order that decides who gets a
    name; each one that may not become a view says why in `refused`."""
    candidates, taken = [], {}
    for directory in directories:
        for candidate in _directory_programs(directory):
            valid = VIEW_NAME.match(candidate.name)
            if candidate.refused is None and not valid:
                candidate = _refuse(candidate, "a view's name is letters, digits, '_', '-' "
                                               "and '.', and starts with no '-' or '.'")
            elif candidate.refused is None and candidate.name == metrics.DIRECTORY:
                candidate = _refuse(candidate, f"{metrics.DIRECTORY} is the directory of "
                                               "the metric views, no view's name")
            elif candidate.refused is None and candidate.name in taken:
                candidate = _refuse(candidate, f"name taken by {taken[candidate.name]}")
            if valid and candidate.name != metrics.DIRECTORY:
                taken.setdefault(candidate.name, candidate.path)
            candidates.append(candidate)
    return candidates


def _refuse(candidate, why):
    return dataclasses.replace(candidate, refused=why)


def _directory_programs(directory):
    """The directory's program files: sources first for each name, names sorted."""
    path = directory.path
    try:
        file_names = os.listdir(path)
    except FileNotFoundError:
        (log.debug if directory.optional else log.warning)("program directory %s is absent",
                                                           path)
        return []
    refused = _directory_refusal(path)
    found = sorted((view_name(f), not f.endswith(SOURCE_SUFFIX), f) for f in file_names
                   if view_name(f) is not None)
    return [Candidate(name, os.path.join(path, file_name), refused, directory.built_in)
            for name, _, file_name in found]


def _directory_refusal(path):
    try:
        check_trusted(path)
    except OSError as error:
        log.error("program directory %s refused: %s", path, error.strerror)
        return f"directory refused: {error.strerror}"
    return None
