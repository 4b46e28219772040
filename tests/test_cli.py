"""`render.py` run as a subprocess against a real L1 over HTTP (waitress), real RQ workers, and
tokens from the dev L2. The server's requests are counted by a WSGI wrapper around the real app,
so "uploaded once" is what the server saw, not what the client claims.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import re
import stat
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from devl2.testing import LiveServer
from l1web.devtools.processes import free_port
from l1web.paths import ROOT
from l1web.store import ContentStore
from l1web.web import create_app

#: Seconds one CLI call may take (a render of a small image takes a second or two).
CLI_TIMEOUT = 120


class RequestLog:
    """WSGI middleware counting `METHOD /path` of every request the server receives."""

    def __init__(self, app) -> None:
        self.app = app
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            self.seen[f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')}"] += 1
        return self.app(environ, start_response)


class Server:
    """L1 over HTTP with its request log; `stop()` takes it down (once)."""

    def __init__(self, url: str, log: RequestLog, live: LiveServer) -> None:
        self.url, self.log, self.live, self.stopped = url, log, live, False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.live.stop()


@pytest.fixture()
def server(settings, state, dev_l2):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = RequestLog(create_app(settings.with_changes(l1_public_url=url), state=state))
    running = Server(url, log, LiveServer(log, port))
    dev_l2.allow(url)
    yield running
    running.stop()


@pytest.fixture()
def token(dev_l2, server) -> str:
    return dev_l2.mint("alice", server.url)


@pytest.fixture()
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment of every CLI call: its own config file and home, no outer L1_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("L1_")}
    return {**env, "HOME": str(tmp_path / "home"), "L1_CONFIG": str(tmp_path / "l1" / "config.json")}


@pytest.fixture()
def cli(cli_env):
    def run(*args: str, script: Path = ROOT / "render.py", **popen) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                              timeout=CLI_TIMEOUT, check=False, env=cli_env, **popen)

    return run


@pytest.fixture()
def cat(settings, state, tmp_path) -> np.ndarray:
    """The asset `cat`: random pixels, so an inverted copy can be checked exactly."""
    pixels = np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "cat.png")
    store = ContentStore(settings.cache_dir, state.cache)
    state.cache.set_asset("cat", store.put_file(tmp_path / "cat.png", source="test"))
    return pixels


def png(path: Path, colour: tuple[int, int, int], size=(24, 16)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def sha3(path: Path) -> str:
    return hashlib.sha3_256(path.read_bytes()).hexdigest()


# Rendering --------------------------------------------------------------------------------------
def test_sync_render_of_a_named_asset_downloads_the_identical_output(server, token, cat, settings, state,
                                                                     start_worker, cli, tmp_path):
    start_worker()
    out = tmp_path / "out.png"
    done = cli("invert", "cat", "--sync", "--server", server.url, "--token", token, "--output", str(out))
    assert done.returncode == 0, done.stderr
    digest = re.search(r"completed: ([0-9a-f]{64})", done.stdout).group(1)
    assert '"task_id"' in done.stdout  # the provenance follows
    stored = ContentStore(settings.cache_dir, state.cache).path_for(digest)
    assert out.read_bytes() == stored.read_bytes() and sha3(out) == digest
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), 255 - cat)
    assert "[completed] 1/1 steps  invert:completed" in done.stderr  # plain progress lines off a terminal


def test_sync_json_output_is_one_json_document(server, token, cat, start_worker, cli):
    start_worker()
    done = cli("invert", "cat", "--sync", "--json", "--server", server.url, "--token", token)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["run"]["status"] == "completed"
    assert body["provenance"]["output"]["content_hash"] == body["run"]["output_hash"]
    assert done.stderr == ""  # no progress in machine mode
    # The submission itself waited for the end (Prefer: wait): no status request followed it.
    assert server.log.seen["POST /runs"] == 1
    assert not [seen for seen in server.log.seen if re.fullmatch(r"GET /runs/[0-9a-f]{64}", seen)], server.log.seen


def test_async_submit_prints_the_run_id_and_the_run_goes_on(server, token, cat, state, start_worker, cli):
    done = cli("invert", "cat", "--server", server.url, "--token", token)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", run_id) and state.runs.get(run_id)["status"] == "pending"
    as_json = cli("invert", "cat", "--json", "--server", server.url, "--token", token)
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["id"] == run_id  # the same run
    start_worker()
    waited = cli("invert", "cat", "--sync", "--server", server.url, "--token", token)
    assert waited.returncode == 0, waited.stderr
    assert state.runs.get(run_id)["status"] == "completed"


def test_a_local_file_is_uploaded_only_when_the_server_lacks_it(server, token, state, start_worker, cli, tmp_path):
    image = png(tmp_path / "photo.png", (10, 120, 240))
    digest = sha3(image)
    start_worker()
    first = cli("invert", str(image), "--sync", "--server", server.url, "--token", token)
    second = cli("grayscale", str(image), "--sync", "--server", server.url, "--token", token)
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert server.log.seen["POST /cache/missing"] == 2  # asked each time, in one round trip
    assert server.log.seen["POST /cache/uploads"] == 1  # sent once, resumably (tus)
    item = state.cache.get(digest)
    assert item is not None and item.owner == "alice" and item.name == "photo.png"


def test_a_recipe_by_name_with_a_named_local_input(server, token, start_worker, cli, tmp_path, state):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: flip-it\nversion: '1'\ndag:\n  nodes:\n"
                      "    - {id: img, type: SOURCE, config: {input: true, name: picture}}\n"
                      "    - {id: flip, type: EFFECT, config: {effect: invert}, inputs: [img]}\n  output: flip\n")
    uploaded = requests.post(f"{server.url}/configs/upload", data=recipe.read_bytes(), timeout=10,
                             headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-yaml"})
    assert uploaded.status_code == 201, uploaded.text
    image = png(tmp_path / "in.png", (0, 0, 0))
    start_worker()
    out = tmp_path / "flipped.png"
    done = cli("flip-it", "--input", f"picture={image}", "--output", str(out), "--server", server.url,
               "--token", token)
    assert done.returncode == 0, done.stderr
    assert np.asarray(Image.open(out).convert("RGB")).min() == 255  # black inverted is white


def test_progress_on_a_terminal_redraws_steps_and_a_bar(server, token, cat, start_worker, cli_env):
    start_worker()
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(ROOT / "render.py"), "invert", "cat", "--sync", "--server",
                             server.url, "--token", token], stdout=subprocess.PIPE, stderr=terminal, env=cli_env)
    os.close(terminal)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    proc.communicate(timeout=CLI_TIMEOUT)
    os.close(controller)
    text = shown.decode()
    assert proc.returncode == 0, text
    assert f"[{'#' * 30}] 1/1 steps  completed" in text
    assert "✓ invert" in text and "\x1b[2K" in text


# Failures ---------------------------------------------------------------------------------------
def test_a_failed_run_exits_1_with_its_reason(server, token, start_worker, cli, tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, "PNG")
    broken = tmp_path / "broken.png"
    broken.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2] + bytes(50))
    start_worker()
    done = cli("invert", str(broken), "--sync", "--server", server.url, "--token", token)
    assert done.returncode == 1
    assert "failed" in done.stderr and "truncated" in done.stderr


def test_unknown_recipe_or_input_exits_5_naming_it(server, token, cat, cli, tmp_path):
    recipe = cli("no-such-effect", "cat", "--server", server.url, "--token", token)
    assert recipe.returncode == 5 and "no effect or recipe named 'no-such-effect'" in recipe.stderr
    asset = cli("invert", "no-such-asset", "--server", server.url, "--token", token)
    assert asset.returncode == 5 and "'no-such-asset' is neither a cached hash nor a known asset" in asset.stderr
    path = cli("invert", str(tmp_path / "missing" / "x.png"), "--server", server.url, "--token", token)
    assert path.returncode == 5 and "no such file" in path.stderr
    assert server.log.seen["POST /runs"] == 2


def test_an_out_of_range_parameter_is_refused_naming_it(server, token, cat, cli):
    done = cli("dog", "cat", "--param", "sigma=999", "--server", server.url, "--token", token)
    assert done.returncode == 6
    assert "(400)" in done.stderr and "param 'sigma' must be between" in done.stderr


def test_a_bad_or_missing_token_exits_4(server, cli):
    bad = cli("invert", "cat", "--server", server.url, "--token", "not-a-token")
    assert bad.returncode == 4
    assert "(401)" in bad.stderr and "render.py login" in bad.stderr
    missing = cli("invert", "cat", "--server", server.url)
    assert missing.returncode == 4 and "no token" in missing.stderr
    assert server.log.seen["POST /runs"] == 1  # the missing token never reached the server


def test_a_server_lost_while_waiting_exits_3_naming_the_run(server, token, cat, cli_env):
    proc = subprocess.Popen([sys.executable, str(ROOT / "render.py"), "invert", "cat", "--sync", "--server",
                             server.url, "--token", token], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=cli_env)
    first = proc.stderr.readline()  # no worker: the run stays pending, and the client polls
    assert first.startswith("[pending]"), first
    server.stop()
    _, rest = proc.communicate(timeout=CLI_TIMEOUT)
    assert proc.returncode == 3
    assert "lost the L1 server" in rest and re.search(r"run [0-9a-f]{64} goes on", rest)


def test_an_unreachable_server_exits_3(cli):
    done = cli("invert", "cat", "--server", f"http://127.0.0.1:{free_port()}", "--token", "x", "--json")
    assert done.returncode == 3
    assert "cannot reach the L1 server" in done.stderr
    assert json.loads(done.stdout)["exit_status"] == 3


# login / logout ---------------------------------------------------------------------------------
def test_login_keeps_the_token_privately_and_logout_revokes_it(server, token, cat, cli, cli_env):
    config = Path(cli_env["L1_CONFIG"])
    refused = cli("login", "--token", "wrong", "--server", server.url)
    assert refused.returncode == 4 and not config.exists()

    done = cli("login", "--token", token, "--server", server.url)
    assert done.returncode == 0, done.stderr
    assert "as alice" in done.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text()) == {"server": server.url, "tokens": {server.url: token}}

    who = cli("whoami")  # server and token both from the config
    assert who.returncode == 0 and who.stdout.strip() == f"alice on {server.url}"
    submitted = cli("invert", "cat")
    assert submitted.returncode == 0, submitted.stderr

    out = cli("logout", "--server", server.url)
    assert out.returncode == 0 and "Logged out" in out.stdout
    assert json.loads(config.read_text()) == {"tokens": {}}
    assert cli("invert", "cat", "--server", server.url).returncode == 4  # nothing kept
    revoked = cli("invert", "cat", "--server", server.url, "--token", token)
    assert revoked.returncode == 4 and "(401)" in revoked.stderr  # revoked on the server too
    assert cli("logout", "--server", server.url).returncode == 4


# /download/client -------------------------------------------------------------------------------
def test_the_downloaded_client_runs_with_this_server_as_its_default(server, token, cat, cli, tmp_path):
    answer = requests.get(f"{server.url}/download/client", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/x-python")
    assert answer.headers["Content-Disposition"] == "attachment; filename=render.py"
    script = tmp_path / "downloaded.py"
    script.write_bytes(answer.content)
    assert f'DEFAULT_SERVER = "{server.url}"\n' in answer.text
    helped = cli("--help", script=script)
    assert helped.returncode == 0 and server.url in helped.stdout
    done = cli("invert", "cat", "--token", token, script=script)  # no --server: the default
    assert done.returncode == 0, done.stderr
    assert server.log.seen["POST /runs"] == 1


def test_the_client_download_falls_back_to_the_request_host(app, settings):
    app.extensions["l1"].settings = settings.with_changes(l1_public_url="")
    answer = app.test_client().get("/download/client", base_url="http://render.example:8080")
    assert answer.status_code == 200
    assert 'DEFAULT_SERVER = "http://render.example:8080"\n' in answer.get_data(as_text=True)


def test_another_users_private_hash_is_refused_like_an_unknown_one(server, dev_l2, settings, state, cli, tmp_path):
    """`render.py --input HASH` of alice's private upload, as bob: the unknown-hash answer, no run."""
    private = ContentStore(settings.cache_dir, state.cache).put_file(
        png(tmp_path / "alices.png", (9, 99, 199)), source="upload", owner="alice")
    bob = dev_l2.mint("bob", server.url)
    hers = cli("invert", private, "--server", server.url, "--token", bob)
    unknown = cli("invert", "e" * 64, "--server", server.url, "--token", bob)
    assert hers.returncode == unknown.returncode == 5
    assert hers.stderr.replace(private[:12], "") == unknown.stderr.replace("e" * 12, "")
    assert not [k for k in state.redis.keys("artdag:run:*")], "no run may be written"
    mine = cli("invert", private, "--server", server.url, "--token", dev_l2.mint("alice", server.url))
    assert mine.returncode == 0, mine.stderr  # the owner may
