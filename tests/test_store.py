"""ContentStore against the real Redis fixture: ingest, dedup, limits, disk full, verification."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l1web.errors import BadRequest, CorruptItem, InsufficientStorage, InvalidHash, NotFound, PayloadTooLarge
from l1web.store import STALE_TEMP_AGE, ContentStore, names
from l1web.store import names as store_names
from tests.helpers import slow_flushes_and_renames

DATA = b"the quick brown fox jumps over the lazy dog\n" * 1000


def sha3(data: bytes) -> str:
    return hashlib.sha3_256(data).hexdigest()


def temp_files(store: ContentStore) -> list[Path]:
    return list(store.tmp.iterdir())


def test_round_trip_returns_the_same_bytes_under_their_sha3(store):
    stored = store.put_stream(io.BytesIO(DATA), source="test")
    assert stored.digest == sha3(DATA)
    assert stored.new
    assert store.path_for(stored.digest).read_bytes() == DATA
    assert store.meta(stored.digest).size == len(DATA)


def test_items_fan_out_by_the_first_two_hex_characters(store):
    digest = store.put_bytes(DATA, source="test").digest
    assert store.location(digest) == store.root / digest[:2] / digest
    assert store.location(digest).is_file()


@given(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
def test_location_and_digest_for_are_exact_inverses(digest):
    root = Path("/cache-root")
    assert names.digest_for(root, names.location(root, digest)) == digest


def test_digest_for_refuses_paths_that_location_would_not_produce(store):
    digest = sha3(b"x")
    with pytest.raises(InvalidHash):
        store.digest_for(store.root / "zz" / digest)
    with pytest.raises(InvalidHash):
        store.digest_for(store.root / digest)


@pytest.mark.parametrize("bad", [
    "A" * 64, "a" * 63, "a" * 65, "g" * 64, "a" * 63 + "\n", "a" * 63 + "\x00", "../" + "a" * 61,
    "*" * 64, "\u0661" * 64, "",
])
def test_malformed_digests_are_refused(store, bad):
    with pytest.raises(InvalidHash):
        store.path_for(bad)
    assert not store.has(bad)


def test_same_bytes_twice_is_a_no_op(store, state):
    first = store.put_bytes(DATA, source="test", owner="alice")
    second = store.put_bytes(DATA, source="other", owner="bob")
    assert second.digest == first.digest and not second.new
    assert second.meta.created == first.meta.created and second.meta.owner == "alice"
    assert len(list(store.root.glob("??/*"))) == 1
    assert state.cache.count() == 1
    assert [m.digest for m in state.cache.list(limit=10, owner="bob").items] == [first.digest]


def test_zero_byte_upload_is_refused_and_leaves_nothing(store, state):
    with pytest.raises(BadRequest, match="zero-byte"):
        store.put_stream(io.BytesIO(b""), source="test")
    assert temp_files(store) == [] and state.cache.count() == 0


def test_oversized_upload_is_refused_and_leaves_nothing(store, state):
    with pytest.raises(PayloadTooLarge):
        store.put_stream(io.BytesIO(DATA), source="test", max_bytes=len(DATA) - 1)
    assert temp_files(store) == [] and state.cache.count() == 0
    assert not store.location(sha3(DATA)).exists()


def test_upload_of_exactly_the_limit_is_accepted(store):
    assert store.put_stream(io.BytesIO(DATA), source="test", max_bytes=len(DATA)).new


def test_disk_full_from_write_is_507_and_leaves_nothing(store, state, monkeypatch):
    """Injected: os.write raises ENOSPC part-way through (the fallback the brief allows)."""
    real_write = os.write
    calls = {"n": 0}

    def failing_write(fd, data):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(InsufficientStorage):
        store.put_stream(io.BytesIO(os.urandom(3 * 1024 * 1024)), source="test")
    monkeypatch.undo()
    assert temp_files(store) == [] and state.cache.count() == 0
    assert list(store.root.glob("??/*")) == []


def test_a_small_upload_is_flushed_in_the_background_and_renamed_only_after(store, monkeypatch):
    """Issue 19: a small ingest's fsync overlaps its hashing and the index read; its name in the
    store (the commit point) still comes after the flush, and the digest is of the bytes written."""
    events = slow_flushes_and_renames(monkeypatch, "fsync_and_close")
    real_get_locked = store.index.get_locked

    def get_locked(digest):
        events.append("index read")
        return real_get_locked(digest)

    monkeypatch.setattr(store.index, "get_locked", get_locked)
    data = os.urandom(1024 * 1024 + 5)
    buffer = bytearray(data[:1024 * 1024])
    writer = store.writer(None)
    writer.write(buffer)
    buffer[:] = bytes(len(buffer))  # the caller reuses its buffer: the bytes written are what is hashed
    writer.write(data[1024 * 1024:])
    stored = store.commit(writer, source="upload")
    final = store.location(stored.digest).parent.name
    assert events == ["index read", "flushed", f"renamed into {final}"]  # hashed and looked up while flushing
    assert stored.digest == sha3(data) and store.location(stored.digest).read_bytes() == data


def test_a_small_upload_whose_flush_fails_is_507_and_leaves_nothing(store, state, monkeypatch):
    from l1web.store import ingest

    def failing_flush(fd):
        os.close(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ingest, "fsync_and_close", failing_flush)
    with pytest.raises(InsufficientStorage):
        store.put_bytes(b"a small upload the disk cannot keep", source="upload")
    monkeypatch.undo()
    assert temp_files(store) == [] and state.cache.count() == 0
    assert list(store.root.glob("??/*")) == []
    assert store.put_bytes(b"a small upload the disk cannot keep", source="upload").new


@pytest.fixture()
def tiny_disk(tmp_path):
    """A real 1 MiB tmpfs (we run as root); skipped where the sandbox forbids mounting."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          check=False, capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_on_a_real_tiny_filesystem_is_507_and_leaves_nothing(tiny_disk, state):
    store = ContentStore(tiny_disk / "cache", state.cache)
    with pytest.raises(InsufficientStorage):
        store.put_stream(io.BytesIO(os.urandom(2 * 1024 * 1024)), source="test")
    assert temp_files(store) == [] and state.cache.count() == 0
    small = store.put_bytes(b"still works after the failure", source="test")
    assert store.path_for(small.digest).read_bytes() == b"still works after the failure"


