"""Metrics: what a whole scrape of metrics/ costs, against node_exporter's own
collectors that find the same numbers in /proc (and in sock_diag), with 30,000
TCP sockets and 10,000 threads held.

    iterfs files         every file of MNT/metrics read to EOF, one after the
                         other, as node_exporter's textfile collector reads them
    textfile scrape      an HTTP GET of /metrics from node_exporter with only
                         --collector.textfile, its directory MNT/metrics
    /proc scrape         the same from node_exporter with only the collectors
                         that give those numbers without iterfs:
                           tcpstat    TCP sockets by state (tcp.prom); in
                                      node_exporter 1.5.0 a sock_diag netlink
                                      dump of every socket, not /proc/net/tcp*
                           processes  threads by state and processes
                                      (tasks.prom): every /proc/<pid>/stat and
                                      /proc/<pid>/task/<tid>/stat
                           sockstat   UDP and all sockets in use, as totals
                                      (/proc/net/sockstat, sockstat6): the
                                      nearest to udp.prom and unix.prom
                           filefd     file handles allocated
                                      (/proc/sys/fs/file-nr): a kernel counter,
                                      not the per-process fds files.prom counts
                           slabinfo   every slab cache's objects, sizes and
                                      slabs (/proc/slabinfo): slab.prom's
                         netstat is left out: its counters (/proc/net/snmp,
                         netstat) are no number metrics/ gives.
    empty scrape         node_exporter with no collector at all: what an HTTP
                         scrape of node_exporter costs before any collector

in interleaved rounds. Target: textfile scrape / /proc scrape <= 0.5. The /proc
collectors make and parse text (or a netlink message) for every thread and
every socket, where each metric program only counts in the kernel and prints
its totals once; the same walks, through FUSE and node_exporter, should cost
at most half. The limit (reference) is the empty scrape plus the files read
directly, against the /proc scrape: a textfile scrape whose collector cost
nothing beyond reading the files.

`python bench/metrics.py` runs this case alone (bench/run.py --cases metrics).
"""

import contextlib
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

from harness import Result, median_times, read_all
from load import stop_process

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
SOCKETS = 30000
THREADS = 10000
ROUNDS = 15
TARGET = 0.5
PROC_COLLECTORS = ("tcpstat", "processes", "sockstat", "filefd", "slabinfo")
START_TIMEOUT = 30


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(url):
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


@contextlib.contextmanager
def node_exporter(*collector_arguments):
    """node_exporter on 127.0.0.1 with only `collector_arguments`: its
    /metrics URL. Stopped (SIGTERM, then SIGKILL) on the way out."""
    if not os.path.exists(NODE_EXPORTER):
        raise RuntimeError(f"{NODE_EXPORTER} is missing: make setup installs it")
    url = f"http://127.0.0.1:{free_port()}/metrics"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [NODE_EXPORTER, "--collector.disable-defaults", *collector_arguments,
             f"--web.listen-address={url.split('/')[2]}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    scrape(url)
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(f"node_exporter did not answer: "
                                           f"{log.read().decode()[-2000:]}") from None
                    time.sleep(0.1)
            yield url
        finally:
            stop_process(process)


def sample(text, name, labels=""):
    """The sum of the samples of metric `name` in an exposition text whose
    labels begin with `labels` (e.g. 'family="tcp6"')."""
    return sum(float(line.rsplit(None, 1)[1]) for line in text.splitlines()
               if line.startswith(f"{name}{{{labels}") or
               (not labels and line.startswith(name + " ")))


def metrics(mountpoint, sockets=SOCKETS, threads=THREADS, rounds=ROUNDS):
    directory = mountpoint / "metrics"
    files = sorted(directory.iterdir())
    if not files:
        raise RuntimeError(f"{directory} is empty")

    def read_files():
        for path in files:
            read_all(path)

    direct = b"".join(path.read_bytes() for path in files).decode()
    counted = {"sockets": sample(direct, "iterfs_sockets", 'family="tcp6"'),
               "threads": sample(direct, "iterfs_threads")}
    if counted["sockets"] < sockets or counted["threads"] < threads:
        raise RuntimeError(f"metrics/ counts fewer than the load held: {counted}")
    with node_exporter("--collector.textfile",
                       f"--collector.textfile.directory={directory}") as textfile, \
            node_exporter(*(f"--collector.{name}" for name in PROC_COLLECTORS)) as proc, \
            node_exporter() as empty:
        scraped = scrape(textfile).decode()
        if "node_textfile_scrape_error 0" not in scraped or "iterfs_sockets{" not in scraped:
            raise RuntimeError(f"node_exporter did not scrape metrics/: {scraped[-2000:]}")
        by_proc = scrape(proc).decode()
        proc_threads = sample(by_proc, "node_processes_threads")
        proc_tcp = sample(by_proc, "node_tcp_connection_states")
        if proc_threads < threads or proc_tcp < sockets:
            raise RuntimeError(f"node_exporter's collectors count fewer than the load held: "
                               f"{proc_threads} threads, {proc_tcp} TCP sockets")
        # The measured first: the chart draws the first figure as iterfs's.
        medians = median_times({"textfile scrape": lambda: scrape(textfile),
                                "/proc scrape": lambda: scrape(proc),
                                "iterfs files": read_files,
                                "empty scrape": lambda: scrape(empty)}, rounds)
    return Result(
        case="metrics",
        title=f"a scrape of metrics/ ({len(files)} files), {counted['sockets']:,.0f} TCP "
              f"sockets, {counted['threads']:,.0f} threads",
        figures=medians, unit="s", metric="textfile scrape / /proc scrape",
        value=medians["textfile scrape"] / medians["/proc scrape"], target=TARGET,
        reference=(medians["empty scrape"] + medians["iterfs files"]) / medians["/proc scrape"],
        reference_text="empty scrape + the files read directly",
        details={"rounds": rounds, "files": [path.name for path in files],
                 "proc_collectors": list(PROC_COLLECTORS),
                 "iterfs_files_to_proc_scrape":
                     medians["iterfs files"] / medians["/proc scrape"],
                 "textfile_bytes": len(scraped), "proc_bytes": len(by_proc)})


if __name__ == "__main__":
    import run
    run.main(["--cases", "metrics"])
