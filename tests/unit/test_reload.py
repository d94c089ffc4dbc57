"""`iterfs --reload` (iterfs/reload.py) and the line of `.status` it waits on.

The daemon here is a stand-in: a child process that answers SIGHUP by writing
`.status` as the daemon does, in a directory of the test's. The real daemon,
under the unit's ExecReload, is in tests/test_service.py and tests/service/."""

import subprocess
import sys
import time

import pytest

from iterfs import reload, status

RESCAN_SECONDS = 0.3

# Writes .status (atomically, as each open of the real one reads one text) with
# reload 1 done, then on SIGHUP: reload 2 running, and after RESCAN_SECONDS,
# reload 2 as argv[2] says (done, or failed), or exits, or ignores the signal.
STAND_IN = """
import os, signal, sys, time
directory, outcome, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
header = "view state target source\\ntcp  serving tcp /p/tcp.bpf.o\\n"
def write(line):
    with open(directory + "/.status.new", "w") as f:
        f.write(header + line)
    os.replace(directory + "/.status.new", directory + "/.status")
hangups = []
signal.signal(signal.SIGHUP, signal.SIG_IGN if outcome == "ignore"
              else lambda *_: hangups.append(1))
write("reload 1 done\\n")
print("ready", flush=True)
while not hangups:
    time.sleep(0.01)
if outcome == "exit":
    sys.exit(0)
write("reload 2 running\\n")
time.sleep(seconds)
write("reload 2 done\\n" if outcome == "done" else "reload 2 failed: OSError: no BTF\\n")
time.sleep(60)
"""


@pytest.fixture
def stand_in(tmp_path):
    started = []

    def start(outcome):
        process = subprocess.Popen(
            [sys.executable, "-c", STAND_IN, str(tmp_path), outcome, str(RESCAN_SECONDS)],
            stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline() == "ready\n"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_returns_once_the_rescan_after_the_signal_is_done(stand_in, tmp_path):
    """.status says reload 1 done from the start: that one is not the answer."""
    daemon = stand_in("done")
    began = time.monotonic()
    assert reload.reload(daemon.pid, tmp_path, timeout=10) == 2
    assert time.monotonic() - began >= RESCAN_SECONDS
    assert status.parse_reloads((tmp_path / ".status").read_text()).state == "done"


def test_a_failed_rescan_is_one_line_and_exit_1(stand_in, tmp_path, capsys):
    daemon = stand_in("fail")
    assert reload.main(daemon.pid, tmp_path, timeout=10) == 1
    assert capsys.readouterr().err == ("iterfs: reload 2 failed, the views served are as "
                                       "they were: OSError: no BTF\n")


def test_no_answer_within_the_timeout(stand_in, tmp_path):
    daemon = stand_in("ignore")
    began = time.monotonic()
    with pytest.raises(reload.ReloadError) as failed:
        reload.reload(daemon.pid, tmp_path, timeout=0.5)
    assert 0.5 <= time.monotonic() - began < 5
    assert str(failed.value) == "no reload was done within 0.5 s (the last: reload 1 done)"


def test_the_daemon_exiting_ends_the_wait(stand_in, tmp_path):
    daemon = stand_in("exit")
    with pytest.raises(reload.ReloadError) as failed:
        reload.reload(daemon.pid, tmp_path, timeout=10)
    assert str(failed.value) == f"process {daemon.pid} exited during the reload"


def test_no_such_process(tmp_path):
    (tmp_path / ".status").write_text("view state target source\n")
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    with pytest.raises(reload.ReloadError) as failed:
        reload.reload(gone.pid, tmp_path, timeout=1)
    assert str(failed.value) == f"no process {gone.pid} to reload"


def test_no_status_file(tmp_path):
    with pytest.raises(reload.ReloadError) as failed:
        reload.reload(1, tmp_path / "nothing", timeout=1)
    assert str(failed.value) == (f"cannot read {tmp_path / 'nothing' / '.status'}: "
                                 "No such file or directory")


def test_the_reload_line_ends_status_once_there_was_one():
    entries = [status.Entry("reload", "/etc/iterfs/progs.d/reload.bpf.o", target="task")]
    reloads = status.Reloads()
    assert status.render(entries, {}, reloads).splitlines()[-1].startswith("reload ")
    # A view named reload is not the line: no reload yet.
    assert status.parse_reloads(status.render(entries, {}, reloads)) == status.Reloads()
    reloads.start()
    text = status.render(entries, {}, reloads)
    assert text.splitlines()[-1] == "reload 1 running"
    assert status.parse_reloads(text) == status.Reloads(1, "running")
    reloads.finish("OSError: line\nbreak")
    text = status.render(entries, {}, reloads)
    assert text.splitlines()[-1] == r"reload 1 failed: OSError: line\012break"
    assert status.parse_reloads(text) == status.Reloads(1, "failed", r"OSError: line\012break")
    reloads.start()
    reloads.finish()
    assert status.render(entries, {}, reloads).splitlines()[-1] == "reload 2 done"
