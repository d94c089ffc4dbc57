"""An open file: its iterator link, the iterator it streams from, and read-ahead.

Reading an iterator fd blocks while the kernel runs the program over the next
objects. So each open file has a pump: a worker thread that reads the iterator
into a bounded buffer while the event loop answers FUSE requests from it. The
kernel walks on while a reader digests what it got and the reply travels back,
and small reads (netstat reads 4 KiB at a time) are answered from memory. The
pump stops when READ_AHEAD bytes wait unread, so a reader that pauses holds no
thread, and at most READ_AHEAD bytes (or one read's size, if larger) per open
file.

Each view has its own pump threads (a lane; a thread idle for IDLE_SECONDS
ends): the kernel can block a walk (the tcp iterator takes each socket's lock,
which a user can hold), and such a walk then holds only its view's threads,
never those of other views or of the process listings. Nothing waits for a
blocked pump: release() and unmount leave the iterator to the pump, which
closes it when the kernel lets go. All open files together buffer at most
BUFFERED_BYTES; past that a pump reads only what a waiting request asks, and
the last ROOT_BUFFERED_BYTES are root's.

The pump starts at the first read (the walk begins then, as /proc's does),
and reads ahead from there. A file that has streamed more than INTERACTIVE_BYTES is pumped
at lower priority from then on: a few readers of large views must not keep the
event loop and the pumps of small reads waiting for a CPU.
"""

import collections
import concurrent.futures
import enum
import errno
import logging
import os
import threading
import time

import trio


log = logging.getLogger("iterfs.streaming")

READ_AHEAD = 512 * 1024
READ_CHUNK = 64 * 1024     # one read(2) of the iterator fd; the kernel gives <= 32 KiB
SKIP_CHUNK = 1 << 20
INTERACTIVE_BYTES = 256 * 1024
STREAMING_NICE = 10         # CPU weight about a tenth of nice 0's
# What all open files together may hold read ahead, and what of it is root's.
BUFFERED_BYTES = 64 << 20
ROOT_BUFFERED_BYTES = 8 << 20
# A walk that made no progress for this long shows as stuck in .status.
STUCK_SECONDS = 5.0
# A pump thread with nothing to do for this long ends.
IDLE_SECONDS = 30.0


def _lower_priority():
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), STREAMING_NICE)


def _may_take_priority_back():
    """Whether a thread of this process may raise its priority again after
    lowering it: with CAP_SYS_NICE, or RLIMIT_NICE 20 (the unit's LimitNICE=)."""
    answer = []

    def probe():
        thread = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, thread)
        try:
            os.setpriority(os.PRIO_PROCESS, thread, max(nice, STREAMING_NICE))
            os.setpriority(os.PRIO_PROCESS, thread, nice)
            answer.append(True)
        except OSError:
            answer.append(False)
    prober = threading.Thread(target=probe, name="iterfs-nice-probe")
    prober.start()
    prober.join()
    return answer[0]


class Pool:
    """Up to `threads` worker threads, started as work comes and ended after
    `idle` seconds without any: a view read in a burst holds no threads once
    the burst is over. ThreadPoolExecutor's threads never end, so a lane would
    keep as many as were ever busy at once, up to `threads` a view.

    The submit() and shutdown(wait=False, cancel_futures=True) of an Executor.
    Threads are not daemons: the process ends once the last pump is done,
    after the kernel let a blocked walk go (see shutdown)."""

    def __init__(self, threads, name, initializer=None, idle=IDLE_SECONDS):
        self._max = threads
        self._name = name
        self._initializer = initializer
        self._idle_seconds = idle
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._work = collections.deque()
        self._threads = 0           # started and not yet ended
        self._idle = 0              # of them, waiting for work
        self._started = 0           # ever, to name them
        self._closed = False

    @property
    def threads(self):
        return self._threads

    def submit(self, fn, *args):
        future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._work.append((future, fn, args))
            # A waiting thread takes it unless as much work waits as threads do
            # (one woken but not yet running still counts as waiting).
            if self._idle >= len(self._work):
                self._wake.notify()
                return future
            if self._threads >= self._max:
                return future       # the next thread done takes it
            self._threads += 1
            self._started += 1
            name = f"{self._name}_{self._started}"
        try:
            threading.Thread(target=self._run, name=name).start()
        except BaseException:
            with self._lock:
                self._threads -= 1
                self._work = collections.deque(w for w in self._work if w[0] is not future)
            raise
        return future

    def _run(self):
        if self._initializer is not None:
            self._initializer()
        while True:
            with self._lock:
                while not self._work:
                    if self._closed:
                        self._threads -= 1
                        return
                    self._idle += 1
                    woken = self._wake.wait(self._idle_seconds)
                    self._idle -= 1
                    if not woken and not self._work:
                        self._threads -= 1
                        return
                future, fn, args = self._work.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as error:
                future.set_exception(error)
            else:
                future.set_result(result)
            del future, fn, args    # nothing of the work outlives it

    def shutdown(self, wait=False, cancel_futures=True):
        """Cancels what waits; a thread at work finishes it. Never waits."""
        with self._lock:
            self._closed = True
            if cancel_futures:
                while self._work:
                    self._work.popleft()[0].cancel()
            self._wake.notify_all()


