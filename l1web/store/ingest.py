"""Streaming ingest: bytes go to a temp file in the store's own filesystem while being hashed.

Nothing is held in memory beyond one chunk. The writer enforces the byte cap as bytes arrive,
turns a full disk into `InsufficientStorage`, and removes its temp file on every failure.
"""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import os
import queue
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from l1web.engine import written
from l1web.engine.media import MediaInfo
from l1web.errors import InsufficientStorage, PayloadTooLarge
from l1web.store.names import hash_file, new_hasher

#: Bytes read from a client or file per loop turn (1 MiB): big enough that the per-call
#: overhead vanishes next to hashing, small enough that memory stays flat.
CHUNK = 1024 * 1024
#: Chunks that may wait between the hashing thread and the writing thread.
QUEUE_CHUNKS = 4
#: Bytes hashed and written in the caller's thread before the helper threads start (4 MiB):
#: starting and joining two threads costs more than they save on a small upload.
INLINE_BYTES = 4 * 1024 * 1024
#: Bytes written between two flushes to disk while an ingest is still running (64 MiB).
SYNC_EVERY = 64 * 1024 * 1024
#: Prefix and suffix of temp files, so a sweep recognises them.
TEMP_PREFIX, TEMP_SUFFIX = "ingest-", ".part"
#: errno values that mean "the disk (or the quota) is full".
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class ReadableInto(Protocol):
    """A body read into buffers the reader owns (werkzeug's request stream, files)."""

    def readinto(self, buffer: bytearray, /) -> int | None: ...


class ArrivedDigest(Protocol):
    """A digest of `size` bytes taken as they arrived (`web/bodies.ArrivalHash`)."""

    size: int

    def hexdigest(self) -> str: ...


class PendingFile(Protocol):
    """What `ContentStore.commit` takes: a file on the store's filesystem, not yet named
    (`TempWriter`, `AdoptedFile`, a finished resumable upload)."""

    path: Path
    size: int
    #: What the file is, when its writer knew (an image the engine wrote): else detected.
    info: MediaInfo | None

    def finish(self) -> str:
        """Make the bytes durable (or start to: see `durable`); return their digest."""

    def durable(self) -> None:
        """Return once the bytes are on disk (before the file is renamed into place)."""

    def discard(self) -> None:
        """Remove the file if it is still there."""


def raise_if_full(exc: OSError) -> None:
    """Turn a full disk into the user-facing 507; other I/O errors are left to the caller."""
    if exc.errno in DISK_FULL:
        raise InsufficientStorage("storage full: no space left on the cache's disk for this item") from exc


#: Size of the buffers a resumable upload reads into and hashes (`take_buffer`, 2 MiB). Every
#: `hasher.update` gives up the GIL and has to take it back, which waits for whatever Python the
#: request threads are running: with 1 MiB pieces the hashing thread lost 0.40–0.52 s per GiB
#: waiting so, with 2 MiB 0.23–0.26 s, for the same CPU (4 MiB: 0.16–0.20 s but more CPU, the
#: buffers no longer fit the 2 MiB L2 cache); docs/performance.md.
POOL_BUFFER = 2 * 1024 * 1024
#: Idle pooled buffers a process keeps for the next `Hashing` (at most this many: 16 MiB).
POOLED_BUFFERS = 8
#: Buffers that may wait for a `Hashing` thread (6 MiB; the caller holds one more).
HASH_QUEUE = 3
_POOL: queue.LifoQueue[bytearray] = queue.LifoQueue()


def take_buffer() -> bytearray:
    """A POOL_BUFFER-sized buffer to read into, from the pool (warm memory, no allocation) or new."""
    try:
        return _POOL.get_nowait()
    except queue.Empty:
        return bytearray(POOL_BUFFER)


def give_back(buffer: bytearray) -> None:
    if _POOL.qsize() < POOLED_BUFFERS:
        _POOL.put(buffer)


