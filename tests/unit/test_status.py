"""`.status`'s text (iterfs/status.py), as readers grep it."""

from iterfs import status


def test_columns_reasons_and_stuck_walks():
    entries = [status.Entry("tcp6", "/usr/lib/iterfs/progs/tcp6.bpf.o", target="tcp"),
               status.Entry("broken view", "/etc/iterfs/progs.d/b.bpf.c")]
    entries[1].skip("compile failed", ["b.bpf.c:3: error", "line\nbreak"])
    text = status.render(entries, {"tcp6": (2, 7.4)})
    assert text.splitlines() == [
        "view           state   target source",
        "tcp6           serving tcp    /usr/lib/iterfs/progs/tcp6.bpf.o",
        "  stuck: 2 walks waiting on the kernel, the longest for 7 s",
        r"broken\040view skipped -      /etc/iterfs/progs.d/b.bpf.c",
        "  reason: compile failed",
        "  | b.bpf.c:3: error",
        r"  | line\012break",      # as /proc escapes: octal,
    ]


def test_each_open_reads_the_text_from_its_start():
    entries = [status.Entry("a", "/x")]
    link = status.StatusFile(lambda: entries).attach()
    first, second = link.open(), link.open()
    assert first.read(5) == b"view "
    assert second.fill(1 << 20) == b"view " + first.read(1 << 20)
    assert first.read(10) == b""
