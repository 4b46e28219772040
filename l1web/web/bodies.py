"""Upload bodies (tus PATCHes, POSTs) held in memory as waitress receives them, within a
process-wide budget.

waitress reads a whole request body before the app sees it, into a buffer that moves to an
anonymous temp file past `inbuf_overflow` (512 KiB). For a resumable upload that means every
byte is written to a temp file and read back before the app writes it to the upload and hashes
it: on this VM 0.3 s of CPU per GiB on top of the 2.3 s hashing costs, on the core that also
receives (measured in docs/performance.md). A larger `inbuf_overflow` keeps bodies in a BytesIO
instead, which still copies twice, and does so for every request of any size and number.

Here a PATCH or POST whose body is at most `MAX_BODY` is kept as the very `bytes` objects waitress
received (no copy at all), and the app's `readinto` copies each once into its own buffer,
dropping every piece as soon as it is read. Memory is bounded for the whole process: a body is
held in memory only if its Content-Length fits in what is left of `BUDGET` (reserved when its
headers arrive, given back when waitress closes the request or the body is dropped); any other
body uses waitress's own buffer exactly as before. Hand-written because waitress has no hook for
it beyond its parser class (`HTTPChannel.parser_class`), which is what this plugs into.

A small raw upload (`POST /cache/upload`, not a multipart form, at most `HASHED_ON_ARRIVAL`
bytes) is also hashed as it arrives (`ArrivalHash`): SHA3 runs in a kept thread while the rest
of the body is still being received and the request is signed in, where the app used to start
hashing only once the whole body was there (2.8 ms for 1.4 MB here, after ~1.3 ms of receiving).
The store takes that digest only for exactly the body's bytes (`TempWriter.arrived`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import io
import threading
import weakref

from waitress.parser import HTTPRequestParser
from waitress.receiver import FixedStreamReceiver

from l1web.store.ingest import INLINE_BYTES
from l1web.store.names import new_hasher

#: Largest body kept in memory (16 MiB: `render.py` sends 8 MiB PATCHes, the browser 8 MiB).
MAX_BODY = 16 * 1024 * 1024
#: Bytes of request bodies the whole process may hold in memory at once (64 MiB): with waitress
#: reading one PATCH ahead (`channel_request_lookahead`), each fast upload holds at most two
#: bodies (16 MiB with 8 MiB PATCHes), so four run from memory side by side; more wait in temp
#: files as before, never in more memory.
BUDGET = 64 * 1024 * 1024
#: Methods whose bodies may be held: tus appends, and POSTs (`POST /cache/upload` of a small file:
#: a 1.4 MB PNG went through a temp file before the app saw it; held, the upload's time over
#: writing + fsync + SHA3 of the same bytes went 1.79-1.87x -> 1.53-1.73x, three runs each
#: alternated, docs/performance.md). Everything else is left to waitress.
METHODS = frozenset({"PATCH", "POST"})
#: Bodies hashed as they arrive: raw `POST /cache/upload`s up to the size the store writes in the
#: request's thread (`ingest.INLINE_BYTES`; larger ones are hashed by the store's own threads).
#: Not tus PATCHes (an upload's digest spans all of them; `store/uploads.py` hashes them in
#: order) nor multipart forms (the file is one part of the body).
HASHED_ON_ARRIVAL = INLINE_BYTES
HASHED_PATHS = frozenset({"/cache/upload"})
#: Threads a process keeps for `ArrivalHash` (started on first use).
ARRIVAL_THREADS = 2


class Budget:
    """Bytes reserved by bodies held in memory, never more than `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def reserve(self, size: int) -> bool:
        with self._lock:
            if self.held + size > self.limit:
                return False
            self.held += size
            return True

    def release(self, size: int) -> None:
        with self._lock:
            self.held -= size


BUDGET_IN_USE = Budget(BUDGET)


class ArrivalHash:
    """SHA3 of a body's pieces in the order they arrive, computed by kept threads meanwhile.

    `add` is called from waitress's receiving thread and never waits for hashing: it queues the
    piece and, unless a drain is already scheduled, schedules one on a kept thread, which hashes
    what is queued and ends (a slow client holds no thread). `hexdigest` hashes whatever no
    thread has yet taken, waits for a running drain, and answers."""

    _pool: concurrent.futures.ThreadPoolExecutor | None = None
    _pool_lock = threading.Lock()

    def __init__(self) -> None:
        self._hasher = new_hasher()
        self._pending: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()  # guards _pending and _scheduled
        self._hashing = threading.Lock()  # one drain at a time: the pieces stay in order
        self._scheduled = False
        self.size = 0

    def add(self, data: bytes) -> None:
        with self._lock:
            self._pending.append(data)
            self.size += len(data)
            if self._scheduled:
                return
            self._scheduled = True
        self._executor().submit(self._drain)

    def _drain(self) -> None:
        with self._hashing:
            while True:
                with self._lock:
                    if not self._pending:
                        self._scheduled = False
                        return
                    data = self._pending.popleft()
                self._hasher.update(data)  # gives up the GIL: receiving goes on meanwhile

    def hexdigest(self) -> str:
        """The digest of every piece added (call it once all have been)."""
        self._drain()
        return self._hasher.hexdigest()

    def abandon(self) -> None:
        """The body is dropped: what is still queued is never hashed."""
        with self._lock:
            self._pending.clear()

    @classmethod
    def _executor(cls) -> concurrent.futures.ThreadPoolExecutor:
        with cls._pool_lock:
            if cls._pool is None:
                cls._pool = concurrent.futures.ThreadPoolExecutor(max_workers=ARRIVAL_THREADS,
                                                                  thread_name_prefix="body-hash")
            return cls._pool


class MemoryBody:
    """A waitress body buffer (`append`, `__len__`, `getfile`, `close`) keeping the received
    `bytes` as they are; its reservation goes back on `close` or when it is dropped. With
    `hashed`, the pieces are also hashed as they arrive (`ArrivalHash`)."""

    def __init__(self, size: int, budget: Budget, *, hashed: bool = False) -> None:
        self._parts: collections.deque[bytes] = collections.deque()
        self._length = 0
        self._reader: MemoryBodyReader | None = None
        self._release = weakref.finalize(self, budget.release, size)
        self.arrival = ArrivalHash() if hashed else None

    def append(self, data: bytes) -> None:
        self._parts.append(data)
        self._length += len(data)
        if self.arrival is not None:
            self.arrival.add(data)

    def __len__(self) -> int:
        return self._length

    def getfile(self) -> MemoryBodyReader:
        """The one reader of this body (it is read once, from the start)."""
        if self._reader is None:
            self._reader = MemoryBodyReader(self._parts, self.arrival)
        return self._reader

    def close(self) -> None:
        self._parts.clear()
        if self.arrival is not None:
            self.arrival.abandon()
        self._release()


class MemoryBodyReader(io.RawIOBase):
    """`wsgi.input` over a MemoryBody: each piece is copied once, into the reader's buffer, and
    let go of as soon as it has been read (a body is read once, from the start)."""

    def __init__(self, parts: collections.deque[bytes], arrival: ArrivalHash | None = None) -> None:
        super().__init__()
        self._parts = parts
        self._position = 0  # into parts[0]
        #: The whole body's digest as it arrived, when it was hashed so (`MemoryBody`).
        self.arrival = arrival

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        done = 0
        with memoryview(buffer) as out, out.cast("B") as target:
            while done < len(target) and self._parts:
                part = self._parts[0]
                count = min(len(part) - self._position, len(target) - done)
                with memoryview(part) as piece:
                    target[done:done + count] = piece[self._position:self._position + count]
                done += count
                self._position += count
                if self._position == len(part):
                    self._parts.popleft()
                    self._position = 0
        return done


class MemoryBodyParser(HTTPRequestParser):
    """waitress's parser, holding a PATCH or POST body of at most MAX_BODY in memory when the
    budget has room for it."""

    budget = BUDGET_IN_USE

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        size = self.content_length
        if (isinstance(self.body_rcv, FixedStreamReceiver) and self.command in METHODS
                and 0 < size <= MAX_BODY and self.budget.reserve(size)):
            hashed = (self.command == "POST" and size <= HASHED_ON_ARRIVAL and self.path in HASHED_PATHS
                      and not self.headers.get("CONTENT_TYPE", "").lower().startswith("multipart/"))
            self.body_rcv = FixedStreamReceiver(size, MemoryBody(size, self.budget, hashed=hashed))
