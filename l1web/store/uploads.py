"""Resumable uploads (tus 1.0): bytes appended in order to a file, hashed as they arrive.

An upload is a file `CACHE_DIR/uploads/<id>.part` plus a Redis record (`l1web.state.uploads`).
Each PATCH appends at the recorded offset, under a one-writer lock, and feeds the same bytes to
the upload's incremental SHA3-256 state, kept in this web process (`_HASHERS`). A hashlib state
cannot be stored in Redis, so when it is lost (a restart, or the previous PATCH went to another
web process) the upload is hashed once from disk when it is complete. The last byte hands the
file to `ContentStore.commit`, which dedups, checks the media, records the owner and renames it
into place atomically, exactly as for `POST /cache/upload`.

Why hand-written: no maintained tus server exists for Flask/WSGI (the Python ones are for other
frameworks, or unmaintained), and the store integration (hash while receiving, the ownership
rule, the in-flight limit) is most of the work anyway. The protocol is followed as specified:
https://tus.io/protocols/resumable-upload (core, creation, termination, checksum, expiration).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from l1web.errors import BadRequest, Conflict, L1Error, NotFound, PayloadTooLarge
from l1web.state.uploads import InflightLimit, Upload, Uploads
from l1web.store import ContentStore, Stored
from l1web.store.ingest import FinishedFile, Hashing, ReadableInto, give_back, raise_if_full, take_buffer
from l1web.store.names import new_hasher

log = logging.getLogger(__name__)

#: Folder under the store's root holding unfinished uploads (same filesystem: the final rename is atomic).
UPLOADS_DIR = "uploads"
#: Bytes written between two flushes to disk within a PATCH (and at its end): each flushed range
#: is then dropped from the page cache (POSIX_FADV_DONTNEED), nobody reads it before the upload
#: is complete. The recorded offset then never runs ahead of the disk, dirty memory stays at a
#: few MiB however large the upload, the final fsync is short, and the kernel reuses the same
#: warm pages for the next range: on this VM, writing 512 MiB into ever new page-cache pages cost
#: 1.1 s of CPU (as much as hashing them), flushed and dropped every 8 MiB 0.15 s, every 32 MiB 0.19 s.
SYNC_EVERY = 8 * 1024 * 1024
#: Checksum algorithms a PATCH may name in `Upload-Checksum` (tus checksum extension; sha1 is required).
CHECKSUMS = ("sha1", "md5", "sha256", "sha512")
#: Longest `Upload-Metadata` header accepted, in bytes.
MAX_METADATA = 4096


class ChecksumMismatch(L1Error):
    """tus: the PATCH body does not match its `Upload-Checksum` (460, nothing is kept)."""

    status, code = 460, "checksum_mismatch"


class Expired(L1Error):
    status, code = 410, "expired"


@dataclass
class _HashState:
    """The SHA3 state of an upload's first `offset` bytes, once `pending` (still hashing the last
    PATCH's chunks, or None) is done."""

    offset: int
    hasher: hashlib._Hash
    pending: Hashing | None = None


#: Upload id → the SHA3 state of its first `offset` bytes, in this process only.
_HASHERS: dict[str, _HashState] = {}
_HASHERS_LOCK = threading.Lock()


def forget_hash_states() -> None:
    """Drop every in-process hash state (what a restart does; tests use it)."""
    with _HASHERS_LOCK:
        _HASHERS.clear()


def parse_metadata(header: str | None) -> dict[str, str]:
    """`Upload-Metadata: key base64value,key2 …` → dict; 400 naming the broken pair."""
    if not header:
        return {}
    if len(header) > MAX_METADATA:
        raise BadRequest(f"Upload-Metadata is longer than {MAX_METADATA} bytes")
    out: dict[str, str] = {}
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if not parts[0] or len(parts) > 2:
            raise BadRequest(f"Upload-Metadata pair {pair.strip()[:40]!r} is not 'key base64value'")
        try:
            out[parts[0]] = base64.b64decode(parts[1], validate=True).decode("utf-8") if len(parts) == 2 else ""
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest(f"Upload-Metadata value of {parts[0][:40]!r} is not base64 of UTF-8 text") from None
    return out