class Lane:
    """The pump threads of one view (up to `threads`, started as needed), and
    the walks that use them, for .status. A pump whose file streams lowers its
    thread to STREAMING_NICE for the rest of its run and takes the thread's
    priority back when it stops: the walk stays on its thread (moving it to
    another cost streaming 2-3%). Where a thread may not take its priority back,
    a second pool of threads at STREAMING_NICE pumps the files that stream."""

    def __init__(self, name, threads, lowered_pool):
        self.name = name
        self.walks = set()          # OpenIterators not yet closed
        prefix = f"iterfs-{name}"[:12]
        self.interactive = Pool(threads, prefix)
        self.streaming = None       # None: streaming pumps lower their own thread
        if lowered_pool:
            self.streaming = Pool(threads, prefix, initializer=_lower_priority)

    def shutdown(self):
        """Without waiting: a pump the kernel blocks ends when it lets go."""
        for pool in (self.interactive, self.streaming):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)


class Pumps:
    """Every view's lane, made at its first use, and the bytes buffered in all."""

    def __init__(self, threads):
        self.threads = threads
        self.buffered = Budget(BUFFERED_BYTES, ROOT_BUFFERED_BYTES)
        self._lanes = {}
        self._lowered_pool = not _may_take_priority_back()

    def lane(self, name):
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = Lane(name, self.threads, self._lowered_pool)
        return lane

    def stuck(self):
        """{view name: (walks without progress for STUCK_SECONDS, the longest's
        seconds)}, for .status."""
        now = time.monotonic()
        report = {}
        for name, lane in self._lanes.items():
            since = [walk.waiting_since for walk in list(lane.walks)]
            waits = [now - s for s in since if s is not None and now - s >= STUCK_SECONDS]
            if waits:
                report[name] = (len(waits), max(waits))
        return report

    def shutdown(self):
        for lane in self._lanes.values():
            lane.shutdown()


class Budget:
    """Bytes held by all open files' buffers: at most `total`, of which the last
    `reserve` only for root's files."""

    def __init__(self, total, reserve):
        self.total = total
        self.reserve = reserve
        self.held = 0
        self._lock = threading.Lock()

    def room(self, uid):
        limit = self.total if uid == 0 else self.total - self.reserve
        return limit - self.held

    def add(self, size):
        with self._lock:
            self.held += size


class _Lowered:
    """A streaming pump's thread, at STREAMING_NICE from lower() to the end of
    the block."""

    def __init__(self):
        self._thread = threading.get_native_id()
        self._nice = None

    def lower(self):
        if self._nice is None:
            self._nice = os.getpriority(os.PRIO_PROCESS, self._thread)
            os.setpriority(os.PRIO_PROCESS, self._thread, max(self._nice, STREAMING_NICE))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._nice is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, self._thread, self._nice)
            except OSError as error:    # the probe said it may: keep the file's read whole
                log.warning("a pump thread stays at nice %d: %s", STREAMING_NICE,
                            error.strerror)


