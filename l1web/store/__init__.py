"""The content-addressed store: files named by the SHA3-256 of their bytes, indexed in Redis.

Layout under the root: `ab/abcdef…` (the item, fanned out by its first two hex characters),
`tmp/` (ingest in progress, same filesystem so the final rename is atomic), `work/` (one
directory per step a worker is rendering, see `l1web.jobs.runs`), `quarantine/`
(files whose bytes stopped matching their name), `thumbs/ab/abcdef….jpg` (previews).
Satisfies the engine's `Store` protocol (`has`, `path_for`, `put_file`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from l1web import trace
from l1web.engine.media import MediaInfo
from l1web.errors import BadRequest, Conflict, CorruptItem, NotFound, PayloadTooLarge
from l1web.state.cache import CacheIndex, ItemLock, ItemMeta
from l1web.store import names, thumbs
from l1web.store.facts import MediaFacts, describe, facts_of
from l1web.store.imports import open_for_import
from l1web.store.ingest import (
    CHUNK,
    TEMP_PREFIX,
    AdoptedFile,
    ArrivedDigest,
    PendingFile,
    Readable,
    TempWriter,
    raise_if_full,
)
from l1web.store.multipart import read_multipart
from l1web.store.names import check_digest, digest_for, hash_file

log = logging.getLogger(__name__)

#: Sources of items the engine's own ffmpeg has just rendered and no user has touched: chunks
#: (l1web.jobs.chunked.SOURCE_PREFIX), probed in process when stored (`ffmpeg.probe_own`).
OWN_RENDER_SOURCES = ("chunk:",)
#: Seconds after its last write that a temp file counts as abandoned (a crashed ingest).
STALE_TEMP_AGE = 3600.0
#: Directories under the root that are not fan-out directories.
TMP_DIR, QUARANTINE_DIR, THUMBS_DIR = "tmp", "quarantine", "thumbs"
#: Where workers render steps (`l1web.jobs.runs.WORK_DIR`); a crash leaves `step-*` folders here.
WORK_DIR, WORK_PREFIX = "work", "step-"


@dataclass(frozen=True)
class Stored:
    """The outcome of an ingest: the item's metadata and whether these bytes were new."""

    meta: ItemMeta
    new: bool

    @property
    def digest(self) -> str:
        return self.meta.digest


def signature(stat: os.stat_result) -> str:
    """Changes whenever the file's bytes may have: size, mtime, inode, ctime."""
    return f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}:{stat.st_ctime_ns}"