def parse_checksum(header: str | None) -> tuple[hashlib._Hash, bytes] | None:
    """`Upload-Checksum: sha1 base64digest` → (hasher, expected bytes), or None when absent."""
    if header is None:
        return None
    algorithm, _, value = header.strip().partition(" ")
    if algorithm not in CHECKSUMS:
        raise BadRequest(f"Upload-Checksum algorithm {algorithm[:20]!r} is not supported "
                         f"(use one of {', '.join(CHECKSUMS)})")
    try:
        expected = base64.b64decode(value.strip(), validate=True)
    except binascii.Error:
        raise BadRequest("Upload-Checksum value is not base64") from None
    return hashlib.new(algorithm), expected


def _copy(body: ReadableInto, fd: int, upload: Upload, room: int, hashing: Hashing) -> int:
    """Write the body at the upload's offset (at most `room` bytes), then hand each chunk to
    `hashing` (a pooled buffer goes back only once hashed, so it is written first), flushing
    every SYNC_EVERY bytes and at the end; the bytes written."""
    written, synced = 0, upload.offset
    while True:
        buffer = take_buffer()
        size = body.readinto(buffer)
        if not size:
            give_back(buffer)
            break
        if written + size > room:
            give_back(buffer)
            raise BadRequest(f"the body goes past Upload-Length {upload.length}: only {room} bytes "
                             f"remain from offset {upload.offset}")
        position = upload.offset + written
        with memoryview(buffer) as whole:
            view = whole[:size]
            while view:
                count = os.pwrite(fd, view, position)
                view, position = view[count:], position + count
        # Start writing this chunk to disk now, without waiting (DONTNEED on dirty pages starts
        # their writeback, drops nothing yet): the flush at the end then waits for the last chunk
        # only — fdatasync of 8 MiB took 2.7 ms, 1.2 ms this way (docs/performance.md).
        os.posix_fadvise(fd, position - size, size, os.POSIX_FADV_DONTNEED)
        written += size
        hashing.update(buffer, size)  # hashed in a thread of its own while this one goes on
        if position - synced >= SYNC_EVERY:
            synced = _flush(fd, synced, position)
    if written:
        _flush(fd, synced, upload.offset + written)
    return written


def _flush(fd: int, start: int, end: int) -> int:
    """Put bytes `start`..`end` on disk and drop them from the page cache (SYNC_EVERY); `end`."""
    os.fdatasync(fd)
    os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
    return end


