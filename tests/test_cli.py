"""`render.py` against a real L1 over HTTP, with a real worker and a token from the dev L2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from devl2.testing import LiveServer
from l1web.services import ROOT
from l1web.store import ContentStore


@pytest.fixture()
def live_l1(app):
    server = LiveServer(app)
    yield server
    server.stop()


@pytest.fixture()
def token(dev_l2, settings) -> str:
    return dev_l2.mint("alice", settings.l1_public_url)


def render(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "render.py"), *args], capture_output=True, text=True,
                          timeout=180, check=False)


def test_render_sync_renders_a_named_asset_and_downloads_it(live_l1, token, settings, state, start_worker,
                                                            tmp_path: Path):
    pixels = np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "cat.png")
    store = ContentStore(settings.cache_dir, state.cache)
    state.cache.set_asset("cat", store.put_file(tmp_path / "cat.png", source="test"))
    start_worker()
    out = tmp_path / "out.png"
    done = render("invert", "cat", "--sync", "--server", live_l1.url, "--token", token, "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert "completed:" in done.stdout and '"task_id"' in done.stdout
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), 255 - pixels)


def test_render_uploads_a_local_file_only_when_the_server_lacks_it(live_l1, token, state, tmp_path: Path):
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "black.png")
    first = render("grayscale", str(tmp_path / "black.png"), "--server", live_l1.url, "--token", token)
    assert first.returncode == 0, first.stderr
    run_id = first.stdout.strip()
    assert len(run_id) == 64 and state.runs.get(run_id)["status"] in ("pending", "running")
    assert state.cache.count() == 1


def test_render_reports_a_bad_token_and_exits_non_zero(live_l1):
    done = render("invert", "cat", "--server", live_l1.url, "--token", "not-a-token")
    assert done.returncode == 1
    assert "401" in done.stderr


def test_render_reports_an_unreachable_server(tmp_path):
    done = render("invert", "cat", "--server", "http://127.0.0.1:9", "--token", "x")
    assert done.returncode == 1
    assert "cannot reach the L1 server" in done.stderr
