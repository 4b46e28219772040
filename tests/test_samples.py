"""Sample assets: generated without downloads, registered as `cat` and `testvideo`, idempotent."""

from __future__ import annotations

import pytest

from l1web import samples
from l1web.engine import ffmpeg


@pytest.fixture()
def registered(store, state) -> dict[str, str]:
    return samples.ensure_samples(store, state.cache)


def test_cat_is_a_registered_png_image(registered, state):
    meta = state.cache.get(registered["cat"])
    assert state.cache.asset("cat") == registered["cat"]
    assert (meta.kind, meta.format, meta.width, meta.height) == ("image", "png", 512, 512)
    assert meta.source == "sample"


def test_testvideo_is_three_seconds_of_h264_with_aac(registered, store):
    path = store.path_for(registered["testvideo"])
    probe = ffmpeg.probe(path)
    codecs = {s["codec_type"]: s["codec_name"] for s in probe["streams"]}
    assert codecs == {"video": "h264", "audio": "aac"}
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"], video["pix_fmt"]) == (320, 240, "yuv420p")
    assert float(probe["format"]["duration"]) == pytest.approx(3.0, abs=0.1)


def test_testvideo_has_its_index_up_front_for_streaming(registered, store):
    head = store.path_for(registered["testvideo"]).read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))


def test_samples_are_made_once(registered, store, state, monkeypatch):
    def refuse(_path):
        raise AssertionError("sample regenerated although it is registered")

    monkeypatch.setitem(samples.SAMPLES, "cat", (".png", refuse))
    monkeypatch.setitem(samples.SAMPLES, "testvideo", (".mp4", refuse))
    assert samples.ensure_samples(store, state.cache) == registered


def test_generation_is_deterministic(tmp_path):
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    samples.make_cat(first)
    samples.make_cat(second)
    assert first.read_bytes() == second.read_bytes()


def test_a_deleted_sample_file_is_made_again(registered, store, state):
    store.location(registered["cat"]).unlink()
    again = samples.ensure_samples(store, state.cache)
    assert again["cat"] == registered["cat"] and store.has(registered["cat"])


def test_samples_cannot_be_deleted_while_named(registered, store):
    from l1web.errors import Conflict

    with pytest.raises(Conflict, match="asset:cat"):
        store.delete(registered["cat"])


def test_a_start_waits_for_the_process_making_them(store, state):
    """Another process holds the start-up lock: this one makes nothing and goes on after `wait`."""
    from l1web.state import keys

    held = state.redis.lock(keys.samples_lock(), timeout=30)
    assert held.acquire(blocking=False)
    try:
        assert samples.ensure_samples_once(store, state, wait=0.3) is None
        assert state.cache.assets() == {}
    finally:
        held.release()
    made = samples.ensure_samples_once(store, state, wait=0.3)
    assert set(made) == {"cat", "testvideo"} and state.cache.assets() == made
    assert not state.redis.exists(keys.samples_lock())


def test_configured_tool_paths_are_checked(tmp_path, settings):
    try:
        ffmpeg.configure(settings.with_changes(ffprobe=str(tmp_path / "missing-ffprobe")))
        with pytest.raises(ffmpeg.FFmpegError, match="FFPROBE=.* is not an executable file"):
            ffmpeg.ffprobe_exe()
    finally:
        ffmpeg.configure(settings)
    assert ffmpeg.ffprobe_exe()