def test_put_file_consumes_the_file(store, tmp_path):
    source = tmp_path / "render-output.bin"
    source.write_bytes(DATA)
    digest = store.put_file(source, source="render")
    assert digest == sha3(DATA) and not source.exists()
    assert store.has(digest)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_an_image_the_engine_wrote_is_stored_under_the_hash_taken_as_it_was_written(store, tmp_path, monkeypatch, fmt):
    """`engine.written.save_image` hashes the bytes as the encoder writes them; the store takes that
    digest instead of reading the file back (issue 19), and it is the SHA3 of the stored bytes."""
    from PIL import Image

    import l1web.store as store_module
    from l1web.engine import written
    from l1web.store import facts, ingest

    part = tmp_path / f".out.part.{fmt.lower()}"
    written.save_image(Image.new("RGB", (64, 48), (200, 30, 90)), part, fmt)
    source = part.with_name(f"out.{fmt.lower()}")
    part.rename(source)  # as renders do: written under a temporary name, renamed into place
    data = source.read_bytes()

    def not_read_back(path):
        raise AssertionError(f"{path} was read back to be hashed")

    def not_described(path, **_):
        raise AssertionError(f"{path} was opened again to be described")

    monkeypatch.setattr(ingest, "hash_file", not_read_back)
    monkeypatch.setattr(store_module, "describe", not_described)
    digest = store.put_file(source, source="render")
    assert digest == sha3(data) and store.path_for(digest).read_bytes() == data
    # The facts the writer gave are those detection finds in the stored file.
    assert facts.describe(store.path_for(digest)) == facts.MediaFacts(
        **{k: getattr(store.meta(digest), k) for k in ("kind", "format", "mimetype", "width", "height", "duration")})


