"""An open file: its iterator link, the iterator it streams from, and read-ahead.

Reading an iterator fd blocks while the kernel runs the program over the next
objects, so every read of the fd happens in a worker thread and the event loop
keeps serving other requests. After answering a read, the next chunk is read
ahead in the background: the kernel walks on while the reader digests what it
got, and small reads (netstat reads 4 KiB at a time) are answered from memory.
At most READ_AHEAD bytes beyond what was asked for are held per open file.
"""

import concurrent.futures

import trio

READ_AHEAD = 128 * 1024
SKIP_CHUNK = 1 << 20


async def result_of(future):
    """Await a concurrent.futures.Future from the event loop without a thread hop."""
    if not future.done():
        finished = trio.Event()
        token = trio.lowlevel.current_trio_token()
        future.add_done_callback(lambda _: token.run_sync_soon(finished.set))
        await finished.wait()
    return future.result()


class OpenIterator:
    """One open(): the link attached for it and the iterator read from it.

    The methods are called under `lock`, so one request at a time touches the
    stream; the read-ahead in flight is the only other user, and every method
    waits for it before touching the buffer or the stream.
    """

    def __init__(self, link, executor):
        self.link = link
        self.stream = link.open()
        self.lock = trio.Lock()
        self._executor = executor
        self._offset = 0             # file offset of the first byte of _buffer
        self._buffer = bytearray()   # read from the iterator, not yet returned
        self._eof = False
        self._error = None           # what the read-ahead ran into, for the next read
        self._ahead = None

    async def read(self, offset, size):
        await self._settle()
        if offset != self._offset:
            await self._in_thread(self._move_to, offset)
        if len(self._buffer) < size and not self._eof:
            if self._error is not None and not self._buffer:
                error, self._error = self._error, None
                raise error
            await self._in_thread(self._fill, size - len(self._buffer))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._offset += len(data)
        if not self._eof and self._error is None and len(self._buffer) < size:
            self._ahead = self._executor.submit(
                self._fill, max(size, READ_AHEAD) - len(self._buffer))
        return data

    async def close(self):
        await self._settle()
        self.close_now()

    def close_now(self):
        """Close without the event loop, once no read-ahead can be running."""
        if self._ahead is not None:
            concurrent.futures.wait([self._ahead])
            self._ahead = None
        try:
            self.stream.close()
        finally:
            self.link.close()

    async def _settle(self):
        if self._ahead is not None:
            try:
                await result_of(self._ahead)
            except OSError as error:
                self._error = error
            finally:
                self._ahead = None

    async def _in_thread(self, function, *args):
        return await result_of(self._executor.submit(function, *args))

    def _fill(self, size):
        chunk = self.stream.fill(size)
        if len(chunk) < size:
            self._eof = True
        self._buffer += chunk

    def _move_to(self, offset):
        if offset < self._offset:
            # An iterator cannot seek back: walk again from the start.
            self.stream.close()
            self.stream = self.link.open()
            self._offset, self._eof, self._error = 0, False, None
            self._buffer.clear()
        buffered_end = self._offset + len(self._buffer)
        if offset <= buffered_end:
            del self._buffer[:offset - self._offset]
            self._offset = offset
            return
        self._offset = buffered_end
        self._buffer.clear()
        while self._offset < offset and not self._eof:
            wanted = min(offset - self._offset, SKIP_CHUNK)
            skipped = len(self.stream.fill(wanted))
            self._eof = skipped < wanted
            self._offset += skipped
