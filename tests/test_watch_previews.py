"""Previews of step outputs: an audio output's waveform picture (made once, by content hash), and
the DAG picture's nodes with their preview and a link to the output. The browser side (nodes
gaining previews as steps finish, a click opening the output, the runs list) is in
tests/test_browser_watch.py."""

from __future__ import annotations

import io
import subprocess

import numpy as np
from PIL import Image

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
