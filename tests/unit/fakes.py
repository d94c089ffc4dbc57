"""Stand-ins for the kernel side of an open file: a walk's stream, the link it
comes from, the reader it is made as, and a pool the test runs by hand.

FakeStream keeps bpf.IteratorStream's contract: read(n) gives the next bytes,
at most n and at most one seq_file buffer (32 KiB) a call, b"" at the end and
after it; fill(n) reads until n bytes or the end; close() may be called again;
a closed stream raises ValueError, as io.RawIOBase does; the walk's errors are
OSErrors. It also checks what OpenIterator promises it: one user at a time,
never used after it was closed. What it sees broken is kept in `violations`,
which every test checks at its end (conftest.py)."""

import concurrent.futures
import errno
import itertools
import os
import threading

SEQ_BUFFER = 32 * 1024      # what bpf_seq_read gives at most a read
GATE_TIMEOUT = 10.0         # a gate never opened fails the read rather than hang


def content(size, seed=0):
    """`size` bytes of lines, each different, so that a byte out of place shows."""
    lines = (b"%08d line of walk %d %s\n" % (n, seed, b"x" * (n % 37)) for n in itertools.count())
    data = bytearray()
    for line in lines:
        if len(data) >= size:
            break
        data += line
    return bytes(data[:size])


class Gate:
    """How many more reads a stream may make: open by default; closed, a read
    waits until allow() lets it through."""

    def __init__(self, allowed=None):
        self._allowed = allowed         # None: any number
        self._changed = threading.Condition()
        self.waiting = 0                # reads waiting at the gate now

    def allow(self, reads):
        with self._changed:
            self._allowed = (self._allowed or 0) + reads
            self._changed.notify_all()

    def open(self):
        with self._changed:
            self._allowed = None
            self._changed.notify_all()

    def close(self):
        with self._changed:
            self._allowed = 0

    def pass_(self):
        with self._changed:
            self.waiting += 1
            try:
                if not self._changed.wait_for(lambda: self._allowed != 0, GATE_TIMEOUT):
                    raise TimeoutError("a read waited at a gate no test opened")
                if self._allowed is not None:
                    self._allowed -= 1
            finally:
                self.waiting -= 1


class FakeStream:
    """One walk over `data`. `chunks`: the sizes the kernel gives, in turn (a
    read gets the smaller of that, the size asked and SEQ_BUFFER). `fail_at`:
    the walk raises `error` on a read that starts there or later."""

    def __init__(self, data, violations, *, chunks=(SEQ_BUFFER,), fail_at=None,
                 error=None, gate=None):
        self.data = data
        self.position = 0
        self.closed = False
        self.reads = []                 # (thread id, its nice value) of each read
        self.fills = 0
        self._chunks = itertools.cycle(chunks)
        self._fail_at = fail_at
        self._error = error if error is not None else OSError(errno.EIO, "read iterator: EIO")
        self.gate = gate if gate is not None else Gate()
        self._violations = violations
        self._user = threading.Lock()

    def _use(self, what):
        if not self._user.acquire(blocking=False):
            self._violations.append(f"{what} while another call used the stream")
            return False
        if self.closed:
            self._user.release()
            self._violations.append(f"{what} after close")
            raise ValueError("I/O operation on closed file.")
        return True

    def read(self, size=-1):
        used = self._use("read")
        try:
            return self._read(size)
        finally:
            if used:
                self._user.release()

    def _read(self, size):
        self.gate.pass_()
        thread = threading.get_native_id()
        self.reads.append((thread, os.getpriority(os.PRIO_PROCESS, thread)))
        if self._fail_at is not None and self.position >= self._fail_at:
            raise self._error
        if size < 0:
            size = len(self.data)
        size = min(size, next(self._chunks), SEQ_BUFFER)
        chunk = self.data[self.position:self.position + size]
        self.position += len(chunk)
        return chunk

    def fill(self, size):
        used = self._use("fill")
        try:
            self.fills += 1
            pieces, filled = [], 0
            while filled < size:
                chunk = self._read(size - filled)
                if not chunk:
                    break
                pieces.append(chunk)
                filled += len(chunk)
            return b"".join(pieces)
        finally:
            if used:
                self._user.release()

    def close(self):
        if self.closed:
            return
        if not self._user.acquire(blocking=False):
            self._violations.append("close while another call used the stream")
            self.closed = True
            return
        self.closed = True
        self._user.release()


class FakeLink:
    fd = -1

    def __init__(self):
        self.closes = 0

    def close(self):
        self.closes += 1


class FakeReader:
    """credentials.Reader as OpenIterator uses it: its uid, walk() and release().
    `make_stream(walk number)` makes each walk's stream, the first walk 0."""

    def __init__(self, make_stream, uid=0):
        self.uid = uid
        self.streams = []
        self.releases = 0
        self._make_stream = make_stream

    def walk(self, link, opening):
        stream = self._make_stream(len(self.streams))
        self.streams.append(stream)
        return stream

    def release(self):
        self.releases += 1


class Job:
    def __init__(self, future, fn, args):
        self.future, self.fn, self.args = future, fn, args
        self.thread = None

    def start(self):
        def run():
            if not self.future.set_running_or_notify_cancel():
                return
            try:
                result = self.fn(*self.args)
            except BaseException as error:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)
        self.thread = threading.Thread(target=run, name=f"manual-{id(self):x}")
        self.thread.start()


class ManualPool:
    """A pool whose work the test starts (run_next), or that starts everything
    at once on a thread of its own (run_all). hold_submits(seconds): a submit
    from a thread other than the test's returns only once release() is called,
    or after `seconds`, so that the test decides what happens meanwhile."""

    def __init__(self):
        self.jobs = []
        self._next = 0
        self._auto = False
        self._lock = threading.Lock()
        self._held = None
        self._main = threading.main_thread()
        self.held_submits = 0           # submits now held

    def submit(self, fn, *args):
        future = concurrent.futures.Future()
        job = Job(future, fn, args)
        with self._lock:
            self.jobs.append(job)
            if self._auto:
                self._next = len(self.jobs)
        if self._auto:
            job.start()
        held = self._held
        if held is not None and threading.current_thread() is not self._main:
            held_for, released = held
            self.held_submits += 1
            released.wait(held_for)
            self.held_submits -= 1
        return future

    def hold_submits(self, seconds):
        self._held = (seconds, threading.Event())

    def release(self):
        if self._held is not None:
            self._held[1].set()
            self._held = None

    @property
    def pending(self):
        return len(self.jobs) - self._next

    def run_next(self):
        with self._lock:
            job = self.jobs[self._next]
            self._next += 1
        job.start()
        return job

    def run_all(self):
        """What waits, and from now on all that comes, each on its own thread."""
        with self._lock:
            self._auto = True
            waiting = self.jobs[self._next:]
            self._next = len(self.jobs)
        for job in waiting:
            job.start()

    def shutdown(self, wait=False, cancel_futures=True):
        self.release()

    def join(self, timeout=GATE_TIMEOUT):
        for job in list(self.jobs):
            if job.thread is not None:
                job.thread.join(timeout)
