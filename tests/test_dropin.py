"""Views of one's own: program files dropped into a directory, compiled, loaded,
reloaded on SIGHUP, refused when untrusted, and what .status says of each."""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cffi
import pytest

import iterfs.reload
from iterfs.compiler import bpf_flags

from conftest import (OBJECTS, ROOT, ROOT_ENTRIES, STATUS, iterator_links, kernel_refusal,
                      needs_target, parse_status, running_daemon)

EXAMPLES = ROOT / "examples"
SYSTEM_PROGRAMS = Path("/etc/iterfs/progs.d")
RELOAD_TIMEOUT = 60

PREAMBLE = """// SPDX-License-Identifier: GPL-2.0
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";
"""


def threads_program(line_format):
    """A task view: one line per thread, `line_format` given the tid and comm."""
    return PREAMBLE + f"""
SEC("iter/task")
int threads(struct bpf_iter__task *ctx)
{{
	struct task_struct *task = ctx->task;

	if (!task)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "{line_format}\\n", task->pid, task->comm);
	return 0;
}}
"""


def symbols_program(prefix):
    """A file view several MiB long: every kernel symbol's name after `prefix`."""
    return PREAMBLE + f"""
SEC("iter/ksym")
int symbols(struct bpf_iter__ksym *ctx)
{{
	struct kallsym_iter *symbol = ctx->ksym;

	if (!symbol)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "{prefix} %s\\n", symbol->name);
	return 0;
}}
"""


def hello_program(function, text):
    """A file view that says `text` once (before the first BPF map)."""
    return PREAMBLE + f"""
SEC("iter/bpf_map")
int {function}(struct bpf_iter__bpf_map *ctx)
{{
	if (ctx->map && ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(ctx->meta->seq, "{text}\\n");
	return 0;
}}
"""


HASH_DUMP = PREAMBLE + """
SEC("iter/bpf_map_elem")
int hash_dump(struct bpf_iter__bpf_map_elem *ctx)
{
	__u32 *key = ctx->key;
	__u64 *value = ctx->value;

	if (!key || !value)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%u %llu\\n", *key, *value);
	return 0;
}
"""

SOCKMAP_KEYS = PREAMBLE + """
SEC("iter/sockmap")
int sockmap_keys(struct bpf_iter__sockmap *ctx)
{
	__u32 *key = ctx->key;

	if (!key || !ctx->sk)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%u\\n", *key);
	return 0;
}
"""

# ctx->task may be NULL and is not checked: the verifier refuses it.
VERIFIER_REJECT = PREAMBLE + """
SEC("iter/task")
int rejected(struct bpf_iter__task *ctx)
{
	BPF_SEQ_PRINTF(ctx->meta->seq, "%d\\n", ctx->task->pid);
	return 0;
}
"""

# Compiles: its context type is its own. No kernel has this target.
TARGET_MISSING = PREAMBLE + """
struct bpf_iter__does_not_exist {
	struct bpf_iter_meta *meta;
};

SEC("iter/does_not_exist")
int missing(struct bpf_iter__does_not_exist *ctx)
{
	BPF_SEQ_PRINTF(ctx->meta->seq, "never\\n");
	return 0;
}
"""

COMPILE_ERROR = PREAMBLE + """
SEC("iter/task")
int broken(struct bpf_iter__task *ctx)
{
	return undeclared_variable;
}
"""


def write(directory, name, text, mode=0o644):
    path = Path(directory) / name
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def programs(tmp_path):
    """An empty program directory, root's and 0755 (tmp_path is 0700)."""
    directory = tmp_path / "programs"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    return directory


def dropin_daemon(tmp_path, *directories):
    """A mount of the built-in views and those in `directories`, with a
    compile cache of the test's own."""
    arguments = [a for d in directories for a in ("--progs", str(d))]
    return running_daemon(tmp_path / "mnt", *arguments, "--cache", str(tmp_path / "cache"))


def reload(daemon):
    """What systemctl reload runs (iterfs --reload): SIGHUP, and return once the
    daemon's .status says the rescan is done: by then the kernel has forgotten
    what it cached of the views that changed."""
    done = daemon.log().count("reloaded:")
    try:
        number = iterfs.reload.reload(daemon.pid, daemon.mountpoint, timeout=RELOAD_TIMEOUT)
    except iterfs.reload.ReloadError as error:
        raise AssertionError(f"{error}\n{daemon.log()}") from None
    assert (daemon.mountpoint / STATUS).read_text().endswith(f"\nreload {number} done\n")
    assert daemon.log().count("reloaded:") == done + 1, daemon.log()


def status(daemon):
    return parse_status((daemon.mountpoint / STATUS).read_text())


