"""Previews of step outputs: an audio output's waveform picture (made once, by content hash), and
the DAG picture's nodes with their preview and a link to the output. The browser side (nodes
gaining previews as steps finish, a click opening the output, the runs list) is in
tests/test_browser_watch.py."""

from __future__ import annotations

import hashlib
import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from l1web.engine import ffmpeg, watch
from l1web.engine.encoding import video_out
from l1web.engine.steps import run_step
from l1web.engine.watch import StepWatch
from l1web.web import dagsvg


def test_an_audio_output_gets_a_waveform_picture_made_once(alice_client, app, tmp_path):
    wav = tmp_path / "tone.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=220:duration=2",
                    "-c:a", "aac", str(wav)], check=True, timeout=60)
    store = app.extensions["l1"].store
    digest = store.put_file(wav, source="render", owner="alice")
    with alice_client.get(f"/media/{digest}/thumb") as first:
        assert first.status_code == 200 and first.headers["Content-Type"] == "image/jpeg"
        picture = np.asarray(Image.open(io.BytesIO(first.data)).convert("RGB"))
    assert picture.shape == (120, 320, 3)
    blue = (picture[:, :, 2] > 150) & (picture[:, :, 0] < 120)
    assert blue.any() and picture.mean() > 128  # a blue wave on white
    made = store.thumb_path(digest).stat().st_mtime_ns
    with alice_client.get(f"/media/{digest}/thumb") as second:
        assert second.status_code == 200
    assert store.thumb_path(digest).stat().st_mtime_ns == made


def test_finished_nodes_show_their_preview_and_link_to_their_output():
    digest = "ab" * 32
    steps = [
        {"step_id": "clip", "type": "SOURCE", "inputs": [], "status": "cached", "output": digest},
        {"step_id": "fx", "type": "EFFECT", "inputs": ["clip"], "status": "running",
         "progress": {"percent": 42.0, "eta": 7.0}},
    ]
    svg = str(dagsvg.render(dagsvg.from_steps(steps)))
    assert f'<image class="dag-thumb" href="/media/{digest}/thumb"' in svg
    assert f'<a class="dag-link" href="/media/{digest}" aria-label="Open the output of clip">' in svg
    assert 'role="group"' in svg  # its nodes are links: not a flat picture
    assert 'data-percent="42.0"' in svg and "EFFECT · 42 % · 7 s left" in svg
    assert 'class="dag-fill" width="70.6"' in svg  # 42 % of the 168-unit box
    assert svg.count("<image") == 1  # the running step has no preview yet
    plain = str(dagsvg.render(dagsvg.from_steps([dict(steps[1], status="pending")])))
    assert 'role="img"' in plain and "<image" not in plain and "dag-link" not in plain


# A "last rendered" frame from ffmpeg filter renders (real ffmpeg) ----------------------------------
def _clip(tmp_path: Path, seconds: int = 4) -> Path:
    path = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=duration={seconds}:size=640x360:rate=25", "-f", "lavfi", "-i",
                    f"sine=duration={seconds}", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-shortest", str(path)], check=True, timeout=60)
    return path


def _render(clip: Path, out: Path, node: dict | None, step: StepWatch | None) -> bytes:
    """Render `clip` through the engine `node`, or (None) a `-filter_complex … -map [v]` command."""
    out.mkdir()
    with watch.watching(step):
        if node is None:
            made = out / "out.mp4"
            ffmpeg.ffmpeg(*ffmpeg.INPUT_FLAGS, "-i", str(clip), "-filter_complex", "[0:v]hue=s=0,vflip[v]",
                          "-map", "[v]", "-map", "0:a:0?", *video_out(str(made), audio=True))
        else:
            made = run_step({"step_id": "s", "node_id": "s", "inputs": ["clip"], "input_kinds": ["video"],
                             "kind": "video", **node}, [clip], out)
    assert [p.name for p in out.iterdir()] == [made.name]  # the preview's directory went with the render
    return made.read_bytes()


BLUR = {"type": "EFFECT", "config": {"effect": "blur", "params": {"sigma": 3.0}}}