class Hashing:
    """Feeds chunks to hashers in a thread of its own, so the caller reads and writes the next
    chunk meanwhile: hashlib and `os.write` both release the GIL, so hashing and writing overlap
    on two cores rather than add up. The first chunk is hashed in the caller's thread: a small
    body never pays for a thread. The queue is short, which keeps memory at a few chunks.

    `after` chains it behind an earlier `Hashing` of the same hashers that may still be running
    (the previous PATCH of a resumable upload, which answered without waiting for its hashing):
    this one's chunks are hashed only once that one is done, in order, and never in the caller's
    thread. `close` ends the feeding without waiting; `wait` also waits for the hashing.

    `update` takes a buffer from `take_buffer` and owns it from then on: once hashed it goes
    back to the pool, so a long upload reads into the same few warm buffers instead of
    allocating (and copying into) new memory for every piece."""

    def __init__(self, *hashers: hashlib._Hash, after: Hashing | None = None) -> None:
        self.hashers = hashers
        self._after = after if after is not None and after.running else None
        if self._after is not None and (earlier := self._after._after) is not None:
            earlier.wait()  # at most two PATCHes of an upload wait for hashing, however small they are
        self._first = self._after is None
        self._queue: queue.Queue[tuple[bytearray, int] | None] = queue.Queue(maxsize=HASH_QUEUE)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether chunks given may still be waiting to be hashed."""
        if self._thread is not None:
            return self._thread.is_alive()
        return (after := self._after) is not None and after.running  # given nothing: as the one before

    def update(self, buffer: bytearray, size: int) -> None:
        """Hash `buffer[:size]` after everything given before; the buffer is ours now."""
        if self._first or not self.hashers:
            self._first = False
            self._hash(buffer, size)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hashing", daemon=True)
            self._thread.start()
        self._queue.put((buffer, size))

    def close(self) -> None:
        """No more chunks: the thread ends once it has hashed the ones given (not waited for)."""
        with self._lock:
            if self._thread is None or self._closed:
                return
            self._closed = True
        self._queue.put(None)

    def wait(self) -> None:
        """Return once every chunk given is hashed (call it on failure too: it ends the thread)."""
        after = self._after
        if self._thread is None and after is not None:
            after.wait()
        self.close()
        if self._thread is not None:
            self._thread.join()

    def _hash(self, buffer: bytearray, size: int) -> None:
        with memoryview(buffer) as view, view[:size] as data:
            for hasher in self.hashers:
                hasher.update(data)
        give_back(buffer)

    def _run(self) -> None:
        if (after := self._after) is not None:
            after.wait()
            self._after = None  # no chain of finished ones stays referenced
        while (item := self._queue.get()) is not None:
            self._hash(*item)


class TempWriter:
    """A temp file being filled and hashed; `finish` fsyncs it, `discard` removes it.

    The caller's thread only hands chunks on: one helper thread hashes them and another writes
    them (hashing and `os.write` both release the GIL), so an upload costs about the slowest of
    reading, hashing and writing rather than their sum — which matters most for multipart, where
    the caller's thread is also busy finding part boundaries. The queues are short, which keeps
    memory at a few chunks however large the upload. The first `INLINE_BYTES` are written in the
    caller's thread: a small upload never pays for the threads. A small upload is hashed at
    `finish`, while a kept flushing thread (`_Flusher`) brings its bytes to disk: the fsync
    (0.6-1 ms here) overlaps the hashing (2.8 ms for 1.4 MB), the index read and the media
    description, and `durable` waits for it before the rename (issue 19, docs/performance.md).
    """

    info: MediaInfo | None = None  # bytes from outside: always detected

    def __init__(self, tmp_dir: Path, max_bytes: int | None) -> None:
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
        self.fd: int | None = fd
        self.path = Path(name)
        self.max_bytes = max_bytes
        self.size = 0
        self._hasher = new_hasher()
        self._hash_queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._write_queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._unhashed: list[bytes] = []  # written inline, hashed at `finish` (at most INLINE_BYTES)
        self._synced: concurrent.futures.Future[None] | None = None
        #: The digest of the bytes this writer is given, hashed as they arrived: used at `finish`
        #: only if exactly that many bytes were written, inline (else they are hashed here).
        self.arrived: ArrivedDigest | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._raise_pending()
        self.size += len(data)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise PayloadTooLarge(f"upload is larger than the limit of {self.max_bytes} bytes",
                                  limit=self.max_bytes)
        if not self._threads and self.size <= INLINE_BYTES:
            # Kept unchanged until hashed: a caller may reuse its buffer once this returns.
            self._unhashed.append(data if type(data) is bytes else bytes(data))
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view):]  # type: ignore[arg-type]  # fd is open until finish
            except OSError as exc:
                raise_if_full(exc)
                raise
            return
        if not self._threads:
            self._hash_unhashed()  # in order: what was written inline comes first
            self._threads = [
                threading.Thread(target=self._hash, name="ingest-hasher", daemon=True),
                threading.Thread(target=self._drain, args=(self.fd,), name="ingest-writer", daemon=True),
            ]
            for thread in self._threads:
                thread.start()
        chunk = bytes(data)  # immutable: both threads read it while the caller moves on
        self._hash_queue.put(chunk)
        self._write_queue.put(chunk)

    def copy_from(self, source: Readable, chunk: int = CHUNK) -> None:
        while data := source.read(chunk):
            self.write(data)

    def _hash_unhashed(self) -> None:
        for data in self._unhashed:
            self._hasher.update(data)
        self._unhashed.clear()

    def _hash(self) -> None:
        """The hashing thread: feed every queued chunk to the SHA3 hasher."""
        while (data := self._hash_queue.get()) is not None:
            self._hasher.update(data)

    def _drain(self, fd: int) -> None:
        """The writer thread: write every queued chunk, flushing to disk as it goes."""
        unsynced = 0
        while (data := self._write_queue.get()) is not None:
            if self._error is not None:
                continue  # keep draining so the producer never blocks on a full queue
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                unsynced += len(data)
                if unsynced >= SYNC_EVERY:
                    # Flushing while hashing goes on keeps the final fsync short.
                    os.fdatasync(fd)
                    unsynced = 0
            except BaseException as exc:  # noqa: BLE001 - handed to the producer thread
                self._error = exc

    def _stop_threads(self) -> None:
        if not self._threads:  # a small ingest never started them
            return
        for pipe, thread in zip((self._hash_queue, self._write_queue), self._threads, strict=True):
            if thread.is_alive():
                pipe.put(None)
                thread.join()

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, OSError):
                raise_if_full(error)
            raise error

    def finish(self) -> str:
        """The digest of everything written; the bytes are flushed to disk by `durable` at the latest."""
        assert self.fd is not None
        if not self._threads:  # a small ingest: flushed in the background while it is hashed
            fd, self.fd = self.fd, None
            self._synced = _FLUSHER.submit(fsync_and_close, fd)
            if self.arrived is not None and self.arrived.size == self.size:
                self._unhashed.clear()
                return self.arrived.hexdigest()
            self._hash_unhashed()
            return self._hasher.hexdigest()
        self._stop_threads()
        try:
            self._raise_pending()
            os.fsync(self.fd)
        except OSError as exc:
            raise_if_full(exc)
            raise
        finally:
            os.close(self.fd)
            self.fd = None
        return self._hasher.hexdigest()

    def durable(self) -> None:
        """Return once the bytes are on disk (a large ingest: `finish` flushed them)."""
        if self._synced is not None:
            flushed(self._synced)

    def discard(self) -> None:
        # A flush still running owns its descriptor and closes it; the file is unlinked under it.
        self._stop_threads()
        self._error = None
        self._unhashed.clear()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.path.unlink(missing_ok=True)


def flushed(flush: concurrent.futures.Future[None]) -> None:
    """Wait for a background flush (`_Flusher`); a full disk is the user-facing 507."""
    try:
        flush.result()
    except OSError as exc:
        raise_if_full(exc)
        raise


def fsync_and_close(fd: int) -> None:
    """Flush an open file's bytes to disk, then close it (a small ingest's flush, `TempWriter`)."""
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file's bytes to disk (before it is renamed into place)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Flusher:
    """Threads kept per process that flush finished files to disk while their callers go on.

    A render output's fsync (1.5-3 ms for a small image here, longer for a video) used to come
    before its hashing, the index read and the media description, one after the other; from this
    thread it overlaps them, and `ContentStore.commit` waits for it just before the rename (still
    the commit point: the bytes are on disk before the name is). Threads kept, started on first
    use, rather than a thread per file (starting one costs about what it would save on a small
    file); up to `FLUSH_THREADS`, so that the web app's uploads finishing at once still flush side
    by side. A forked child (a kept work horse) has no copy of its parent's threads: it makes its own.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None

    def submit(self, flush: Callable[[Any], None], target: Any) -> concurrent.futures.Future[None]:
        with self.lock:
            if self.pool is None:
                self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=FLUSH_THREADS,
                                                                  thread_name_prefix="store-fsync")
            return self.pool.submit(flush, target)


