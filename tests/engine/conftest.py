"""Engine fixtures: a directory-backed store, a dict result index, small generated media."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from l1web.engine import analyze, execute, parse_dag, plan
from l1web.engine.ffmpeg import ffmpeg_exe, ffprobe_exe

#: Size of the generated test clips, in pixels.
W, H = 160, 120


class DirStore:
    """Files named by their SHA3-256 under root/<2 hex>/<digest>, written by atomic rename."""

    def __init__(self, root: Path):
        self.root = root
        self.puts = 0

    def path_for(self, digest: str) -> Path:
        path = self.root / digest[:2] / digest
        if not path.is_file():
            raise FileNotFoundError(digest)
        return path

    def path_and_image(self, digest: str) -> tuple[Path, None]:
        return self.path_for(digest), None  # no index: the analysis detects

    def has(self, digest: str) -> bool:
        return (self.root / digest[:2] / digest).is_file()

    def put_file(self, path: Path, *, source: str, owner: str | None = None) -> str:
        digest = hashlib.sha3_256(Path(path).read_bytes()).hexdigest()
        final = self.root / digest[:2] / digest
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent)
        os.close(fd)
        shutil.move(str(path), tmp)
        os.replace(tmp, final)
        self.puts += 1
        return digest

    def add(self, path: Path) -> str:
        """Copy a file in (the original stays); its digest."""
        copy = self.root / "incoming"
        shutil.copyfile(path, copy)
        return self.put_file(copy, source="test")


class DictResults:
    def __init__(self) -> None:
        self.index: dict[str, str] = {}

    def get_result(self, cache_id: str) -> str | None:
        return self.index.get(cache_id)

    def set_result(self, cache_id: str, digest: str) -> None:
        self.index[cache_id] = digest


def make(path: Path, *args: str) -> Path:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args, str(path)],
                   check=True)
    return path


def probe(path: Path) -> dict:
    out = subprocess.run([ffprobe_exe(), "-v", "error", "-show_format", "-show_streams",
                          "-of", "json", str(path)], check=True, capture_output=True).stdout
    return json.loads(out)


def duration(path: Path) -> float:
    return float(probe(path)["format"]["duration"])


def streams(path: Path) -> dict[str, dict]:
    """The first stream of each codec type."""
    found: dict[str, dict] = {}
    for s in probe(path)["streams"]:
        found.setdefault(s["codec_type"], s)
    return found


def frame(path: Path, at: float = 0.5) -> np.ndarray:
    """One decoded frame as an H×W×3 RGB array."""
    info = streams(path)["video"]
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", str(at), "-i", str(path),
                          "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(info["height"], info["width"], 3)


VIDEO = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small media made once per session: clips with and without sound, tones, images."""
    d = tmp_path_factory.mktemp("media")
    lavfi = ["-f", "lavfi", "-i"]
    files = {
        "av": make(d / "av.mp4", *lavfi, f"testsrc=size={W}x{H}:rate=25:duration=2",
                   *lavfi, "sine=frequency=440:duration=2", *VIDEO, "-c:a", "aac", "-shortest"),
        "silent": make(d / "silent.mp4", *lavfi, "testsrc2=size=128x96:rate=25:duration=1",
                       *VIDEO),
        "tone": make(d / "tone.m4a", *lavfi, "sine=frequency=880:duration=1.5", "-c:a", "aac"),
        "gray": make(d / "gray.mp4", *lavfi, f"color=c=0x808080:size={W}x{H}:rate=25:duration=1",
                     *VIDEO),
    }
    files["image"] = _image(d / "image.png", (W, H), (200, 40, 40))
    files["small"] = _image(d / "small.png", (40, 30), (20, 200, 20))
    files["white"] = _image(d / "white.png", (W, H), (255, 255, 255))
    return files


def _image(path: Path, size: tuple[int, int], rgb: tuple[int, int, int]) -> Path:
    Image.new("RGB", size, rgb).save(path)
    return path


@pytest.fixture
def store(tmp_path: Path) -> DirStore:
    root = tmp_path / "store"
    root.mkdir()
    return DirStore(root)


@pytest.fixture
def results() -> DictResults:
    return DictResults()


@pytest.fixture
def temp_root(tmp_path: Path) -> Path:
    root = tmp_path / "work"
    root.mkdir()
    return root


class Renderer:
    """Runs DAGs end to end against one store and index, remembering the last report."""

    def __init__(self, store: DirStore, results: DictResults, temp_root: Path):
        self.store, self.results, self.temp_root = store, results, temp_root
        self.events: list[dict] = []

    def source(self, node_id: str, path: Path) -> dict:
        return {"id": node_id, "type": "SOURCE", "config": {"hash": self.store.add(path)}}

    def plan(self, nodes: list[dict], output: str | None = None) -> dict:
        dag = parse_dag({"nodes": nodes, "output": output or nodes[-1]["id"]})
        return plan(dag, analyze(dag, self.store))

    def run(self, nodes: list[dict], output: str | None = None) -> dict:
        self.events = []
        return execute(self.plan(nodes, output), self.store, self.results,
                       temp_root=self.temp_root, progress=self.events.append)

    def output(self, nodes: list[dict], output: str | None = None) -> Path:
        report = self.run(nodes, output)
        assert report["status"] == "completed", report["error"]
        return self.store.path_for(report["output"])


@pytest.fixture
def render(store: DirStore, results: DictResults, temp_root: Path) -> Renderer:
    return Renderer(store, results, temp_root)
