"""Probing without ffprobe (PyAV, l1web.engine.avprobe) gives the engine what ffprobe gives it.

Media is generated with the real ffmpeg; each file is probed twice through `ffmpeg.probe`: once
with the ffprobe binary, once with it hidden (so the PyAV child runs). The fields the engine
reads must be identical, and so must everything derived from them (detected facts, clip info),
so cache ids and analysis results do not depend on which prober a machine has.
"""

from __future__ import annotations

import pytest

from l1web.engine import avprobe, ffmpeg
from l1web.engine.media import detect
from l1web.engine.steps.task import clip_info
from tests.engine.conftest import make

#: (file name, ffmpeg arguments): a video with audio, a rotated one, VP9 in WebM, audio, an image.
MEDIA = {
    "av.mp4": ("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=2", "-f", "lavfi",
               "-i", "sine=frequency=440:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
               "-c:a", "aac", "-shortest", "-movflags", "+faststart"),
    "rate.mp4": ("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=30000/1001:duration=1", "-c:v", "libx264",
                 "-pix_fmt", "yuv420p"),
    "vp9.webm": ("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=1", "-c:v", "libvpx-vp9"),
    "tone.wav": ("-f", "lavfi", "-i", "sine=frequency=220:duration=1.5"),
    "tone.m4a": ("-f", "lavfi", "-i", "sine=frequency=220:duration=1.5", "-c:a", "aac"),
    "still.png": ("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1"),
}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("probe")
    files = {name: make(root / name, *args) for name, args in MEDIA.items()}
    rotated = root / "rotated.mp4"
    ffmpeg.run([ffmpeg.ffmpeg_exe(), "-v", "error", "-y", "-i", str(files["av.mp4"]), "-metadata:s:v:0", "rotate=90",
                "-c", "copy", str(rotated)], timeout=30)
    files["rotated.mp4"] = rotated
    return files


@pytest.fixture
def without_ffprobe(monkeypatch):
    """Make `ffmpeg.probe` take the PyAV path, as on a machine with only imageio-ffmpeg."""
    monkeypatch.setattr(ffmpeg, "ffprobe_exe", lambda: None)


def _both(path, monkeypatch, *, safe: bool) -> tuple[dict, dict]:
    assert ffmpeg.ffprobe_exe(), "ffprobe is installed by devtools/ensure-test-tools.sh"
    with_ffprobe = ffmpeg.probe(path, safe=safe)
    with monkeypatch.context() as patch:
        patch.setattr(ffmpeg, "ffprobe_exe", lambda: None)
        with_pyav = ffmpeg.probe(path, safe=safe)
    return with_ffprobe, with_pyav


@pytest.mark.parametrize("name", [*MEDIA, "rotated.mp4"])
def test_fallback_probe_matches_ffprobe(media, monkeypatch, name):
    ffprobe_result, pyav_result = _both(media[name], monkeypatch, safe=True)
    assert avprobe.engine_view(pyav_result) == avprobe.engine_view(ffprobe_result)
    assert pyav_result["streams"], "a real probe result, not an empty one"


def test_rotation_is_read(media, without_ffprobe):
    data = ffmpeg.probe(media["rotated.mp4"], safe=True)
    assert avprobe.engine_view(data)["streams"][0]["rotation"] in (90, -90)


@pytest.mark.parametrize("name", ["av.mp4", "rate.mp4", "tone.wav", "vp9.webm"])
def test_detected_facts_and_clip_info_match(media, monkeypatch, name):
    facts, clip = detect(media[name]), clip_info(media[name])
    monkeypatch.setattr(ffmpeg, "ffprobe_exe", lambda: None)
    assert detect(media[name]) == facts
    assert clip_info(media[name]) == clip


def test_fallback_keeps_the_demuxer_allow_list(tmp_path, without_ffprobe):
    nut = make(tmp_path / "clip.nut", "-f", "lavfi", "-i", "testsrc2=size=64x48:duration=0.2", "-f", "nut")
    with pytest.raises(ffmpeg.FFmpegError):
        ffmpeg.probe(nut, safe=True)
    assert ffmpeg.probe(nut)["streams"][0]["codec_type"] == "video"


