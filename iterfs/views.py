"""Views: the files and directories at the mount's root, one per compiled program.

A view is derived from what was built from progs/: `<name>.bpf.o` holding one
`iter/<target>` program becomes the view `<name>`. Task targets are per-process
directories, every other target a single file.
"""

import logging
import os
from dataclasses import dataclass

from . import bpf

log = logging.getLogger("iterfs.views")

PER_PROCESS_TARGETS = frozenset({"task", "task_file", "task_vma"})
# What /proc shows only to who may ptrace-read the process: its fds and its maps.
PRIVATE_TARGETS = frozenset({"task_file", "task_vma"})
OBJECT_SUFFIX = ".bpf.o"


@dataclass
class View:
    name: str
    program: bpf.Program

    @property
    def target(self):
        return self.program.iterator_target

    @property
    def per_process(self):
        return self.target in PER_PROCESS_TARGETS

    @property
    def private(self):
        return self.target in PRIVATE_TARGETS

    def attach(self, *, pid=None, tid=None):
        return self.program.attach_iterator(pid=pid, tid=tid)


class ViewSet:
    """The views loaded from one directory of objects; closing it unloads them."""

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        self.views = []
        self.skipped = {}
        self._objects = []
        for file_name in sorted(os.listdir(self.directory)):
            if file_name.endswith(OBJECT_SUFFIX):
                self._load(file_name[:-len(OBJECT_SUFFIX)],
                           os.path.join(self.directory, file_name))

    def _load(self, name, path):
        try:
            obj = bpf.load(path)
        except OSError as error:
            self.skipped[name] = error
            log.error("view %s skipped: %s", name, error)
            return
        programs = [p for p in obj.programs if p.iterator_target]
        if len(programs) != 1:
            obj.close()
            self.skipped[name] = f"{path} has {len(programs)} iterator programs, not one"
            log.error("view %s skipped: %s", name, self.skipped[name])
            return
        self._objects.append(obj)
        self.views.append(View(name, programs[0]))
        log.debug("view %s: program %s, target %s", name, programs[0].name,
                  programs[0].iterator_target)

    def close(self):
        for obj in self._objects:
            obj.close()
        self._objects = []
        self.views = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