def test_an_image_changed_after_it_was_written_is_hashed_again(store, tmp_path):
    """The remembered digest is only for the file as written: changed bytes are hashed as they are."""
    from PIL import Image

    from l1web.engine import written

    source = tmp_path / "render-output.png"
    written.save_image(Image.new("RGB", (64, 48), (200, 30, 90)), source, "PNG")
    source.write_bytes(DATA)  # another writer, other bytes (another size and time)
    digest = store.put_file(source, source="render")
    assert digest == sha3(DATA) and store.path_for(digest).read_bytes() == DATA
    assert written.take(source) is None  # nothing left behind for that name


def test_a_new_file_where_a_remembered_one_was_deleted_is_hashed_as_it_is(store, tmp_path):
    """A deleted file's inode number could be given to the next file made; with the same size and
    a time in the same clock tick it would have matched the deleted file's remembered digest.
    The writer holds what it wrote open until its digest is taken, so the inode stays its own."""
    from PIL import Image

    from l1web.engine import written

    first = tmp_path / "out.png"
    written.save_image(Image.new("RGB", (64, 48), (200, 30, 90)), first, "PNG")
    size, mtime = first.stat().st_size, first.stat().st_mtime_ns
    first.unlink()  # a render that failed after writing: nobody takes its digest
    other = os.urandom(size)
    second = tmp_path / "other.png"
    second.write_bytes(other)
    os.utime(second, ns=(mtime, mtime))  # the same size and time: only the inode tells them apart
    digest = store.put_file(second, source="render")
    assert digest == sha3(other) and store.path_for(digest).read_bytes() == other


def test_the_writer_holds_at_most_its_bound_of_files_open(tmp_path, monkeypatch):
    """Each remembered file is held open until taken; the oldest are let go beyond the bounds, and
    a taken one is closed at once."""
    from PIL import Image

    from l1web.engine import written

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    monkeypatch.setattr(written, "_remembered", {})  # what earlier tests left is not counted here
    monkeypatch.setattr(written, "MAX_REMEMBERED", 2)
    before = open_fds()
    paths = [tmp_path / f"out-{index}.png" for index in range(4)]
    for path in paths:
        written.save_image(Image.new("RGB", (8, 8), (index := paths.index(path), 0, 0)), path, "PNG")
    assert open_fds() == before + 2
    assert written.take(paths[0]) is None and written.take(paths[1]) is None  # let go: hashed anew
    assert written.take(paths[3]) is not None and open_fds() == before + 1
    monkeypatch.setattr(written, "MAX_HELD_BYTES", 1)
    written.save_image(Image.new("RGB", (8, 8), (index, 1, 0)), tmp_path / "big.png", "PNG")
    assert open_fds() == before + 1 and written.take(paths[2]) is None  # over the bytes: the oldest went
    assert written.take(tmp_path / "big.png") is not None and open_fds() == before


def test_the_plans_analysis_of_a_stored_image_uses_its_recorded_facts(store, monkeypatch):
    """The analysis of a stored image is the one detection gives, without opening it again: the
    index recorded those facts when it was stored (`ContentStore.path_and_image`)."""
    from PIL import Image

    from l1web.engine import analysis, media
    from l1web.engine.dag import Dag, Node

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(buffer, "JPEG")
    digest = store.put_bytes(buffer.getvalue(), source="upload").digest
    dag = Dag(nodes={"in": Node("in", "SOURCE", {"hash": digest})}, output="in")
    detected = analysis.analyze_file(store.path_for(digest), digest, ["metadata"])

    def not_opened(path, **_):
        raise AssertionError(f"{path} was opened again for its facts")

    monkeypatch.setattr(analysis, "detect", not_opened)
    assert analysis.analyze(dag, store, features=["metadata"])[digest] == detected
    assert detected["media"] == media.MediaInfo("image", "jpeg", 64, 48).to_dict()


