"""Effects on video: real ffmpeg on a generated clip; streams, sizes and decoded pixels checked."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pytest

from l1web.engine.effects import EffectError, get_effect, list_effects
from l1web.engine.effects.apply import apply_effect
from l1web.engine.effects.frames import apply_frames
from l1web.engine.effects.invert import invert_image
from l1web.engine.effects.video import decoder_args, encoder_args, probe_video
from l1web.engine.ffmpeg import INPUT_FLAGS, FFmpegError, ffmpeg, probe

TIMEOUT = 30.0  # seconds
WIDTH, HEIGHT = 160, 120
#: Mean absolute difference (0..255) allowed between a decoded output frame and the image
#: implementation run on the decoded source frame: two lossy encodes, 4:2:0 chroma, and for
#: blur ffmpeg's IIR approximation of the Gaussian.
TOLERANCE = {"blur": 6.0, "dog": 12.0}
DEFAULT_TOLERANCE = 4.0


def make_clip(
    path: Path, *, size: str = f"{WIDTH}x{HEIGHT}", audio: bool = True, pix_fmt: str = "yuv420p"
) -> Path:
    sources = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate=25:duration=1"]
    if audio:
        sources += ["-f", "lavfi", "-i", "sine=frequency=440:duration=1"]
    ffmpeg(
        *sources, "-c:v", "libx264", "-pix_fmt", pix_fmt, "-c:a", "aac", "-shortest", str(path)
    )
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "testsrc.mp4")


def frame_at(path: Path, index: int, size: tuple[int, int] = (WIDTH, HEIGHT)) -> np.ndarray:
    raw = ffmpeg(
        *INPUT_FLAGS, "-i", str(path), "-vf", f"select=eq(n\\,{index})", "-frames:v", "1",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
    )
    return np.frombuffer(raw, np.uint8).reshape(size[1], size[0], 3)


def streams(path: Path) -> dict[str, dict]:
    return {s["codec_type"]: s for s in probe(path)["streams"]}


def render(name: str, src: Path, tmp_path: Path, params: dict | None = None) -> Path:
    dst = tmp_path / f"{name}.mp4"
    apply_effect(get_effect(name), params or {}, src, dst, "video", timeout=TIMEOUT)
    return dst


@pytest.mark.parametrize("name", [e.name for e in list_effects()])
def test_video_output_is_web_h264_with_audio_and_source_duration(
    name: str, clip: Path, tmp_path: Path
) -> None:
    out = render(name, clip, tmp_path)
    found = streams(out)
    video, audio = found["video"], found["audio"]
    assert (video["codec_name"], video["pix_fmt"]) == ("h264", "yuv420p")
    assert (video["width"], video["height"]) == (WIDTH, HEIGHT)
    assert int(video["nb_frames"]) == 25
    assert audio["codec_name"] == "aac"
    assert float(probe(out)["format"]["duration"]) == pytest.approx(1.0, abs=0.1)


def test_mp4_has_moov_before_mdat_for_streaming(clip: Path, tmp_path: Path) -> None:
    head = render("invert", clip, tmp_path).read_bytes()[:4096]
    assert 0 <= head.find(b"moov") < head.find(b"mdat") or b"mdat" not in head


@pytest.mark.parametrize("name", [e.name for e in list_effects()])
def test_video_frame_matches_the_image_implementation(
    name: str, clip: Path, tmp_path: Path
) -> None:
    effect = get_effect(name)
    source = frame_at(clip, 12)
    expected = effect.image(source, effect.resolve_params({})).astype(float)
    actual = frame_at(render(name, clip, tmp_path), 12).astype(float)
    assert np.abs(actual - expected).mean() <= TOLERANCE.get(name, DEFAULT_TOLERANCE)


def test_inverted_video_frame_is_255_minus_source(clip: Path, tmp_path: Path) -> None:
    source = frame_at(clip, 0).astype(float)
    inverted = frame_at(render("invert", clip, tmp_path), 0).astype(float)
    assert np.abs(inverted - (255 - source)).mean() < DEFAULT_TOLERANCE


def test_grayscale_video_frame_has_equal_channels(clip: Path, tmp_path: Path) -> None:
    gray = frame_at(render("grayscale", clip, tmp_path), 5).astype(int)
    assert np.abs(gray[..., 0] - gray[..., 1]).max() <= 3
    assert np.abs(gray[..., 0] - gray[..., 2]).max() <= 3


def test_dog_video_is_mostly_white_paper(clip: Path, tmp_path: Path) -> None:
    gray = frame_at(render("dog", clip, tmp_path), 5)[..., 1]
    assert (gray > 200).mean() > 0.6
    assert (gray < 60).mean() > 0.02


def test_silent_source_gives_silent_output(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "silent.mp4", audio=False)
    for name in ("invert", "dog"):
        assert set(streams(render(name, src, tmp_path))) == {"video"}


def test_odd_sized_source_is_cropped_to_even_size(tmp_path: Path) -> None:
    # 4:4:4 allows odd sizes in the source; our 4:2:0 output cannot have them.
    src = make_clip(tmp_path / "odd.mp4", size="161x121", audio=False, pix_fmt="yuv444p")
    for name in ("invert", "dog"):
        video = streams(render(name, src, tmp_path))["video"]
        assert (video["width"], video["height"]) == (160, 120)


def test_rgb_frames_stream_through_numpy(clip: Path, tmp_path: Path) -> None:
    numpy_invert = dataclasses.replace(
        get_effect("invert"), video_filter=None, frame=invert_image, frame_format="rgb24"
    )
    dst = tmp_path / "numpy-invert.mp4"
    apply_effect(numpy_invert, {}, clip, dst, "video", timeout=TIMEOUT)
    source = frame_at(clip, 7).astype(float)
    assert np.abs(frame_at(dst, 7).astype(float) - (255 - source)).mean() < DEFAULT_TOLERANCE
    assert streams(dst)["audio"]["codec_name"] == "aac"


def child_pids() -> set[str]:
    children: set[str] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            children |= set((task / "children").read_text().split())
        except FileNotFoundError:
            # A thread (a pipe feeder, a pool's) ended between the listing and
            # the read; its children, if any, now belong to a thread still listed.
            continue
    return children


def test_timeout_kills_both_processes_and_leaves_no_output(clip: Path, tmp_path: Path) -> None:
    before = child_pids()
    dst = tmp_path / "late.mp4"
    with pytest.raises(FFmpegError, match="timed out"):
        apply_effect(get_effect("dog"), {"sigma": 10.0}, clip, dst, "video", timeout=0.05)
    assert child_pids() == before
    assert os.listdir(tmp_path) == []


def test_watchdog_stops_a_slow_frame_pipeline(clip: Path, tmp_path: Path) -> None:
    def slow(frame: np.ndarray) -> np.ndarray:
        time.sleep(0.1)
        return frame

    info = probe_video(clip, timeout=TIMEOUT)
    dst = tmp_path / "slow.mp4"
    before = child_pids()
    started = time.monotonic()
    with pytest.raises(FFmpegError, match="timed out"):
        apply_frames(
            slow, (HEIGHT, WIDTH),
            decoder_args(clip, "gray", info.fps),
            encoder_args(clip, dst, "gray", f"{WIDTH}x{HEIGHT}", info),
            timeout=0.5,
        )
    assert time.monotonic() - started < 3.0
    assert child_pids() == before


def test_failing_frame_function_kills_both_processes(clip: Path, tmp_path: Path) -> None:
    def explode(frame: np.ndarray, params: dict) -> np.ndarray:
        raise RuntimeError("boom")

    broken = dataclasses.replace(get_effect("dog"), frame=explode)
    before = child_pids()
    with pytest.raises(RuntimeError, match="boom"):
        apply_effect(broken, {}, clip, tmp_path / "broken.mp4", "video", timeout=TIMEOUT)
    assert child_pids() == before
    assert os.listdir(tmp_path) == []


def test_playlist_posing_as_video_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "evil.mp4"
    src.write_text("#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1:9/x.ts\n")
    with pytest.raises((FFmpegError, EffectError)):
        apply_effect(get_effect("invert"), {}, src, tmp_path / "out.mp4", "video", timeout=TIMEOUT)
    assert not (tmp_path / "out.mp4").exists()


def test_video_output_must_be_mp4(clip: Path, tmp_path: Path) -> None:
    with pytest.raises(EffectError, match=r"\.mp4"):
        apply_effect(get_effect("invert"), {}, clip, tmp_path / "out.mkv", "video", timeout=TIMEOUT)


def test_unsupported_kind_is_refused(clip: Path, tmp_path: Path) -> None:
    with pytest.raises(EffectError, match="'audio'"):
        apply_effect(get_effect("invert"), {}, clip, tmp_path / "out.mp4", "audio", timeout=TIMEOUT)