class UploadStore:
    """Resumable uploads into one `ContentStore`."""

    def __init__(self, store: ContentStore, uploads: Uploads) -> None:
        self.store = store
        self.uploads = uploads
        self.dir = store.root / UPLOADS_DIR

    def path(self, upload_id: str) -> Path:
        return self.dir / f"{upload_id}.part"

    # Creation and lookup ------------------------------------------------------------------------
    def create(self, owner: str, length: int, *, max_bytes: int, expiry: float, limit: int,
               metadata: dict[str, str]) -> Upload:
        if length <= 0:
            raise BadRequest("Upload-Length must be at least 1 (a zero-byte item cannot be stored)")
        if length > max_bytes:
            raise PayloadTooLarge(f"Upload-Length {length} is larger than the limit of {max_bytes} bytes",
                                  limit=max_bytes)
        self.sweep()
        try:
            upload = self.uploads.create(owner, length, expiry=expiry, limit=limit,
                                         name=metadata.get("filename") or metadata.get("name"), metadata=metadata)
        except InflightLimit as exc:
            raise PayloadTooLarge(
                f"your unfinished uploads already hold {exc.held} bytes; with {length} more they would pass "
                f"the limit of {limit} bytes: finish or delete some first", limit=limit) from None
        try:
            self.dir.mkdir(exist_ok=True)
            self.path(upload.id).touch(exist_ok=False)
        except OSError as exc:
            self.uploads.drop(upload.id)
            raise_if_full(exc)
            raise
        return upload

    def owned(self, upload_id: str, owner: str) -> Upload:
        """The caller's upload; another user's id answers exactly like an unknown one (404)."""
        upload = self.uploads.get(upload_id) if upload_id.isalnum() and len(upload_id) <= 64 else None
        if upload is None or upload.owner != owner:
            raise NotFound(f"no upload {upload_id[:64]!r}")
        if upload.expires < time.time() and not upload.finished:
            self.expire(upload_id)
            raise Expired(f"upload {upload_id} expired before it was finished; start a new one")
        return upload

    # Appending ------------------------------------------------------------------------------------
    def append(self, upload: Upload, offset: int, body: ReadableInto, declared: int | None, *, checksum: str | None,
               expiry: float) -> tuple[Upload, Stored | None]:
        """Write a PATCH body at `offset` (which must be the upload's offset); the Stored item
        once the last byte is in. Bad offsets, lengths and checksums change nothing."""
        check = parse_checksum(checksum)
        if upload.finished:
            raise Conflict(f"upload {upload.id} is already complete (offset {upload.length})",
                           offset=upload.length)
        with self._locked(upload.id) as mine:
            if not mine:
                raise Conflict(f"another request is writing upload {upload.id} right now; "
                               "ask HEAD for its offset and continue from there")
            current = self.uploads.get(upload.id)
            if current is None or current.owner != upload.owner:
                raise NotFound(f"no upload {upload.id!r}")
            if offset != current.offset:
                raise Conflict(f"Upload-Offset {offset} does not match the upload's offset {current.offset}; "
                               "ask HEAD for the offset and continue from there", offset=current.offset)
            room = current.length - current.offset
            if declared is not None and declared > room:
                raise BadRequest(f"the body ({declared} bytes) goes past Upload-Length {current.length}: "
                                 f"only {room} bytes remain from offset {current.offset}")
            written, hasher = self._write(current, body, room, check)
            now_offset = current.offset + written
            self.uploads.advance(upload.id, now_offset, written, time.time() + expiry)
            current = replace(current, offset=now_offset, appended=current.appended + written)
            if now_offset < current.length:
                return current, None
            stored = self._complete(current, hasher, expiry)
            return replace(current, digest=stored.digest), stored

    def _write(self, upload: Upload, body: ReadableInto, room: int,
               check: tuple[hashlib._Hash, bytes] | None) -> tuple[int, hashlib._Hash | None]:
        """Append the body at the upload's offset, feeding the hash state; undo on any failure.

        The PATCH answers once its bytes are on disk, without waiting for their hashing (unless it
        carries an Upload-Checksum, which must be checked first, or is the last one): the next PATCH
        is received and written while this one's last chunks are hashed (`Hashing(after=…)` keeps
        the order), so the hashing core never waits for a PATCH's end, its answer, the next request
        and the Redis round trips. The hash state is the one kept by the previous PATCH, fed in
        place: a PATCH that fails drops it, and the upload is then hashed from disk once complete."""
        with _HASHERS_LOCK:
            state = _HASHERS.pop(upload.id, None)
        if state is not None and state.offset == upload.offset:
            hasher, previous = state.hasher, state.pending
        elif upload.offset == 0:
            hasher, previous = new_hasher(), None
        else:
            hasher, previous = None, None  # lost (restart, another process): hashed from disk once complete
        path = self.path(upload.id)
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            raise NotFound(f"no upload {upload.id!r}") from None
        hashing = Hashing(*(h for h in (hasher, check[0] if check else None) if h is not None), after=previous)
        try:
            os.ftruncate(fd, upload.offset)  # bytes of a PATCH that died half-way are not data
            written = _copy(body, fd, upload, room, hashing)
            if check is not None or upload.offset + written == upload.length:
                hashing.wait()
            else:
                hashing.close()
            if check is not None and check[0].digest() != check[1]:
                raise ChecksumMismatch(f"the body's {check[0].name} does not match Upload-Checksum; "
                                       "nothing was kept, send it again")
            if written and upload.offset + written == upload.length:
                os.fsync(fd)
        except BaseException as exc:
            hashing.wait()  # the state has seen bytes that are not kept: it is not stored again
            os.ftruncate(fd, upload.offset)
            if isinstance(exc, OSError):
                raise_if_full(exc)
            raise
        finally:
            os.close(fd)
        if hasher is not None:
            with _HASHERS_LOCK:
                _HASHERS[upload.id] = _HashState(upload.offset + written, hasher, hashing)
        return written, hasher

    def _complete(self, upload: Upload, hasher: hashlib._Hash | None, expiry: float) -> Stored:
        """All bytes are in: into the content store (dedup, media check, owner, atomic rename)."""
        with _HASHERS_LOCK:
            _HASHERS.pop(upload.id, None)
        digest = hasher.hexdigest() if hasher is not None else None
        try:
            stored = self.store.commit(FinishedFile(self.path(upload.id), upload.length, digest),
                                       source="upload", owner=upload.owner, name=upload.name)
        except BaseException:
            self.remove(upload.id)  # refused (hostile media, full disk …): nothing stays behind
            raise
        self.uploads.finish(upload.id, stored.digest, time.time() + expiry)
        return stored

    # Termination and expiry --------------------------------------------------------------------------
    def remove(self, upload_id: str) -> None:
        """Forget an upload and delete its bytes (tus termination, expiry, a refused commit)."""
        with _HASHERS_LOCK:
            _HASHERS.pop(upload_id, None)
        self.uploads.drop(upload_id)
        self.path(upload_id).unlink(missing_ok=True)

    def terminate(self, upload: Upload) -> None:
        with self._locked(upload.id) as mine:
            if not mine:
                raise Conflict(f"a request is writing upload {upload.id} right now; delete it afterwards")
            self.remove(upload.id)

    @contextlib.contextmanager
    def _locked(self, upload_id: str) -> Iterator[bool]:
        """The upload's one-writer lock, not waited for: True inside when this request holds it."""
        lock = self.uploads.lock(upload_id)
        if not lock.acquire():
            yield False
            return
        try:
            yield True
        finally:
            try:
                lock.release()
            except Exception:  # noqa: BLE001 - an expired lock is not this request's failure
                log.warning("upload %s: its lock had expired before the request finished", upload_id)

    def expire(self, upload_id: str, now: float | None = None) -> bool:
        """Remove the upload if it is still past its expiry; True if removed. A PATCH writing it
        right now holds its lock and moves the expiry on: then it is left alone."""
        with self._locked(upload_id) as mine:
            if not mine:
                return False
            upload = self.uploads.get(upload_id)
            if upload is not None and upload.expires >= (now or time.time()):
                return False  # a PATCH came in meanwhile
            self.remove(upload_id)
            return True

    def sweep(self, now: float | None = None, *, orphan_age: float | None = None) -> int:
        """Remove expired uploads (records, files, held bytes); how many. With `orphan_age`, also
        `.part` files that no record names and that nothing wrote to for that many seconds (left
        by a crash between the two, or a Redis that lost its data)."""
        removed = sum(self.expire(upload_id, now) for upload_id in self.uploads.expired(now))
        if orphan_age is not None and self.dir.is_dir():
            limit = (now or time.time()) - orphan_age
            for path in self.dir.glob("*.part"):
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < limit and self.uploads.get(path.stem) is None:
                        path.unlink()
                        removed += 1
        if removed:
            log.info("swept %d expired uploads", removed)
        return removed


class UploadSweeper:
    """Sweeps expired uploads in the background of a web process, every `interval` seconds.

    Several web processes may share Redis and the store: each wakes up once per interval, and the
    one that takes the sweep lock (`Uploads.sweep_turn`, left to lapse) sweeps, so the store is
    swept about once per interval in all. Creating an upload sweeps too, as before; this covers a
    server where nobody creates one.
    """

    def __init__(self, store: UploadStore, interval: float, expiry: float) -> None:
        self.store, self.interval, self.expiry = store, interval, expiry
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="upload-sweeper", daemon=True)

    def start(self) -> UploadSweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def tick(self) -> int | None:
        """One turn: the number swept, or None when another process holds the sweep lock."""
        if not self.store.uploads.sweep_turn(self.interval, self.holder):
            return None
        return self.store.sweep(orphan_age=self.expiry)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - Redis away or a disk error: try again next time
                log.exception("sweeping expired uploads failed; trying again in %g s", self.interval)