def thread_names(pid):
    """{tid: comm} of a process, from /proc."""
    return {int(tid): Path(f"/proc/{pid}/task/{tid}/comm").read_text().rstrip("\n")
            for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.fixture
def threaded_process():
    """A process with three threads of its own names."""
    script = ("import threading, sys, ctypes\n"
              "libc = ctypes.CDLL(None)\n"
              "def run(name):\n"
              "    libc.prctl(15, name.encode())\n"      # PR_SET_NAME
              "    threading.Event().wait()\n"
              "for name in ('worker one', 'worker-2'):\n"
              "    threading.Thread(target=run, args=(name,), daemon=True).start()\n"
              "print('ready', flush=True)\n"
              "sys.stdin.read()\n")
    process = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while len(thread_names(process.pid)) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        yield process
    finally:
        process.kill()
        process.wait()


def test_view_appears_changes_and_goes_at_reload(tmp_path, programs, threaded_process):
    pid = threaded_process.pid
    with dropin_daemon(tmp_path, programs) as daemon:
        m = daemon.mountpoint
        assert sorted(os.listdir(m)) == ROOT_ENTRIES
        with pytest.raises(FileNotFoundError):
            os.stat(m / "threads")
        tcp6_inode = os.stat(m / "tcp6").st_ino

        write(programs, "threads.bpf.c", threads_program("%d %s"))
        reload(daemon)
        assert sorted(os.listdir(m)) == sorted(ROOT_ENTRIES + ["threads"])
        assert "self" in os.listdir(m / "threads") and str(pid) in os.listdir(m / "threads")
        lines = (m / "threads" / str(pid)).read_text().splitlines()
        assert {int(tid): comm for tid, comm in (line.split(" ", 1) for line in lines)} \
            == thread_names(pid)
        first_inode = os.stat(m / "threads").st_ino
        assert status(daemon)["threads"][:3] == ("serving", "task",
                                                 str(programs / "threads.bpf.c"))

        write(programs, "threads.bpf.c", threads_program("tid=%d comm=%s"))
        reload(daemon)
        lines = (m / "threads" / str(pid)).read_text().splitlines()
        assert sorted(lines) == sorted(f"tid={tid} comm={comm}"
                                       for tid, comm in thread_names(pid).items())
        # A new program, a new number: nothing the kernel cached of the old one holds.
        assert os.stat(m / "threads").st_ino not in (first_inode, tcp6_inode)
        assert os.stat(m / "tcp6").st_ino == tcp6_inode     # unchanged: kept

        (programs / "threads.bpf.c").unlink()
        reload(daemon)
        for path in (m / "threads", m / "threads" / str(pid)):
            with pytest.raises(FileNotFoundError):
                os.stat(path)
            with pytest.raises(FileNotFoundError):
                open(path)
        assert sorted(os.listdir(m)) == ROOT_ENTRIES
        assert "threads" not in status(daemon)
        assert "views: added threads" in daemon.log()
        assert "views: replaced threads" in daemon.log()
        assert "views: removed threads" in daemon.log()


def loaded_programs(daemon):
    """Ids of the programs the daemon holds loaded: its bpf-prog fds (a link's fd
    names its program too, and an open file holds a link)."""
    ids = set()
    for fd in os.listdir(f"/proc/{daemon.pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            if os.readlink(f"/proc/{daemon.pid}/fd/{fd}") == "anon_inode:bpf-prog":
                for line in Path(f"/proc/{daemon.pid}/fdinfo/{fd}").read_text().splitlines():
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
    return ids


def prog_id_of(daemon, function):
    """The id of the program the daemon holds loaded whose function is `function`."""
    out = subprocess.run(["bpftool", "-j", "prog", "show"], check=True,
                         capture_output=True, text=True).stdout
    ids = [p["id"] for p in json.loads(out)
           if p.get("name") == function and p["id"] in loaded_programs(daemon)]
    assert len(ids) == 1, ids
    return ids[0]


def program_exists(prog_id):
    return subprocess.run(["bpftool", "prog", "show", "id", str(prog_id)],
                          capture_output=True).returncode == 0


def test_open_file_keeps_reading_the_old_program(tmp_path, programs):
    write(programs, "symbols.bpf.c", symbols_program("old"))
    with dropin_daemon(tmp_path, programs) as daemon:
        old_id = prog_id_of(daemon, "symbols")
        fd = os.open(daemon.mountpoint / "symbols", os.O_RDONLY)
        try:
            head = os.read(fd, 4096)
            write(programs, "symbols.bpf.c", symbols_program("new"))
            reload(daemon)
            new_id = prog_id_of(daemon, "symbols")
            # The daemon let go of the old program; the open file's link holds it.
            assert new_id != old_id and old_id not in loaded_programs(daemon)
            assert [link["prog_id"] for link in iterator_links({old_id})] == [old_id]
            assert (daemon.mountpoint / "symbols").read_text().startswith("new ")
            rest = b""
            while chunk := os.read(fd, 1 << 16):
                rest += chunk
        finally:
            os.close(fd)
        text = (head + rest).decode()
        # Well past the read-ahead: most of it was made after the reload.
        assert len(rest) > 2 << 20, len(rest)
        assert all(line.startswith("old ") for line in text.splitlines())
        assert text.count("\n") > 10000
        deadline = time.monotonic() + 5
        while program_exists(old_id):       # the last link gone, the kernel frees it
            assert time.monotonic() < deadline, f"program {old_id} outlived its last link"
            time.sleep(0.02)
        assert program_exists(new_id)


def test_failing_programs_are_left_out_with_their_reasons(tmp_path, programs):
    write(programs, "rejected.bpf.c", VERIFIER_REJECT)
    write(programs, "missing.bpf.c", TARGET_MISSING)
    write(programs, "broken.bpf.c", COMPILE_ERROR)
    write(programs, "hello.bpf.c", hello_program("hello", "hello"))
    with dropin_daemon(tmp_path, programs) as daemon:
        m = daemon.mountpoint
        assert sorted(os.listdir(m)) == sorted(ROOT_ENTRIES + ["hello"])
        assert (m / "hello").read_text() == "hello\n"
        entries = status(daemon)

        # The kernel takes task programs, but not this one: our bug, an error.
        state, target, source, lines = entries["rejected"]
        assert (state, target, source) == ("rejected", "task", str(programs / "rejected.bpf.c"))
        assert lines[0].startswith("reason: load program rejected")
        assert lines[0].endswith("Permission denied")
        assert any("invalid mem access" in line for line in lines[1:]), lines

        # Compiled and opened, refused for its target, before the verifier saw it:
        # the kernel's limit, not a fault.
        state, target, _, lines = entries["missing"]
        assert (state, target) == ("unsupported", "does_not_exist")
        assert lines == ["reason: iterator target does_not_exist is not in this kernel "
                         "(no bpf_iter_does_not_exist in its BTF)"]

        state, target, _, lines = entries["broken"]
        assert (state, target) == ("skipped", "-")
        assert lines[0] == (f"reason: compile {programs / 'broken.bpf.c'}: "
                            "clang exited with status 1")
        assert "use of undeclared identifier 'undeclared_variable'" in lines[1]

        assert entries["hello"][:2] == ("serving", "bpf_map")
        assert entries["tcp6"][:2] == ("serving", "tcp")
        log = daemon.log()
        assert "iterfs.views ERROR: view rejected rejected: load program rejected" in log
        assert "iterfs.views INFO: view missing unsupported: iterator target " in log
        assert "iterfs.views ERROR: view broken skipped: compile " in log


def test_built_in_view_whose_target_is_missing_is_unsupported(tmp_path):
    """As on a kernel older than a built-in view's target: the others are served."""
    objects = tmp_path / "objects"
    objects.mkdir()
    for path in OBJECTS.glob("*.bpf.o"):
        (objects / path.name).symlink_to(path)
    source = write(tmp_path, "missing.bpf.c", TARGET_MISSING)
    subprocess.run(["clang", *bpf_flags([ROOT / "build", ROOT / "progs"]), "-c", str(source),
                    "-o", str(objects / "missing.bpf.o")], check=True)
    with running_daemon(tmp_path / "mnt", objects=objects) as daemon:
        assert sorted(os.listdir(daemon.mountpoint)) == ROOT_ENTRIES
        assert status(daemon)["missing"] == (
            "unsupported", "does_not_exist", str(objects / "missing.bpf.o"),
            ["reason: iterator target does_not_exist is not in this kernel "
             "(no bpf_iter_does_not_exist in its BTF)"])


def test_names_taken_first_by_directory_order(tmp_path, programs):
    second = tmp_path / "second"
    second.mkdir(mode=0o755)
    write(programs, "twice.bpf.c", hello_program("twice", "from the first directory"))
    write(second, "twice.bpf.c", hello_program("twice", "from the second directory"))
    # In one directory a source comes before an object of the same name.
    write(programs, "both.bpf.c", hello_program("both", "from the source"))
    write(programs, "both.bpf.o", "not an object: never opened")
    write(programs, "tcp6.bpf.c", hello_program("tcp6", "not the built-in"))
    write(programs, ".hidden.bpf.c", hello_program("hidden", "hidden"))
    write(programs, "-rf.bpf.c", hello_program("rf", "rf"))
    with dropin_daemon(tmp_path, programs, second) as daemon:
        m = daemon.mountpoint
        assert (m / "twice").read_text() == "from the first directory\n"
        assert (m / "both").read_text() == "from the source\n"
        assert (m / "tcp6").read_text().startswith("  sl  local_address")
        assert ".hidden" not in os.listdir(m) and "-rf" not in os.listdir(m)
        text = (m / STATUS).read_text()
        log = daemon.log()
    for loser, winner in ((second / "twice.bpf.c", programs / "twice.bpf.c"),
                          (programs / "both.bpf.o", programs / "both.bpf.c"),
                          (programs / "tcp6.bpf.c", ROOT / "build/progs/tcp6.bpf.o")):
        assert f" {loser}\n  reason: name taken by {winner}\n" in text, text
        assert f"skipped: name taken by {winner}" in log
    for refused in (".hidden.bpf.c", "-rf.bpf.c"):
        assert f" {programs / refused}\n  reason: a view's name is" in text


def test_names_with_newlines_forge_no_line(tmp_path, programs):
    """A file name is written as /proc escapes one: a newline as \\012, a
    backslash as \\134; in .status and in the log, each entry stays one line."""
    forged = "evil\nfake serving task_file forged\n  reason: none\\"
    write(programs, forged + ".bpf.c", hello_program("evil", "evil"))
    (programs / "ok.bpf.c").symlink_to(programs / (forged + ".bpf.c"))
    with dropin_daemon(tmp_path, programs) as daemon:
        text = (daemon.mountpoint / STATUS).read_text()
        log = daemon.log()
    escaped = ("evil\\012fake\\040serving\\040task_file\\040forged\\012\\040\\040reason:"
               "\\040none\\134")
    entries = parse_status(text)
    assert entries[escaped][0] == "skipped", text
    assert entries["ok"][0] == "serving", text
    assert "fake" not in entries, text
    assert not any(line.startswith("fake") or line.startswith("  reason: none")
                   for line in text.splitlines() + log.splitlines()), (text, log)
    assert "evil\\012fake serving task_file forged\\012  reason: none\\134" in log, log


def test_untrusted_directories_and_files_are_refused(tmp_path, programs):
    open_to_all = tmp_path / "open_to_all"
    open_to_all.mkdir()
    os.chmod(open_to_all, 0o777)
    write(open_to_all, "in_open.bpf.c", hello_program("in_open", "in_open"))
    write(programs, "nobodys.bpf.c", hello_program("nobodys", "nobodys"))
    os.chown(programs / "nobodys.bpf.c", 65534, 65534)
    write(programs, "group_writable.bpf.c", hello_program("group_writable", "g"), mode=0o664)
    elsewhere = write(tmp_path, "elsewhere.bpf.c", hello_program("linked", "linked"))
    os.chown(elsewhere, 65534, 65534)
    (programs / "linked.bpf.c").symlink_to(elsewhere)
    write(tmp_path, "fine.bpf.c", hello_program("fine_link", "fine"))
    (programs / "fine_link.bpf.c").symlink_to(tmp_path / "fine.bpf.c")
    with dropin_daemon(tmp_path, programs, open_to_all) as daemon:
        m = daemon.mountpoint
        assert sorted(os.listdir(m)) == sorted(ROOT_ENTRIES + ["fine_link"])
        assert (m / "fine_link").read_text() == "fine\n"
        entries = status(daemon)
        log = daemon.log()
    expected = {
        "in_open": f"reason: directory refused: {open_to_all}: writable by group and others "
                   "(mode 0777)",
        "nobodys": f"reason: refused: {programs / 'nobodys.bpf.c'}: owned by uid 65534, "
                   "not root",
        "group_writable": f"reason: refused: {programs / 'group_writable.bpf.c'}: writable "
                          "by group (mode 0664)",
        "linked": f"reason: refused: {programs / 'linked.bpf.c'}: symlink to {elsewhere}, "
                  "owned by uid 65534, not root",
    }
    for name, reason in expected.items():
        assert entries[name][0] == "skipped" and entries[name][3] == [reason], entries[name]
        assert f"view {name} skipped: {reason[len('reason: '):]}" in log
    assert f"program directory {open_to_all} refused: " in log
    assert entries["fine_link"][0] == "serving"


def test_directories_on_the_way_to_a_program_are_checked(tmp_path, programs):
    """A program reached through a directory another user owns is refused, even
    where the file is root's: that user could swap it between check and use.
    So is a program directory below such a directory."""
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)
    write(theirs, "source.bpf.c", hello_program("source", "source"))
    shutil.copy(OBJECTS / "ksym.bpf.o", theirs / "object.bpf.o")
    (programs / "via_theirs.bpf.c").symlink_to(theirs / "source.bpf.c")
    (programs / "object_via_theirs.bpf.o").symlink_to(theirs / "object.bpf.o")
    write(programs, "ours.bpf.c", hello_program("ours", "ours"))
    nested = theirs / "programs"
    nested.mkdir(mode=0o755)
    write(nested, "nested.bpf.c", hello_program("nested", "nested"))
    with dropin_daemon(tmp_path, programs, nested) as daemon:
        assert sorted(os.listdir(daemon.mountpoint)) == sorted(ROOT_ENTRIES + ["ours"])
        entries = status(daemon)
        log = daemon.log()
    why = f"directory {theirs} owned by uid 65534, not root"
    expected = {"via_theirs": f"reason: refused: {programs / 'via_theirs.bpf.c'}: {why}",
                "object_via_theirs": f"reason: refused: "
                                     f"{programs / 'object_via_theirs.bpf.o'}: {why}",
                "nested": f"reason: directory refused: {nested}: {why}"}
    for name, reason in expected.items():
        assert entries[name][0] == "skipped" and entries[name][3] == [reason], entries[name]
    assert f"program directory {nested} refused: {nested}: {why}" in log
    assert entries["ours"][0] == "serving"


def test_process_listing_object_is_checked_as_a_program(tmp_path):
    """The daemon's own process-listing object (beside the views' directory)
    loads only if root's alone; else the process directories list /proc."""
    objects = tmp_path / "objects"
    objects.mkdir(mode=0o755)
    for path in OBJECTS.glob("*.bpf.o"):
        (objects / path.name).symlink_to(path)
    internal = tmp_path / "internal"
    internal.mkdir(mode=0o755)
    listing = internal / "processes.bpf.o"
    shutil.copy(ROOT / "build" / "internal" / "processes.bpf.o", listing)
    os.chmod(listing, 0o644)
    with running_daemon(tmp_path / "mnt", objects=objects) as daemon:
        assert str(os.getpid()) in os.listdir(daemon.mountpoint / "task")
        assert "process directories list /proc" not in daemon.log()
    os.chown(listing, 65534, 65534)
    with running_daemon(tmp_path / "mnt", objects=objects) as daemon:
        assert str(os.getpid()) in os.listdir(daemon.mountpoint / "task")
        assert (f"process directories list /proc: cannot load {listing}: {listing}: "
                "owned by uid 65534, not root") in daemon.log()


def test_headers_are_checked_before_anything_is_compiled(tmp_path, programs):
    """A header another user could write is refused before clang compiles
    anything, and nothing it holds reaches .status or the log."""
    write(programs, "secret.h", '#error "the secret"\n')
    write(programs, "quiet.h", '#define GREETING "quiet"\n')
    for header in ("secret.h", "quiet.h"):
        os.chown(programs / header, 65534, 65534)
    for name, header in (("loud", "secret.h"), ("quiet", "quiet.h")):
        write(programs, f"{name}.bpf.c", hello_program(name, '" GREETING "').replace(
            "char LICENSE", f'#include "{header}"\n\nchar LICENSE'))
    with dropin_daemon(tmp_path, programs) as daemon:
        text = (daemon.mountpoint / STATUS).read_text()
        entries = parse_status(text)
        log = daemon.log()
    for name, header in (("loud", "secret.h"), ("quiet", "quiet.h")):
        assert entries[name][0] == "skipped", entries[name]
        assert entries[name][3] == [f"reason: refused: {programs / header}: owned by uid "
                                    "65534, not root"], entries[name]
        assert f"compiling {programs / name}.bpf.c" not in log
    assert "the secret" not in text and "the secret" not in log
    assert not any((tmp_path / "cache" / "objects").iterdir())


def test_tools_are_not_found_through_path(tmp_path, programs):
    """clang and bpftool are root's, in the system's directories: a clang or
    bpftool first on the daemon's PATH is never run."""
    tools = tmp_path / "tools"
    tools.mkdir(mode=0o755)
    ran = tmp_path / "ran"
    for tool in ("clang", "bpftool"):
        write(tools, tool, f"#!/bin/sh\necho {tool} >> {ran}\nexit 1\n", mode=0o755)
    write(programs, "hello.bpf.c", hello_program("hello", "hello"))
    with running_daemon(tmp_path / "mnt", "--progs", str(programs), "--cache",
                        str(tmp_path / "cache"),
                        prefix=["env", f"PATH={tools}:{os.environ['PATH']}"]) as daemon:
        assert (daemon.mountpoint / "hello").read_text() == "hello\n"
    assert not ran.exists(), ran.read_text()


# Runs as another user: what each path gives it (read, listed, or the errno).
READER = r"""
import errno, json, os, sys
answers = {}
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
            answers[path] = "listed"
        else:
            with open(path, "rb") as f:
                f.read()
            answers[path] = "read"
    except OSError as error:
        answers[path] = errno.errorcode[error.errno]
print(json.dumps(answers))
"""


@pytest.fixture
def reader():
    """(uid, gid) of a system user the test creates, deleted at the end."""
    name = f"iterfsdrop{os.getpid()}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    name], check=True)
    try:
        yield tuple(int(subprocess.run(["id", option, name], check=True, capture_output=True,
                                       text=True).stdout) for option in ("-u", "-g"))
    finally:
        subprocess.run(["userdel", name], stderr=subprocess.DEVNULL)


def read_as(user, *paths):
    uid, gid = user
    result = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                             "/usr/bin/python3", "-c", READER, *map(str, paths)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return {Path(path).relative_to(Path(paths[0]).parent).as_posix(): answer
            for path, answer in json.loads(result.stdout).items()}


def declared(program):
    """`program` with ITERFS_WORLD_READABLE (from iterfs.h)."""
    return program.replace('#include "vmlinux.h"', '#include "iterfs.h"').replace(
        "char LICENSE", "ITERFS_WORLD_READABLE;\n\nchar LICENSE")


def test_dropin_views_are_roots_alone_unless_declared(reader):
    """A drop-in view is root's (0400, a directory 0500 and its files 0400);
    one whose program says ITERFS_WORLD_READABLE is served as a built-in view
    of its target is. Built-in views are as they were."""
    top = Path(tempfile.mkdtemp(prefix="iterfs-dropin-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        programs = top / "programs"
        programs.mkdir(mode=0o755)
        write(programs, "quiet.bpf.c", symbols_program("quiet"))
        write(programs, "open.bpf.c", declared(symbols_program("open")))
        write(programs, "threads.bpf.c", threads_program("%d %s"))
        write(programs, "open_threads.bpf.c", declared(threads_program("%d %s")))
        with running_daemon(top / "mnt", "--allow-other", "--progs", str(programs),
                            "--cache", str(top / "cache")) as daemon:
            m = daemon.mountpoint
            modes = {path: stat.S_IMODE(os.stat(m / path).st_mode) for path in (
                "quiet", "open", "threads", "threads/self", "open_threads",
                "open_threads/self", "tcp")}
            assert modes == {"quiet": 0o400, "open": 0o444, "threads": 0o500,
                             "threads/self": 0o400, "open_threads": 0o555,
                             "open_threads/self": 0o444, "tcp": 0o444}
            assert os.stat(m / "threads" / str(os.getpid())).st_uid == 0
            answers = read_as(reader, m / "quiet", m / "open", m / "threads",
                              m / "threads/self", m / "open_threads", m / "open_threads/self",
                              m / "tcp")
            assert answers == {"quiet": "EACCES", "open": "read", "threads": "EACCES",
                               "threads/self": "EACCES", "open_threads": "listed",
                               "open_threads/self": "read", "tcp": "read"}
            assert (m / "quiet").read_text().startswith("quiet ")     # root's
            assert (m / "threads" / "self").read_text()
            assert "iterfs.access" not in daemon.log()      # libbpf's note: debug only
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(top)], check=True)


# -- map views ------------------------------------------------------------------

ffi = cffi.FFI()
ffi.cdef("""
    int bpf_map_create(int map_type, const char *map_name, uint32_t key_size,
                       uint32_t value_size, uint32_t max_entries, const void *opts);
    int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags);
    int bpf_obj_get_info_by_fd(int fd, void *info, uint32_t *info_len);
    struct map_info_head { uint32_t type, id; };
""")
libbpf = ffi.dlopen("libbpf.so.1")
HASH, ARRAY, SOCKMAP, QUEUE = 1, 2, 15, 22


class CreatedMap:
    """A map of the test's own: it lives as long as its fd, closed at the end."""

    def __init__(self, map_type, name, key_size, value_size, entries=16):
        self.fd = libbpf.bpf_map_create(map_type, name.encode(), key_size, value_size,
                                        entries, ffi.NULL)
        if self.fd < 0:
            raise OSError(-self.fd, f"create map {name}: {os.strerror(-self.fd)}")
        info = ffi.new("struct map_info_head *")
        length = ffi.new("uint32_t *", ffi.sizeof(info[0]))
        assert libbpf.bpf_obj_get_info_by_fd(self.fd, info, length) == 0
        self.id = info.id

    def update(self, key, value, key_type="uint32_t *", value_type="uint64_t *"):
        result = libbpf.bpf_map_update_elem(self.fd, ffi.new(key_type, key),
                                            ffi.new(value_type, value), 0)
        if result < 0:
            raise OSError(-result, f"map update: {os.strerror(-result)}")

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@contextlib.contextmanager
def created_maps(*specs):
    made = []
    try:
        for spec in specs:
            made.append(CreatedMap(*spec))
        yield made
    finally:
        for created in made:
            created.close()


@needs_target("bpf_map_elem", "sockmap")
def test_map_view_lists_and_dumps_the_maps_it_can_walk(tmp_path, programs):
    write(programs, "hash_dump.bpf.c", HASH_DUMP)
    write(programs, "sockmap_keys.bpf.c", SOCKMAP_KEYS)
    contents = {7: 70, 1 << 31: (1 << 64) - 1, 0: 0}
    with created_maps((HASH, "t_dropin_hash", 4, 8), (HASH, "t_dropin_small", 4, 4),
                      (SOCKMAP, "t_dropin_socks", 4, 4), (QUEUE, "t_dropin_queue", 0, 8)) \
            as (hash_map, small, sockmap, queue), \
            socket.create_server(("127.0.0.1", 0)) as listener, \
            socket.create_connection(listener.getsockname()) as client:
        accepted, _ = listener.accept()
        for key, value in contents.items():
            hash_map.update(key, value)
        small.update(1, 1, value_type="uint32_t *")
        sockmap.update(3, client.fileno(), value_type="uint32_t *")
        with accepted, dropin_daemon(tmp_path, programs) as daemon:
            m = daemon.mountpoint
            assert os.path.isdir(m / "hash_dump") and os.path.isdir(m / "sockmap_keys")
            listed = {int(name) for name in os.listdir(m / "hash_dump")}
            assert {hash_map.id, small.id} <= listed
            assert not {sockmap.id, queue.id} & listed
            assert [int(n) for n in os.listdir(m / "sockmap_keys")] == [sockmap.id]
            # Every id listed is a map of a kind the target takes, as bpftool says.
            out = subprocess.run(["bpftool", "-j", "map", "show"], check=True,
                                 capture_output=True, text=True).stdout
            kinds = {record["id"]: record["type"] for record in json.loads(out)}
            assert {kinds[i] for i in listed if i in kinds} <= {
                "hash", "array", "percpu_hash", "percpu_array", "lru_hash", "lru_percpu_hash"}

            text = (m / "hash_dump" / str(hash_map.id)).read_text()
            assert sorted(text.splitlines()) == sorted(f"{k} {v}" for k, v in contents.items())
            assert (m / "sockmap_keys" / str(sockmap.id)).read_text() == "3\n"
            # The program reads 8 bytes of value; this map's values have 4.
            with pytest.raises(PermissionError):
                (m / "hash_dump" / str(small.id)).read_text()
            assert (f"view hash_dump: map {small.id} (hash, key_size 4, value_size 4) "
                    "refused the program") in daemon.log()
            for absent in (str(queue.id), str(sockmap.id), "0", "01", "4294967296", "self"):
                with pytest.raises(FileNotFoundError):
                    os.stat(m / "hash_dump" / absent)
            hash_map.close()
            # The kernel frees the map soon after its last fd closes; what the
            # kernel cached of its file lasts a second, as for a process.
            deadline = time.monotonic() + 5
            while os.path.exists(m / "hash_dump" / str(hash_map.id)):
                assert time.monotonic() < deadline, "a map freed is still listed"
                time.sleep(0.05)
            assert str(hash_map.id) not in os.listdir(m / "hash_dump")
            assert status(daemon)["hash_dump"][:2] == ("serving", "bpf_map_elem")


# -- the system's directory, the cache, the examples --------------------------------


@contextlib.contextmanager
def system_program(name, text):
    """`name` in /etc/iterfs/progs.d; everything made there is removed after."""
    made = [p for p in (SYSTEM_PROGRAMS.parent, SYSTEM_PROGRAMS) if not p.exists()]
    path = SYSTEM_PROGRAMS / name
    assert not path.exists(), f"{path} exists: not the test's to overwrite"
    try:
        SYSTEM_PROGRAMS.mkdir(mode=0o755, parents=True, exist_ok=True)
        for directory in made:
            os.chmod(directory, 0o755)
        write(SYSTEM_PROGRAMS, name, text)
        yield path
    finally:
        path.unlink(missing_ok=True)
        if made:
            shutil.rmtree(made[0])


def test_system_directory(tmp_path):
    with system_program("t_system_view.bpf.c", hello_program("t_system_view", "etc")), \
            dropin_daemon(tmp_path) as daemon:
        assert (daemon.mountpoint / "t_system_view").read_text() == "etc\n"
        assert status(daemon)["t_system_view"][2] == str(SYSTEM_PROGRAMS /
                                                         "t_system_view.bpf.c")


def test_compiled_once_per_content(tmp_path, programs):
    write(programs, "local.h", '#define GREETING "first"\n')
    write(programs, "greeting.bpf.c", hello_program("greeting", '" GREETING "')
          .replace('char LICENSE', '#include "local.h"\n\nchar LICENSE'))
    with dropin_daemon(tmp_path, programs) as daemon:
        assert daemon.log().count("compiling ") == 1
        assert (daemon.mountpoint / "greeting").read_text() == "first\n"
        reload(daemon)
        assert daemon.log().count("compiling ") == 1      # nothing changed
        write(programs, "local.h", '#define GREETING "second"\n')
        reload(daemon)      # a header the program includes changed
        assert daemon.log().count("compiling ") == 2
        assert (daemon.mountpoint / "greeting").read_text() == "second\n"
    with dropin_daemon(tmp_path, programs) as daemon:
        assert "compiling " not in daemon.log()         # found in the cache
        assert (daemon.mountpoint / "greeting").read_text() == "second\n"
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700


def test_examples_compile_load_and_show_what_they_say(tmp_path):
    names = sorted(p.name[:-len(".bpf.c")] for p in EXAMPLES.glob("*.bpf.c"))
    assert len(names) >= 2
    with dropin_daemon(tmp_path, EXAMPLES) as daemon:
        entries = status(daemon)
        for name in names:
            target = entries[name][1]
            if kernel_refusal(target):      # the kernel's refusal, said as the probe says it
                assert entries[name][0] == "unsupported", entries[name]
                assert entries[name][3] == [f"reason: {kernel_refusal(target)}"]
            else:
                assert entries[name][0] == "serving", entries[name]
        m = daemon.mountpoint
        check_close_wait(m / "close_wait")
        check_deleted_files(m / "deleted_files", tmp_path)
        if not kernel_refusal("bpf_map_elem"):
            check_map_hexdump(m / "map_hexdump")


def check_close_wait(view):
    with socket.create_server(("127.0.0.1", 0)) as listener, \
            socket.create_connection(listener.getsockname()) as first, \
            socket.create_connection(listener.getsockname()) as second:
        peer, _ = listener.accept()
        peer.close()                    # one of the two is now in CLOSE_WAIT
        other, _ = listener.accept()
        with other:
            waiting = [s for s in (first, second) if _close_wait(s)]
            assert len(waiting) == 1
            rows = (view / str(os.getpid())).read_text().splitlines()
            expected = [str(os.getpid()), str(waiting[0].fileno()),
                        "%s:%d" % waiting[0].getsockname(), "%s:%d" % waiting[0].getpeername()]
    assert rows[0].split() == ["pid", "comm", "fd", "local", "remote"]
    assert [row.split()[:1] + row.split()[2:] for row in rows[1:]] == [expected]


def _close_wait(sock):
    """Whether /proc/net/tcp shows this socket in CLOSE_WAIT (state 08)."""
    port = "%04X" % sock.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(":" + port) and fields[3] == "08":
            return True
    return False


def check_deleted_files(view, tmp_path):
    deleted = tmp_path / "gone"
    with open(deleted, "wb") as gone, open(tmp_path / "kept", "wb"):
        gone.write(b"x" * 12345)
        gone.flush()
        deleted.unlink()
        rows = (view / str(os.getpid())).read_text().splitlines()
        # The oracle: what /proc says of each fd: a regular file with no link left.
        expected = {(fd, os.readlink(f"/proc/self/fd/{fd}"))
                    for fd in os.listdir("/proc/self/fd") if _is_deleted_file(int(fd))}
        gone_fd = str(gone.fileno())
    assert rows[0].split() == ["pid", "comm", "fd", "size", "path"]
    found = {(row.split()[2], row.split(None, 4)[4]) for row in rows[1:]}
    assert found == expected and (gone_fd, f"{deleted} (deleted)") in found
    assert [row.split()[3] for row in rows[1:] if row.split()[2] == gone_fd] == ["12345"]


def _is_deleted_file(fd):
    try:
        status = os.fstat(fd)
    except OSError:
        return False
    return stat.S_ISREG(status.st_mode) and status.st_nlink == 0


def check_map_hexdump(view):
    with created_maps((ARRAY, "t_dropin_array", 4, 12, 2)) as (array,):
        array.update(1, b"abcdefghijkl", value_type="char[12]")
        assert str(array.id) in os.listdir(view)
        rows = (view / str(array.id)).read_text().splitlines()
    assert rows == ["key 00000000 value " + "00" * 12,
                    "key 01000000 value " + b"abcdefghijkl".hex()]


def readme_program(function):
    """The C program of README.md that defines `function`."""
    for block in re.findall(r"```c\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        if f"int {function}(" in block:
            return block
    raise AssertionError(f"README.md has no program {function}")


def device_name(st_dev):
    """A device as /proc/<pid>/maps and the holders view show it."""
    return f"{os.major(st_dev):02x}:{os.minor(st_dev):02x}"


def holders_of(path):
    """The oracle: {(pid, fd)} whose fd is `path`'s file, from /proc/*/fd."""
    wanted = os.stat(path)
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    held = os.stat(f"/proc/{pid}/fd/{fd}")
                    if (held.st_dev, held.st_ino) == (wanted.st_dev, wanted.st_ino):
                        found.add((int(pid), int(fd)))
    return found


def read_holders(view, path):
    """{(pid, fd)} of the view's rows on `path`'s device."""
    lines = view.read_text().splitlines()
    assert lines[0].split() == ["pid", "comm", "fd", "device"]
    device = device_name(os.stat(path).st_dev)
    return {(int(line.split()[0]), int(line.split()[-2])) for line in lines[1:]
            if line.split()[-1] == device}


def test_readme_walk_through(tmp_path, programs):
    """README's holders.bpf.c, as the walk-through uses it: the processes that
    hold a file open, compared with /proc/*/fd; then for another file."""
    source = readme_program("holders")
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("first")
    second.write_text("second")
    script = "import sys; f = open(sys.argv[1]); print('ready', flush=True); sys.stdin.read()"
    child = subprocess.Popen([sys.executable, "-c", script, str(second)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with open(first) as a, open(first) as b, open(second) as c, \
                dropin_daemon(tmp_path, programs) as daemon:
            m = daemon.mountpoint
            inode = f"#define INODE {os.stat(first).st_ino}"
            write(programs, "holders.bpf.c", source.replace("#define INODE 1234", inode))
            reload(daemon)
            assert status(daemon)["holders"][:2] == ("serving", "task_file")
            expected = {(os.getpid(), a.fileno()), (os.getpid(), b.fileno())}
            assert holders_of(first) == expected
            assert read_holders(m / "holders" / "all", first) == expected

            inode = f"#define INODE {os.stat(second).st_ino}"
            write(programs, "holders.bpf.c", source.replace("#define INODE 1234", inode))
            reload(daemon)
            expected = holders_of(second)
            assert {pid for pid, _ in expected} == {os.getpid(), child.pid}
            assert (os.getpid(), c.fileno()) in expected
            assert read_holders(m / "holders" / "all", second) == expected
            assert read_holders(m / "holders" / str(child.pid), second) == \
                {(pid, fd) for pid, fd in expected if pid == child.pid}
    finally:
        child.kill()
        child.wait()


def test_stop_during_a_reload(tmp_path, programs):
    """SIGTERM while a reload compiles: the daemon unmounts and exits 0 at once."""
    with dropin_daemon(tmp_path, programs) as daemon:
        for source in EXAMPLES.glob("*.bpf.c"):
            shutil.copy(source, programs)
        os.kill(daemon.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "compiling " not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.01)
        started = time.monotonic()
        os.kill(daemon.pid, signal.SIGTERM)
        assert daemon.process.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        assert "reloaded:" not in daemon.log()


def test_reload_while_reading(tmp_path, programs):
    """Reloads while other threads read every view: no error, no lost file."""
    write(programs, "hello.bpf.c", hello_program("hello", "one"))
    with dropin_daemon(tmp_path, programs) as daemon:
        m = daemon.mountpoint
        errors, stop = [], threading.Event()

        def reader():
            while not stop.is_set():
                try:
                    assert (m / "tcp6").read_text().startswith("  sl")
                    assert (m / "hello").read_text() in ("one\n", "two\n")
                except FileNotFoundError:
                    pass        # between the table's swap and the kernel forgetting
                except Exception as error:      # reported below
                    errors.append(error)

        threads = [threading.Thread(target=reader) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            for text in ("two", "one", "two"):
                write(programs, "hello.bpf.c", hello_program("hello", text))
                reload(daemon)
                assert (m / "hello").read_text() == text + "\n"
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert errors == []


def test_a_failed_rescan_fails_the_reload_command(tmp_path, programs):
    """A program directory replaced by a file makes the rescan itself fail: the
    command systemctl reload runs (`iterfs --reload PID MOUNTPOINT`) exits 1
    with one line saying why, .status ends with the failed reload, and the
    views served stay as they were. The directory back, the next reload succeeds."""
    write(programs, "hello.bpf.c", hello_program("hello", "one"))
    with dropin_daemon(tmp_path, programs) as daemon:
        m = daemon.mountpoint
        command = [sys.executable, "-m", "iterfs", "--reload", str(daemon.pid), str(m)]
        aside = programs.with_name("programs.aside")
        programs.rename(aside)
        programs.write_text("not a directory\n")
        failed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=90)
        assert failed.returncode == 1, failed
        assert failed.stdout == ""
        assert re.fullmatch(r"iterfs: reload 1 failed, the views served are as they were: "
                            r"NotADirectoryError: .*Not a directory.*\n", failed.stderr), failed
        assert (m / STATUS).read_text().splitlines()[-1].startswith("reload 1 failed: ")
        assert (m / "hello").read_text() == "one\n"
        assert status(daemon)["hello"][0] == "serving"
        programs.unlink()
        aside.rename(programs)
        write(programs, "hello.bpf.c", hello_program("hello", "two"))
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=90)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
        assert (m / STATUS).read_text().endswith("\nreload 2 done\n")
        assert (m / "hello").read_text() == "two\n"
    assert "reload failed, serving the views as they were: NotADirectoryError" in daemon.log()
