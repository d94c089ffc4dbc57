"""`metrics/`: the views whose name ends in `.prom`, in Prometheus's text format.

node_exporter's textfile collector reads every `*.prom` file of the directory it
is pointed at: pointed at `metrics/`, it scrapes iterfs, and each scrape walks
the kernel's objects then. A metric view is a single file whatever its target:
open() attaches its program with no parameter (every object of the target), as
a single-file view's. The built-in ones (progs/metrics/) print totals the
kernel counts; a drop-in named `<name>.prom.bpf.c` is served here too, by the
same rules as any view of one's own.
"""

from .interfaces import Served

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