def test_fallback_error_on_garbage_is_an_ffmpeg_error(tmp_path, without_ffprobe):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not media at all" * 64)
    with pytest.raises(ffmpeg.FFmpegError, match=r"^ffprobe \(PyAV\) failed"):
        ffmpeg.probe(junk, safe=True)


@pytest.mark.parametrize("name", ["av.mp4", "rate.mp4", "vp9.webm", "rotated.mp4"])
def test_frame_index_without_ffprobe_matches(media, monkeypatch, name):
    """Chunk planning (`analysis.constant_rate`), exact seeks and a chunk's view of its input read
    the frame index: without ffprobe it comes from PyAV, with the same times, stream and verdicts."""
    from l1web.engine.analysis import constant_rate
    from l1web.engine.effects.video import chunk_video
    from l1web.engine.steps import seek

    seek._frame_index.cache_clear()
    with_ffprobe = seek.frame_index(media[name])
    cfr, chunk = constant_rate(media[name]), chunk_video(media[name])
    seek._frame_index.cache_clear()
    monkeypatch.setattr(ffmpeg, "ffprobe_exe", lambda: None)
    with_pyav = seek.frame_index(media[name])
    seek._frame_index.cache_clear()
    assert with_ffprobe is not None and with_pyav is not None
    assert len(with_ffprobe.times) > 5, "a real index, not an empty one"
    assert list(with_pyav.times) == pytest.approx(list(with_ffprobe.times), abs=1e-6)
    assert with_pyav.seekable == with_ffprobe.seekable
    view = avprobe.engine_view
    assert view({"streams": [with_pyav.stream]}) == view({"streams": [with_ffprobe.stream]})
    assert cfr is True, "these clips are constant-rate: the verdict compared is a real one"
    assert constant_rate(media[name]) == cfr
    assert chunk_video(media[name]) == chunk
    seek._frame_index.cache_clear()


@pytest.mark.parametrize("suffix", ["mp4", "mkv", "ts"])
def test_frame_timestamps_without_ffprobe_match(tmp_path, monkeypatch, suffix):
    """Chunk planning (`constant_rate`) and seeking (`frame_index`) read packet times through PyAV
    where there is no ffprobe: the same times, the same container verdict, the same rates."""
    from l1web.engine.analysis import constant_rate
    from l1web.engine.steps import seek

    clip = make(tmp_path / f"gop.{suffix}", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=30000/1001:duration=3",
                "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p")
    seek._frame_index.cache_clear()
    index, cfr = seek.frame_index(clip), constant_rate(clip)
    seek._frame_index.cache_clear()
    monkeypatch.setattr(ffmpeg, "ffprobe_exe", lambda: None)
    try:
        fallback = seek.frame_index(clip)
        assert constant_rate(clip) == cfr
    finally:
        seek._frame_index.cache_clear()
    assert index is not None and fallback is not None
    assert list(fallback.times) == list(index.times) and len(index.times) == 90
    assert fallback.seekable == index.seekable == (suffix != "ts")
    for key in ("avg_frame_rate", "r_frame_rate", "codec_type"):
        assert fallback.stream[key] == index.stream[key]


@pytest.mark.parametrize("name", ["av.mp4", "rate.mp4", "vp9.webm"])
def test_an_own_render_probed_in_process_gives_the_same_facts(media, name):
    """Chunks are probed in process (`ffmpeg.probe_own`) when stored and joined: the same facts and
    frame counts as the ffprobe child gives, so nothing stored depends on which one ran."""
    from l1web.engine.steps.join import frame_count
    from l1web.store.facts import describe

    assert ffmpeg.ffprobe_exe(), "ffprobe is installed by devtools/ensure-test-tools.sh"
    assert detect(media[name], own=True) == detect(media[name])
    assert describe(media[name], own=True) == describe(media[name])
    counted = int(next(s for s in ffmpeg.probe(media[name], safe=True)["streams"]
                       if s["codec_type"] == "video").get("nb_frames", 0))
    assert frame_count(media[name]) == counted and (counted > 0 or name.endswith(".webm"))


def test_a_broken_own_render_is_an_ffmpeg_error(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not media at all" * 64)
    with pytest.raises(ffmpeg.FFmpegError, match=r"^ffprobe \(PyAV\) failed"):
        ffmpeg.probe_own(junk)
