"""Engine benchmark: a whole EFFECT step through `execute`, against the bare work it wraps.

    .venv/bin/python bench/bench_engine.py

For invert, blur and dog on a 1280×720, 10 s clip, the L1 figure is the wall time of
executing a plan whose one render step is the effect — probing, rendering, hashing the output
into the store and recording the result — and the baseline is the same work done bare in the
same run: one ffmpeg command for filter effects, a decode | numpy | encode pipe for dog, with
the same encoder settings. Two more rows count the steps a re-run executes: an unchanged plan
(goal 0) and a plan whose last node's parameter changed (goal exactly 1).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from l1web.engine import analyze, execute, parse_dag, plan  # noqa: E402
from l1web.engine.effects import get_effect  # noqa: E402
from l1web.engine.effects.encoding import (  # noqa: E402
    AUDIO_COPY_ARGS,
    EVEN_SIZE_FILTER,
    VIDEO_ENCODE_ARGS,
)
from l1web.engine.ffmpeg import BASE_FLAGS, INPUT_FLAGS, ffmpeg, ffmpeg_exe  # noqa: E402

CLIP_SIZE = (1280, 720)  # pixels
#: Seconds of the clip; 10 is the measurement the issue asks for. BENCH_CLIP_SECONDS shortens it
#: (`make bench` on a loaded 2-core machine spends ~10 min in each of bench_effects and bench_engine).
CLIP_SECONDS = int(os.environ.get("BENCH_CLIP_SECONDS", "10"))
CLIP_FPS = 25
REPEATS = 3  # best of, per measurement (the machines are shared and noisy)
TIMEOUT = 600.0  # seconds
GOAL_RATIO = "≤ 1.10"


class DirStore:
    """The smallest Store: files named by SHA3-256 under one directory."""

    def __init__(self, root: Path):
        self.root = root

    def has(self, digest: str) -> bool:
        return (self.root / digest).is_file()

    def path_for(self, digest: str) -> Path:
        return self.root / digest

    def path_and_image(self, digest: str) -> tuple[Path, None]:
        return self.path_for(digest), None  # no index: the analysis detects the image's facts

    def put_file(self, path: Path, *, source: str, owner: str | None = None) -> str:
        digest = hashlib.sha3_256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        os.replace(path, self.root / digest.hexdigest())
        return digest.hexdigest()


class DictResults(dict):
    def get_result(self, cache_id: str) -> str | None:
        return self.get(cache_id)

    def set_result(self, cache_id: str, digest: str) -> None:
        self[cache_id] = digest


def make_clip(path: Path) -> Path:
    width, height = CLIP_SIZE
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={CLIP_FPS}:duration={CLIP_SECONDS}",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={CLIP_SECONDS}",
        *VIDEO_ENCODE_ARGS, "-c:a", "aac", "-shortest", str(path),
    )
    return path


def best_of(*runs: Callable[[], object]) -> list[float]:
    """Best wall time of each run, alternating runs so a noisy neighbour hits them alike."""
    best = [float("inf")] * len(runs)
    for _ in range(REPEATS):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def bare_filter(chain: str, src: Path, dst: Path) -> None:
    ffmpeg(
        *INPUT_FLAGS, "-i", str(src), "-map", "0:v:0", "-map", "0:a:0?",
        "-vf", f"{chain},{EVEN_SIZE_FILTER}", *VIDEO_ENCODE_ARGS, *AUDIO_COPY_ARGS, str(dst),
        timeout=TIMEOUT,
    )


def bare_frames(name: str, src: Path, dst: Path) -> None:
    """decode | numpy | encode, written plainly: one thread, no checks."""
    effect = get_effect(name)
    params = effect.resolve_params({})
    fmt = effect.frame_format
    width, height = CLIP_SIZE
    channels = 3 if fmt == "rgb24" else 1
    shape = (height, width, channels) if channels > 1 else (height, width)
    decoder = subprocess.Popen(
        [ffmpeg_exe(), *BASE_FLAGS, "-i", str(src), "-f", "rawvideo", "-pix_fmt", fmt, "pipe:1"],
        stdout=subprocess.PIPE,
    )
    encoder = subprocess.Popen(
        [ffmpeg_exe(), *BASE_FLAGS, "-f", "rawvideo", "-pix_fmt", fmt, "-s", f"{width}x{height}",
         "-framerate", str(CLIP_FPS), "-i", "pipe:0", "-i", str(src), "-map", "0:v:0",
         "-map", "1:a:0?", *VIDEO_ENCODE_ARGS, *AUDIO_COPY_ARGS, str(dst)],
        stdin=subprocess.PIPE,
    )
    assert decoder.stdout is not None and encoder.stdin is not None
    size = width * height * channels
    while len(raw := decoder.stdout.read(size)) == size:
        frame = np.frombuffer(raw, np.uint8).reshape(shape)
        encoder.stdin.write(effect.frame(frame, params).tobytes())  # type: ignore[misc]
    encoder.stdin.close()
    decoder.wait()
    encoder.wait()


class Bench:
    """One store, clip and temp root shared by every measurement."""

    def __init__(self, work: Path):
        self.work = work
        self.store = DirStore(work / "store")
        self.store.root.mkdir()
        self.temp_root = work / "tmp"
        self.temp_root.mkdir()
        clip = make_clip(work / "clip.mp4")
        self.clip = clip
        shutil.copyfile(clip, work / "incoming")
        self.clip_hash = self.store.put_file(work / "incoming", source="bench")

    def plan(self, *nodes: dict) -> dict:
        source = {"id": "clip", "type": "SOURCE", "config": {"hash": self.clip_hash}}
        dag = parse_dag({"nodes": [source, *nodes], "output": nodes[-1]["id"]})
        return plan(dag, analyze(dag, self.store))

    def execute(self, the_plan: dict, results: DictResults) -> dict:
        report = execute(the_plan, self.store, results, temp_root=self.temp_root)
        assert report["status"] == "completed", report["error"]
        return report

    def effect_row(self, name: str) -> dict:
        the_plan = self.plan({"id": "fx", "type": "EFFECT", "config": {"effect": name},
                              "inputs": ["clip"]})
        effect = get_effect(name)
        out = self.work / "bare.mp4"
        if effect.video_filter is not None:
            chain = effect.video_filter(effect.resolve_params({}))
            bare: Callable[[], object] = lambda: bare_filter(chain, self.clip, out)  # noqa: E731
        else:
            bare = lambda: bare_frames(name, self.clip, out)  # noqa: E731
        # A fresh result index each time, so the step renders instead of hitting the cache.
        l1, baseline = best_of(lambda: self.execute(the_plan, DictResults()), bare)
        return {"benchmark": f"engine step: {name} {CLIP_SIZE[0]}x{CLIP_SIZE[1]} {CLIP_SECONDS} s", "l1": l1,
                "baseline": baseline, "ratio": l1 / baseline, "goal": GOAL_RATIO, "unit": "s"}

    def rerun_rows(self) -> list[dict]:
        def chain(sigma: float) -> dict:
            return self.plan(
                {"id": "cut", "type": "SEGMENT", "config": {"duration": 2.0}, "inputs": ["clip"]},
                {"id": "inv", "type": "EFFECT", "config": {"effect": "invert"}, "inputs": ["cut"]},
                {"id": "soft", "type": "EFFECT",
                 "config": {"effect": "blur", "params": {"sigma": sigma}}, "inputs": ["inv"]},
            )

        results = DictResults()
        first = self.execute(chain(2.0), results)
        unchanged = self.execute(chain(2.0), results)
        changed = self.execute(chain(3.0), results)
        total = first["executed"]
        return [
            {"benchmark": "re-execute unchanged plan: steps executed", "l1": unchanged["executed"],
             "baseline": total, "ratio": unchanged["executed"] / total, "goal": "0",
             "unit": "steps"},
            {"benchmark": "change last node's param: steps executed", "l1": changed["executed"],
             "baseline": total, "ratio": changed["executed"] / total, "goal": "1",
             "unit": "steps"},
        ]


def rows() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        found = [bench.effect_row(name) for name in ("invert", "blur", "dog")]
        return found + bench.rerun_rows()


if __name__ == "__main__":
    for row in rows():
        print(row)