def test_recorded_image_facts_beyond_the_pixel_limit_are_refused_as_detection_refuses_them(store, state):
    """Facts taken from the index pass the same checks as detected ones."""
    from l1web.engine import analysis, media
    from l1web.engine.dag import Dag, Node
    from l1web.state import keys

    digest = store.put_bytes(DATA, source="upload").digest  # "other" bytes, then an index claiming a huge image
    state.redis.hset(keys.cache_item(digest), mapping={"kind": "image", "format": "png",
                                                       "width": 100_000, "height": 100_000})
    dag = Dag(nodes={"in": Node("in", "SOURCE", {"hash": digest})}, output="in")
    with pytest.raises(media.HostileMedia, match="MPixel limit"):
        analysis.analyze(dag, store, features=["metadata"])


def test_has_is_false_for_unknown_items(store):
    assert not store.has(sha3(b"never stored"))
    with pytest.raises(NotFound):
        store.path_for(sha3(b"never stored"))


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_corrupted_file_is_quarantined_and_never_served(store, state):
    digest = store.put_bytes(DATA, source="test").digest
    corrupt(store.location(digest))
    with pytest.raises(CorruptItem, match="integrity check failed"):
        store.path_for(digest)
    assert not store.location(digest).exists()
    assert [p.name.split(".")[0] for p in store.quarantine_dir.iterdir()] == [digest]
    assert "integrity check failed" in state.cache.quarantined()[digest]["reason"]
    assert state.cache.count() == 0
    with pytest.raises(CorruptItem):
        store.path_for(digest)
    with pytest.raises(CorruptItem):
        store.meta(digest)


def test_uploading_the_good_bytes_again_heals_a_quarantined_item(store, state):
    digest = store.put_bytes(DATA, source="test").digest
    corrupt(store.location(digest))
    with pytest.raises(CorruptItem):
        store.path_for(digest)
    assert store.put_bytes(DATA, source="test").new
    assert store.path_for(digest).read_bytes() == DATA
    assert digest not in state.cache.quarantined()


def test_verification_is_cached_until_the_file_changes(store, monkeypatch):
    digest = store.put_bytes(DATA, source="test").digest
    hashed = []
    real = store_names.hash_file
    monkeypatch.setattr("l1web.store.hash_file", lambda p: hashed.append(p) or real(p))
    for _ in range(5):
        store.path_for(digest)
    assert hashed == []
    path = store.location(digest)
    before = path.stat()
    corrupt(path)  # same size; put the old mtime back: only ctime/inode betray the change
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(CorruptItem):
        store.path_for(digest)
    assert len(hashed) == 1


def test_stale_temp_files_are_swept_at_start(settings, state):
    first = ContentStore(settings.cache_dir, state.cache)
    stale = first.tmp / "ingest-crashed.part"
    fresh = first.tmp / "ingest-inflight.part"
    stale.write_bytes(b"left by a crash")
    fresh.write_bytes(b"another process is still writing")
    old = time.time() - STALE_TEMP_AGE - 60
    os.utime(stale, (old, old))
    ContentStore(settings.cache_dir, state.cache)
    assert not stale.exists() and fresh.exists()


def test_an_item_the_index_forgot_is_indexed_again_on_read(store, state, redis_client):
    digest = store.put_bytes(DATA, source="test").digest
    redis_client.flushdb()
    assert store.path_for(digest).read_bytes() == DATA
    assert state.cache.get(digest).source == "recovered"


@pytest.mark.parametrize("size", [1, 1024 * 1024 + 7, 4 * 1024 * 1024, 9 * 1024 * 1024 + 3],
                         ids=["tiny", "inline", "at the inline limit", "inline, then threads"])
def test_small_ingests_inline_and_large_ones_threaded_store_the_same_bytes(store, size):
    """Issue 19: the first 4 MiB are hashed and written in the caller's thread, the rest by threads."""
    from l1web.store.ingest import INLINE_BYTES

    data = os.urandom(size)
    writer = store.writer(None)
    for start in range(0, size, 1024 * 1024):
        writer.write(data[start:start + 1024 * 1024])
    assert bool(writer._threads) == (size > INLINE_BYTES)  # noqa: SLF001 - the path taken is the point
    stored = store.commit(writer, source="test")
    assert stored.digest == hashlib.sha3_256(data).hexdigest()
    assert store.path_for(stored.digest).read_bytes() == data