@pytest.mark.parametrize("node", [BLUR, None], ids=["vf", "filter_complex"])
def test_a_watched_ffmpeg_render_keeps_a_last_rendered_frame_and_its_exact_bytes(tmp_path, monkeypatch, node):
    monkeypatch.setattr(watch, "PREVIEW_INTERVAL", 0.0)  # every new picture is handed on
    clip = _clip(tmp_path)
    previews: list[tuple[bytes, float]] = []
    log: list[str] = []
    step = StepWatch(seconds=4, frames=100, sink=lambda p, t: log.append(t),
                     preview_sink=lambda jpeg, at: previews.append((jpeg, at)))
    watched = _render(clip, tmp_path / "watched", node, step)
    step.finish(ok=True)
    plain = _render(clip, tmp_path / "plain", node, None)
    assert hashlib.sha256(watched).digest() == hashlib.sha256(plain).digest()  # same output, byte for byte
    text = "".join(log)
    assert "[l1preview]" in text and "again without it" not in text, text[:2000]
    assert previews, "no last rendered frame"
    for jpeg, _ in previews:
        picture = Image.open(io.BytesIO(jpeg))
        assert picture.format == "JPEG" and picture.size == (320, 180)
    assert [at for _, at in previews] == sorted(at for _, at in previews)
    assert step.snapshot()["preview_at"] == previews[-1][1]


def test_a_failing_preview_output_never_fails_the_render(tmp_path, monkeypatch):
    monkeypatch.setattr(ffmpeg, "PREVIEW_OUTPUT", ("-f", "no-such-muxer", "-update", "1"))
    clip = _clip(tmp_path, seconds=1)
    log: list[str] = []
    step = StepWatch(seconds=1, sink=lambda p, t: log.append(t), preview_sink=lambda jpeg, at: None)
    watched = _render(clip, tmp_path / "watched", BLUR, step)
    step.finish(ok=True)
    assert watched == _render(clip, tmp_path / "plain", BLUR, None)
    assert "ffmpeg failed with its preview output" in "".join(log)


def test_only_whole_video_renders_of_the_two_shapes_get_a_preview_output(tmp_path):
    jpeg = tmp_path / "p.jpg"
    vf = ["-i", "in.mp4", "-map", "0:v:0", "-map", "0:a:0?", "-vf", "hue=s=0", "-c:v", "libx264", "out.mp4"]
    got = ffmpeg.with_preview(vf, jpeg)
    assert got is not None and "-vf" not in got
    assert got[got.index("-filter_complex") + 1].startswith("[0:v:0]hue=s=0,split=2[l1main][l1peek];[l1peek]fps=")
    assert got[:got.index("out.mp4") + 1].count("[l1main]") == 1 and got[-1] == str(jpeg)
    graph = ["-i", "a.mp4", "-i", "b.mp4", "-filter_complex", "[0:v][1:v]hstack[v]", "-map", "[v]", "out.mkv"]
    got = ffmpeg.with_preview(graph, jpeg)
    assert got is not None and got[got.index("-filter_complex") + 1].startswith("[0:v][1:v]hstack[v];[v]split=2")
    assert got[got.index("out.mkv") - 1] == "[l1main]"
    assert ffmpeg.with_preview([*vf[:-1], "-t", "2", "out.mp4"], jpeg) is None  # ends before its input
    assert ffmpeg.with_preview(["-i", "in.mp4", "-vf", "scale=2:2", "-frames:v", "1", "out.png"], jpeg) is None
    assert ffmpeg.preview_file(["-i", "in.mp4", "out.png"]) is None  # an image, not a video
    assert ffmpeg.with_preview(["-i", "in.mp4", "-map", "0:v:0", "-c", "copy", "out.mp4"], jpeg) is None
    graph_audio = ["-i", "a.mp4", "-filter_complex", "[0:a]volume=2[a]", "-map", "[a]", "out.mp4"]
    assert ffmpeg.with_preview(graph_audio, jpeg) is None


def test_a_half_written_preview_waits_for_the_next_look(tmp_path):
    sent: list[bytes] = []
    step = StepWatch(preview_sink=lambda jpeg, at: sent.append(jpeg), clock=lambda: 1000.0 + len(sent) * 10)
    path = tmp_path / "last.jpg"
    step.preview_file(path)  # not there yet
    path.write_bytes(b"\xff\xd8 half a picture")
    step.preview_file(path)
    assert sent == []
    path.write_bytes(b"\xff\xd8 a picture \xff\xd9")
    step.preview_file(path)
    step.preview_file(path)  # unchanged: not sent again
    assert sent == [b"\xff\xd8 a picture \xff\xd9"]