class ContentStore:
    """Files on disk under `root`, their metadata in `index`."""

    def __init__(self, root: Path, index: CacheIndex) -> None:
        self.root = Path(root)
        self.index = index
        self.tmp = self.root / TMP_DIR
        self.quarantine_dir = self.root / QUARANTINE_DIR
        self.thumbs = self.root / THUMBS_DIR
        for directory in (self.tmp, self.quarantine_dir, self.thumbs):
            directory.mkdir(parents=True, exist_ok=True)
        self.sweep_temp()

    # Names ----------------------------------------------------------------------------------------
    def location(self, digest: str) -> Path:
        """Where the item lives (unverified); `digest_for` is its exact inverse."""
        return names.location(self.root, digest)

    def digest_for(self, path: Path) -> str:
        return digest_for(self.root, path)

    def check_name(self, digest: str) -> str:
        """The digest itself, or InvalidHash (400): asked before anything is looked up."""
        return check_digest(digest)

    def thumb_path(self, digest: str) -> Path:
        return self.thumbs / digest[: names.FANOUT] / f"{check_digest(digest)}.jpg"

    # Reading ---------------------------------------------------------------------------------------
    def has(self, digest: str) -> bool:
        """True if the item is here with the right bytes: a recorded step output that was
        corrupted on disk is quarantined and reported missing, so the step renders again."""
        if not names.is_digest(digest):
            return False
        indexed, verified, quarantined = self.index.check(digest)  # one round trip
        if not indexed or quarantined is not None:
            return False
        try:
            self._verified_path(digest, indexed, verified)  # rehashes only if the file changed
        except (CorruptItem, NotFound):
            return False
        return True

    def meta(self, digest: str) -> ItemMeta:
        check_digest(digest)
        self._refuse_quarantined(digest)
        return self.index.require(digest)

    def path_for(self, digest: str) -> Path:
        """A path whose bytes hash to `digest`; quarantines and raises CorruptItem otherwise.

        The hash is recomputed only when the file's signature differs from the last verified one,
        so repeated range requests on a large video don't rehash it, but any change is caught.
        """
        return self.path_and_image(digest)[0]

    def path_and_image(self, digest: str) -> tuple[Path, MediaInfo | None]:
        """`path_for`, and what the index recorded of the item when it is an image (else None),
        from the same read: the plan's analysis need not open a fresh input to learn its format
        and size (detection recorded them when it was stored)."""
        check_digest(digest)
        indexed, verified, quarantined, image = self.index.check_image(digest)  # one round trip
        if quarantined is not None:
            raise CorruptItem(f"item {digest} is quarantined: {quarantined}")
        path = self._verified_path(digest, indexed, verified)
        return path, (MediaInfo("image", *image) if image and indexed else None)

    def _verified_path(self, digest: str, indexed: bool, verified: str | None) -> Path:
        path = self.location(digest)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise NotFound(f"no cached item {digest}") from None
        seen = signature(stat)
        if seen == verified:
            return path
        actual = hash_file(path)
        if actual != digest:
            self.quarantine(digest, f"integrity check failed: its bytes hash to {actual}")
            raise CorruptItem(f"integrity check failed for {digest}: the item has been quarantined")
        if indexed:
            self.index.set_verified(digest, seen)
        else:
            self._reindex(digest, path, seen)
        return path

    def _refuse_quarantined(self, digest: str) -> None:
        reason = self.index.quarantine_reason(digest)
        if reason is not None:
            raise CorruptItem(f"item {digest} is quarantined: {reason}")

    def _reindex(self, digest: str, path: Path, seen: str) -> None:
        """A verified file the index forgot (Redis lost its data) is indexed again."""
        facts = describe(path)
        meta = ItemMeta(digest=digest, size=path.stat().st_size, created=time.time(),
                        source="recovered", **vars(facts))
        self.index.record(meta, verified=seen)

    def thumbnail(self, digest: str) -> Path | None:
        """A JPEG preview of an image or a video's poster frame, made once; None for other kinds."""
        thumb = self.thumb_path(digest)
        if thumb.is_file():
            return thumb
        meta = self.meta(digest)
        if meta.kind not in thumbs.PREVIEW_KINDS:
            return None
        source = self.path_for(digest)
        return thumb if thumbs.make_thumbnail(source, meta.kind, thumb, duration=meta.duration) else None

    # Writing ---------------------------------------------------------------------------------------
    def put_stream(
        self, readable: Readable, *, source: str, owner: str | None = None,
        max_bytes: int | None = None, name: str | None = None, arrived: ArrivedDigest | None = None,
    ) -> Stored:
        """Ingest everything `readable` yields: hashed while written, never whole in memory.
        `arrived`: the digest of what `readable` yields, taken as it arrived (a small upload's body)."""
        writer = self.writer(max_bytes)
        writer.arrived = arrived
        try:
            writer.copy_from(readable, CHUNK)
        except BaseException:
            writer.discard()
            raise
        return self.commit(writer, source=source, owner=owner, name=name)

    def put_multipart(
        self, readable: Readable, boundary: bytes, *, source: str, owner: str | None = None,
        max_bytes: int | None = None,
    ) -> Stored:
        """Ingest the `file` part of a multipart/form-data body as it streams in."""
        writer = self.writer(max_bytes)
        try:
            form = read_multipart(readable, boundary, writer)
        except BaseException:
            writer.discard()
            raise
        return self.commit(writer, source=source, owner=owner, name=form.filename)

    def put_bytes(
        self, data: bytes, *, source: str, owner: str | None = None, name: str | None = None,
    ) -> Stored:
        writer = self.writer(None)
        try:
            writer.write(data)
        except BaseException:
            writer.discard()
            raise
        return self.commit(writer, source=source, owner=owner, name=name)

    def put_file(self, path: Path, *, source: str, owner: str | None = None) -> str:
        """Consume the file at `path` (a render output): store its bytes, remove it.

        On the store's own filesystem the file is moved in (no copy, no extra space needed).
        """
        if Path(path).stat().st_dev == self.tmp.stat().st_dev:
            return self.commit(AdoptedFile(Path(path), self.tmp), source=source, owner=owner).digest
        with open(path, "rb", buffering=0) as handle:
            digest = self.put_stream(handle, source=source, owner=owner).digest
        path.unlink(missing_ok=True)
        return digest

    def writer(self, max_bytes: int | None) -> TempWriter:
        """A temp writer in this store's filesystem; hand it to `commit` or `discard` it."""
        try:
            return TempWriter(self.tmp, max_bytes)
        except OSError as exc:
            raise_if_full(exc)
            raise

    def commit(self, writer: PendingFile, *, source: str, owner: str | None = None,
               name: str | None = None) -> Stored:
        """Give the temp file its content name (atomic rename) and index it; discards on error."""
        try:
            digest = writer.finish()
            trace.mark("store.hashed")  # and flushed (an upload), or flushing in the background (a render output)
            if writer.size == 0:
                raise BadRequest("empty upload: a zero-byte item cannot be stored")
            # The item's lock taken and the item read under it: one round trip (`get_locked`).
            known, verified, lock = self.index.get_locked(digest)
            try:
                refuse = source == "upload" or source.startswith("import:")
                own = source.startswith(OWN_RENDER_SOURCES)
                facts = None
                if known is None:
                    # An image the engine wrote is not opened again: its writer said what it is.
                    facts = facts_of(writer.info) if writer.info else describe(
                        writer.path, refuse_hostile=refuse, own=own)
                trace.mark("store.described")
                return self._install(writer, digest, known, facts, verified=verified, lock=lock, source=source,
                                     owner=owner, name=name)
            finally:
                lock.release()  # unless the record released it
        finally:
            writer.discard()

    def _install(self, writer: PendingFile, digest: str, known: ItemMeta | None, facts: MediaFacts | None, *,
                 verified: str | None, lock: ItemLock, source: str, owner: str | None, name: str | None) -> Stored:
        final = self.location(digest)
        try:
            current = signature(final.stat())
        except FileNotFoundError:
            current = None
        if known is None or current is None or current != verified:
            final.parent.mkdir(exist_ok=True)
            writer.durable()  # the bytes on disk before their name: the rename is the commit point
            trace.mark("store.durable")
            os.replace(writer.path, final)
            trace.mark("store.renamed")
            _fsync_dir(final.parent)
            trace.mark("store.dir_fsynced")
            current = signature(final.stat())
        meta = known or ItemMeta(digest=digest, size=writer.size, created=time.time(), source=source,
                                 owner=owner, name=_clean_name(name), **vars(facts or MediaFacts()))
        recorded = replace(meta, owner=owner or meta.owner)
        new = self.index.record_and_release(recorded, verified=current, lock=lock)  # one round trip
        trace.mark("store.indexed")
        # New: the index holds exactly `recorded`. Known: it keeps its first metadata; read it.
        return Stored(recorded if new else (self.index.get(digest) or meta), new)

    # Import ------------------------------------------------------------------------------------------
    def import_path(self, path: str, roots: Iterable[Path], *, owner: str | None = None,
                    max_bytes: int | None = None) -> Stored:
        """Copy a server-side file into the store: regular files inside an import root only."""
        fd, info, resolved = open_for_import(path, roots)
        with open(fd, "rb", buffering=0) as handle:
            if max_bytes is not None and info.st_size > max_bytes:
                raise PayloadTooLarge(f"{path!r} is larger than the limit of {max_bytes} bytes")
            return self.put_stream(handle, source=f"import:{resolved}", owner=owner,
                                   max_bytes=max_bytes, name=resolved.name)

    # Deletion and quarantine --------------------------------------------------------------------------
    def delete(self, digest: str) -> None:
        """Delete unless a run, an asset or a publication needs it (409 naming them)."""
        check_digest(digest)
        with self.index.lock(digest):
            outcome = self.index.delete_unless_referenced(digest)
            if not outcome.deleted:
                runs = [ref.removeprefix("run:") for ref in outcome.blockers if ref.startswith("run:")]
                raise Conflict(f"{digest} cannot be deleted: it is needed by {', '.join(outcome.blockers)}",
                               refs=list(outcome.blockers), runs=runs)
            self.location(digest).unlink(missing_ok=True)
            self.thumb_path(digest).unlink(missing_ok=True)

    def drop_unindexed_copy(self, digest: str) -> bool:
        """Delete this host's file of an item the index no longer has (a chunk removed after its
        join on another host); whether a file went.

        Under the item's lock, and only while the index still lacks it: the same bytes may have
        been stored again meanwhile (a forced re-run renders a chunk to the same digest), and
        `commit` renames the new file in and indexes it under that lock, so a sweep can never
        delete a file that was just stored.
        """
        if not self.location(digest).exists():
            return False  # the usual case: nothing to lock for
        with self.index.lock(digest):
            if self.index.get(digest) is not None:
                return False
            try:
                self.location(digest).unlink()
            except FileNotFoundError:
                return False
            return True

    def quarantine(self, digest: str, reason: str) -> None:
        """Move a file whose bytes no longer match its name out of the store, and say so."""
        log.error("quarantining %s: %s", digest, reason)
        target = self.quarantine_dir / f"{digest}.{time.time_ns()}"
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.location(digest), target)
        self.thumb_path(digest).unlink(missing_ok=True)
        self.index.quarantine(digest, reason)

    def sweep_temp(self, max_age: float = STALE_TEMP_AGE) -> int:
        """Remove temp files of a crashed ingest and work folders of a crashed render; how many.

        Only what nobody has written to for `max_age` goes: a render still running elsewhere
        keeps touching its output file, so its folder is never taken from under it.
        """
        cutoff = time.time() - max_age
        removed = 0
        for path in self.tmp.glob(f"{TEMP_PREFIX}*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        for folder in (self.root / WORK_DIR).glob(f"{WORK_PREFIX}*"):
            if _last_write(folder) < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        if removed:
            log.info("removed %d abandoned temp files and work folders from %s", removed, self.root)
        return removed


def _last_write(folder: Path) -> float:
    """The newest mtime of a folder and everything in it (0 if it vanished meanwhile)."""
    newest = 0.0
    for path in (folder, *folder.rglob("*")):
        with contextlib.suppress(FileNotFoundError):
            newest = max(newest, path.lstat().st_mtime)
    return newest


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Longest original file name kept for display.
MAX_NAME = 200


def _clean_name(name: str | None) -> str | None:
    """A display name only: path parts and control characters removed, never used as a path."""
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable())[:MAX_NAME]
    return base or None