async def finished(future):
    """Until a concurrent.futures.Future is done, from the event loop without a
    thread hop; its result or error stay in it."""
    if not future.done():
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()
        future.add_done_callback(lambda _: token.run_sync_soon(done.set))
        await done.wait()


async def result_of(future):
    """Await a concurrent.futures.Future from the event loop without a thread hop."""
    await finished(future)
    return future.result()


class _Chunks:
    """Bytes read from an iterator and not yet returned, kept as the reads gave
    them: a read(2) of the iterator makes one bytes object, and a reply joins
    them, so each byte is copied once between the kernel's two copies."""

    def __init__(self, budget):
        self._chunks = collections.deque()
        self._taken = 0         # bytes of the first chunk already returned
        self._size = 0
        self._budget = budget   # Budget: counts what every buffer holds

    def __len__(self):
        return self._size

    def append(self, chunk):
        self._chunks.append(chunk)
        self._size += len(chunk)
        self._budget.add(len(chunk))

    def clear(self):
        self._budget.add(-self._size)
        self._chunks.clear()
        self._taken = self._size = 0

    def take(self, size):
        """The first `size` bytes (all if fewer), removed."""
        pieces = []
        rest = min(size, self._size)
        self._size -= rest
        self._budget.add(-rest)
        while rest:
            chunk, start = self._chunks[0], self._taken
            if len(chunk) - start <= rest:
                self._chunks.popleft()
                self._taken = 0
                pieces.append(memoryview(chunk)[start:] if start else chunk)
                rest -= len(chunk) - start
            else:
                self._taken = start + rest
                pieces.append(memoryview(chunk)[start:start + rest])
                rest = 0
        if len(pieces) == 1 and type(pieces[0]) is bytes:
            return pieces[0]
        return b"".join(pieces)


class _State(enum.Enum):
    """Who uses an open file's stream: the one its state names, and nobody else."""
    IDLE = "idle"           # nobody: a read may start a pump, or a move (a seek)
    PUMPING = "pumping"     # a pump, waiting for a thread or reading
    STOPPING = "stopping"   # a pump that a seek waits for: it stops at its next chunk
    MOVING = "moving"       # a seek's worker: walks again, or skips, to an offset
    CLOSING = "closing"     # released while a pump or move used it: that one closes it
    CLOSED = "closed"


_IDLE, _PUMPING, _STOPPING, _MOVING, _CLOSING, _CLOSED = _State