#: Files a process flushes at once in the background (`_Flusher`).
FLUSH_THREADS = 4
_FLUSHER = _Flusher()


def _flusher_after_fork() -> None:
    global _FLUSHER
    _FLUSHER = _Flusher()


os.register_at_fork(after_in_child=_flusher_after_fork)


class FinishedFile:
    """A complete file already on the store's filesystem, handed to `ContentStore.commit` as is
    (same interface as `TempWriter`); `digest` when it was hashed as it arrived, else hashed once.

    Its fsync runs in the background (`_Flusher`) from `finish` until `durable`."""

    info: MediaInfo | None = None

    def __init__(self, path: Path, size: int, digest: str | None = None) -> None:
        self.path, self.size, self._digest = path, size, digest
        self._synced: concurrent.futures.Future[None] | None = None

    def finish(self) -> str:
        self._synced = _FLUSHER.submit(fsync_file, self.path)
        return self._digest or hash_file(self.path)

    def durable(self) -> None:
        if self._synced is None:
            fsync_file(self.path)
            return
        flushed(self._synced)

    def discard(self) -> None:
        # A flush still running needs no waiting for: on a file unlinked meanwhile it fails or
        # syncs bytes nobody names any more, and its result is never read.
        self.path.unlink(missing_ok=True)


class AdoptedFile(FinishedFile):
    """A finished file already on the store's filesystem, taken over as the temp file by rename.

    A render output is moved in rather than copied, so storing it needs no extra disk space
    (a copy would need twice the output's size free). Same interface as `TempWriter` for `commit`.
    """

    def __init__(self, source: Path, tmp_dir: Path) -> None:
        known = written.take(source)  # hashed as the engine wrote it, if it is still that file
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
        os.close(fd)
        path = Path(name)
        try:
            os.replace(source, path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        super().__init__(path, path.stat().st_size, known.digest if known else None)
        self.info = known.info if known else None