class OpenIterator:
    """One open(): the link attached for it and the iterator read from it.

    Requests call read() under `lock`, one at a time, and close() at any time,
    all in the event loop. The workers are the only other users: a pump reads ahead, a move (a
    seek) walks again or skips. `_state` says who uses the stream (_State), and
    only that one reads or closes it; `_state`, and everything the workers and
    the event loop both touch, are under `_mutex`. The transitions:

        IDLE -> PUMPING      a read leaves room to read ahead, or waits
        PUMPING -> IDLE      the buffer is full, the walk ended or failed
        PUMPING -> PUMPING   a pump that streams goes on in the lowered pool
        PUMPING -> STOPPING  a seek; STOPPING -> IDLE at the pump's next chunk
        IDLE -> MOVING       a seek, the pump stopped; MOVING -> IDLE when moved
        any -> CLOSING       close() while a worker is at work, which closes the
                             stream when done: closing never waits for the kernel
        CLOSING, IDLE -> CLOSED
    """

    def __init__(self, link, lane, budget, name, reader, opening):
        self.name = name             # the file's path in the mount, for log lines
        self.uid = reader.uid        # who opened it, for the limits
        self._reader = reader        # credentials.Reader: each walk is created as it
        self._opening = opening      # bpf.Opening: what each walk is told open() saw
        self.link = link
        self.stream = self._open_stream()
        self.lock = trio.Lock()
        self._lane = lane            # Lane: the view's pump threads
        self._budget = budget
        self._token = trio.lowlevel.current_trio_token()
        self._offset = 0             # file offset of the first byte of _buffer: the
                                     # event loop's, and a move's while it waits for it
        self._mutex = threading.Lock()
        # Under _mutex:
        self._state = _IDLE
        self._worker = None          # future of the pump or move that uses the stream
        self._pumped = 0             # bytes read from the iterator since open
        self._buffer = _Chunks(budget)   # read from the iterator, not yet returned
        self._eof = False
        self._error = None           # what the pump ran into
        self._limit = READ_AHEAD     # what the pump may hold: more if a read asks more
        self._waiting = False        # a request waits for the pump's next chunks
        self._wanted = 0             # how many bytes it waits for
        self._progress = trio.Event()
        # When the pump started or last got a chunk, while it works: .status
        # calls a walk stuck that got nothing for STUCK_SECONDS.
        self._waiting_since = None
        lane.walks.add(self)
        # The walk starts at the first read, as /proc's does: a file that lists
        # the reader's own fds (task_file/self) then shows itself.

    @property
    def waiting_since(self):
        with self._mutex:
            return self._waiting_since

    def _pool(self):
        """Under _mutex: the threads a pump of this file runs on now."""
        if self._pumped > INTERACTIVE_BYTES and self._lane.streaming is not None:
            return self._lane.streaming
        return self._lane.interactive

    async def read(self, offset, size):
        if offset != self._offset:
            await self._seek(offset)
        while True:
            with self._mutex:
                if self._state is _CLOSING or self._state is _CLOSED:
                    raise OSError(errno.EBADF, "read after release")
                self._limit = max(READ_AHEAD, size)
                if len(self._buffer) >= size or self._eof or self._error is not None:
                    self._waiting = False
                    if not self._buffer and self._error is not None:
                        raise self._error
                    data = self._buffer.take(size)
                    self._start_pump()
                    break
                # A new event only to wait on: the pump sets the one it finds,
                # after it saw _waiting.
                progress = self._progress = trio.Event()
                self._waiting, self._wanted = True, size
                self._start_pump()
            await progress.wait()
        self._offset += len(data)
        return data

    def close(self):
        """Close now or, while a worker uses the stream, leave it to the worker:
        a walk the kernel blocks (a socket's lock) must hold up neither release
        nor unmount. A worker that never started is cancelled."""
        with self._mutex:
            if self._state is _CLOSING or self._state is _CLOSED:
                return
            if self._waiting:       # never with FUSE, which releases after reads
                self._error = OSError(errno.EBADF, "released while a read waited")
                self._progress.set()
            now = self._state is _IDLE or self._worker.cancel()
            self._state = _CLOSED if now else _CLOSING
        if now:
            self._finish()

    def _finish(self):
        """Once, by whoever stops using the stream last."""
        try:
            with self._mutex:
                self._buffer.clear()
            self._close_stream()
        finally:
            self._lane.walks.discard(self)

    def _close_stream(self):
        try:
            self.stream.close()
        finally:
            try:
                self.link.close()
            finally:
                self._reader.release()

    def _start_pump(self):
        """Under _mutex: a pump, where nobody uses the stream and there is
        reading to do."""
        if self._state is not _IDLE or self._error is not None or self._pump_should_rest():
            return
        pool = self._pool()
        self._state = _PUMPING
        self._waiting_since = time.monotonic()
        try:
            self._worker = pool.submit(self._run_pump, pool)
        except BaseException:
            self._state, self._waiting_since = _IDLE, None
            raise

    def _pump_should_rest(self):
        """Under _mutex: whether the pump has nothing to do now. It reads ahead
        while the buffer and all buffers together have room; what a waiting
        request asks it reads regardless."""
        if self._eof:
            return True
        if self._waiting and len(self._buffer) < self._wanted:
            return False
        return (len(self._buffer) >= self._limit
                or self._budget.room(self.uid) < READ_CHUNK)

    def _stop(self):
        """Under _mutex: the pump or move stops using the stream. Whether it
        must close it (it was released meanwhile)."""
        self._waiting_since = None
        if self._state is _CLOSING:
            self._state = _CLOSED
            return True
        self._state = _IDLE
        return False

    async def _seek(self, offset):
        """Stop the pump, then move the stream in a worker thread."""
        while True:
            with self._mutex:
                if self._state is _IDLE:
                    pool = self._pool()
                    self._state = _MOVING
                    try:
                        self._worker = move = pool.submit(self._run_move, offset)
                    except BaseException:
                        self._state = _IDLE
                        raise
                    break
                if self._state is not _PUMPING and self._state is not _STOPPING:
                    raise OSError(errno.EBADF, "released while a read waited")
                self._state = _STOPPING
                pump = self._worker
            await finished(pump)
            with self._mutex:
                if self._worker is pump and self._state is _STOPPING:
                    self._state = _IDLE      # cancelled before it ran (unmounting)
        try:
            await result_of(move)
        except concurrent.futures.CancelledError:
            raise OSError(errno.EBADF, "released while a read waited") from None

    def _run_pump(self, pool):
        """Worker thread: read the iterator until the buffer is full or it ends."""
        with _Lowered() as thread:
            closing = self._pump_into_buffer(pool, thread)
        if closing:
            self._finish()

    def _pump_into_buffer(self, pool, thread):
        """Whether the stream was released meanwhile, for the caller to close."""
        with self._mutex:
            if self._state is not _PUMPING or self._pump_should_rest():
                return self._stop()
            read = self.stream.read
            lower = self._pumped > INTERACTIVE_BYTES
        try:
            while True:
                if lower:
                    thread.lower()
                chunk = read(READ_CHUNK)
                # One turn of the lock a read: the event loop waits on it.
                with self._mutex:
                    self._pumped += len(chunk)
                    self._waiting_since = time.monotonic()
                    if chunk:
                        self._buffer.append(chunk)
                    else:
                        self._eof = True
                    # Wake the request only once it can be answered in full:
                    # a wake-up costs the event loop a round, and the kernel
                    # gives at most 32 KiB a read while cat asks 128 KiB.
                    waiting = self._waiting and (
                        self._eof or len(self._buffer) >= self._wanted)
                    if waiting:
                        self._waiting = False
                        progress = self._progress
                    if self._state is not _PUMPING or self._pump_should_rest():
                        done, closing = True, self._stop()
                    elif self._pool() is not pool:      # it streams: go on down there
                        pool = self._pool()
                        self._worker = pool.submit(self._run_pump, pool)
                        done, closing = True, False
                    else:
                        done, lower = False, self._pumped > INTERACTIVE_BYTES
                if waiting:
                    self._wake(progress)
                if done:
                    return closing
        except Exception as error:
            with self._mutex:
                self._error = error if isinstance(error, OSError) else OSError(str(error))
                self._waiting = False
                progress = self._progress
                closing = self._stop()
            self._wake(progress)
            return closing

    def _wake(self, progress):
        # Only when a request waits: each wake-up costs the event loop a round.
        try:
            self._token.run_sync_soon(progress.set)
        except trio.RunFinishedError:
            pass     # unmounting: nobody waits any more

    def _open_stream(self):
        """A walk from the start, as the opener: the kernel decides from its
        credentials and namespaces what it shows (credentials.Reader.walk)."""
        return self._reader.walk(self.link, self._opening)

    def _run_move(self, offset):
        """Worker thread, MOVING: make `offset` the next byte to return."""
        try:
            self._move_to(offset)
        finally:
            with self._mutex:
                closing = self._stop()
            if closing:
                self._finish()

    def _move_to(self, offset):
        if offset < self._offset:
            # An iterator cannot seek back: walk again from the start.
            self.stream.close()
            stream = self._open_stream()
            with self._mutex:
                self.stream = stream
                self._eof, self._error = False, None
                self._buffer.clear()
            self._offset = 0
        with self._mutex:
            buffered_end = self._offset + len(self._buffer)
            if offset <= buffered_end:
                self._buffer.take(offset - self._offset)     # a seek: rare, the copy is cheap
                self._offset = offset
                return
            self._buffer.clear()
            eof = self._eof
        self._offset = buffered_end
        while self._offset < offset and not eof:
            wanted = min(offset - self._offset, SKIP_CHUNK)
            skipped = len(self.stream.fill(wanted))
            eof = skipped < wanted
            self._offset += skipped
        with self._mutex:
            self._eof = eof
