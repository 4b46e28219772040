"""Effects benchmark, and the before/after picture in docs/.

    .venv/bin/python bench/bench_effects.py            # timings on a 1280×720, 10 s clip
    .venv/bin/python bench/bench_effects.py figure     # writes docs/dog-before-after.png

For each effect the L1 step (`apply_effect`) is timed against the bare work it wraps, with the
same encoder settings in the same run: one plain ffmpeg command for filter effects; for dog a
plain single-threaded decode | numpy | encode pipe. A bare decode+encode (`null`) is the floor.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from l1web.engine.effects import get_effect  # noqa: E402
from l1web.engine.effects.apply import apply_effect  # noqa: E402
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
REPEATS = 3  # best of, per measurement
TIMEOUT = 600.0  # seconds
FIGURE = ROOT / "docs" / "dog-before-after.png"


def make_clip(path: Path) -> Path:
    width, height = CLIP_SIZE
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={CLIP_FPS}:duration={CLIP_SECONDS}",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={CLIP_SECONDS}",
        *VIDEO_ENCODE_ARGS, "-c:a", "aac", "-shortest", str(path),
    )
    return path


def best_of(*runs: Callable[[], object]) -> list[float]:
    """Best wall time of each run; runs alternate so a noisy neighbour hits them alike."""
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


def bare_dog(src: Path, dst: Path) -> None:
    """The same work as the dog step, written plainly: one thread, no watchdog, no checks."""
    dog = get_effect("dog")
    params = dog.resolve_params({})
    width, height = CLIP_SIZE
    decoder = subprocess.Popen(
        [ffmpeg_exe(), *BASE_FLAGS, "-i", str(src), "-vf", EVEN_SIZE_FILTER,
         "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"],
        stdout=subprocess.PIPE,
    )
    encoder = subprocess.Popen(
        [ffmpeg_exe(), *BASE_FLAGS, "-f", "rawvideo", "-pix_fmt", "gray",
         "-s", f"{width}x{height}", "-framerate", str(CLIP_FPS), "-i", "pipe:0", "-i", str(src),
         "-map", "0:v:0", "-map", "1:a:0?", *VIDEO_ENCODE_ARGS, *AUDIO_COPY_ARGS, str(dst)],
        stdin=subprocess.PIPE,
    )
    assert decoder.stdout is not None and encoder.stdin is not None
    while len(raw := decoder.stdout.read(width * height)) == width * height:
        frame = np.frombuffer(raw, np.uint8).reshape(height, width)
        encoder.stdin.write(dog.frame(frame, params).tobytes())  # type: ignore[misc]
    encoder.stdin.close()
    decoder.wait()
    encoder.wait()


def step(name: str, src: Path, dst: Path) -> None:
    apply_effect(get_effect(name), {}, src, dst, "video", timeout=TIMEOUT)


def benchmark() -> list[dict]:
    frames = CLIP_SECONDS * CLIP_FPS
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = make_clip(work / "clip.mp4")
        out = work / "out.mp4"
        [floor] = best_of(lambda: bare_filter("null", src, out))
        for name in ("identity", "invert", "blur", "dog"):
            effect = get_effect(name)
            if effect.video_filter is not None:
                chain = effect.video_filter(effect.resolve_params({}))
                l1, bare = best_of(
                    lambda name=name: step(name, src, out),
                    lambda chain=chain: bare_filter(chain, src, out),
                )
            else:
                l1, bare = best_of(lambda name=name: step(name, src, out), lambda: bare_dog(src, out))
            rows.append(
                {"effect": name, "l1_s": l1, "bare_s": bare, "ratio": l1 / bare,
                 "fps": frames / l1, "vs_decode_encode": l1 / floor}
            )
        rows.append({"effect": "(bare decode+encode)", "l1_s": floor, "bare_s": floor,
                     "ratio": 1.0, "fps": frames / floor, "vs_decode_encode": 1.0})
    return rows


#: L1's step may cost at most this much more than the bare command it wraps.
GOAL_RATIO = "< 1.2"


def rows() -> list[dict]:
    """`make bench`'s rows (bench/run.py): each effect's L1 step beside its bare command."""
    width, height = CLIP_SIZE
    clip = f"{width}x{height} {CLIP_SECONDS} s"
    return [
        {"benchmark": f"effect {r['effect']} ({clip})", "l1": r["l1_s"], "baseline": r["bare_s"],
         "ratio": r["ratio"], "goal": GOAL_RATIO, "unit": "s (baseline: bare ffmpeg/pipe)"}
        for r in benchmark()
    ]


def report(rows: list[dict]) -> None:
    width, height = CLIP_SIZE
    print(f"{width}x{height}, {CLIP_SECONDS} s at {CLIP_FPS} fps, best of {REPEATS}")
    print(f"{'effect':22} {'L1 s':>7} {'bare s':>7} {'L1/bare':>8} {'fps':>7} {'÷ dec+enc':>9}")
    for r in rows:
        print(f"{r['effect']:22} {r['l1_s']:7.2f} {r['bare_s']:7.2f} {r['ratio']:8.2f} "
              f"{r['fps']:7.1f} {r['vs_decode_encode']:9.2f}")


def sample_scene(width: int = 480, height: int = 360, seed: int = 7) -> np.ndarray:
    """A photo-like RGB scene (sky, sun, hills, house, tree, a tabby cat), soft and noisy."""
    s = width / 480
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    sky = (1 - y) * np.array([120, 170, 230]) + y * np.array([235, 225, 200])
    im = Image.fromarray(np.broadcast_to(sky, (height, width, 3)).astype(np.uint8))
    d = ImageDraw.Draw(im)

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        return [x0 * s, y0 * s, x1 * s, y1 * s]

    def pts(*xy: tuple[float, float]) -> list[tuple[float, float]]:
        return [(x * s, y * s) for x, y in xy]

    d.ellipse(box(360, 30, 420, 90), fill=(250, 235, 160))
    xs = np.arange(width)
    hill = (230 + 25 * np.sin(xs / 60) + 12 * np.sin(xs / 23 + 1)) * s
    d.polygon([(0, height), *zip(xs.tolist(), hill.tolist(), strict=True), (width, height)],
              fill=(60, 110, 50))
    d.rectangle(box(40, 170, 150, 260), fill=(190, 120, 90))
    d.polygon(pts((30, 172), (95, 120), (160, 172)), fill=(120, 60, 50))
    d.rectangle(box(80, 210, 108, 260), fill=(80, 50, 40))
    for x in (52, 118):
        d.rectangle(box(x, 185, x + 20, 205), fill=(200, 220, 240))
    d.rectangle(box(195, 190, 207, 250), fill=(90, 60, 40))
    for cx, cy, r in ((201, 170, 30), (185, 185, 22), (218, 186, 22)):
        d.ellipse(box(cx - r, cy - r, cx + r, cy + r), fill=(50, 110, 50))
    fur, stripe = (185, 125, 70), (130, 80, 40)
    d.ellipse(box(280, 215, 380, 330), fill=fur)
    d.ellipse(box(300, 160, 362, 222), fill=fur)
    d.polygon(pts((303, 180), (308, 140), (328, 166)), fill=fur)
    d.polygon(pts((359, 180), (354, 140), (334, 166)), fill=fur)
    for x in (314, 336):
        d.ellipse(box(x, 180, x + 12, 192), fill=(200, 210, 80))
        d.ellipse(box(x + 4, 182, x + 8, 191), fill=(20, 20, 20))
    d.polygon(pts((327, 198), (335, 198), (331, 203)), fill=(200, 120, 120))
    for side in (-1, 1):
        for dy in (0, 5):
            d.line(pts((331 + side * 8, 202 + dy), (331 + side * 36, 196 + dy * 2)), fill=(230, 230, 230))
    d.arc(box(360, 280, 430, 340), 180, 330, fill=fur, width=int(9 * s))
    for i in range(5):
        d.arc(box(290 + i * 2, 230 + i * 16, 370 - i * 2, 300 + i * 16), 200, 340, fill=stripe,
              width=int(4 * s))
    for dx in (-8, 0, 8):
        d.line(pts((331 + dx, 162), (331 + dx * 1.3, 176)), fill=stripe, width=int(3 * s))
    rgb = np.asarray(im.filter(ImageFilter.GaussianBlur(s))).astype(np.float32)
    # Light falling off towards the lower right and sensor noise: a photo, not a drawing.
    xx = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    rgb *= (1.1 - 0.125 * (xx + y[:, :, 0]))[:, :, None]
    rgb += np.random.default_rng(seed).normal(0, 4, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def figure(path: Path = FIGURE) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        before, after = Path(tmp) / "before.png", Path(tmp) / "after.png"
        Image.fromarray(sample_scene()).save(before)
        apply_effect(get_effect("dog"), {}, before, after, "image", timeout=TIMEOUT)
        with Image.open(before) as b, Image.open(after) as a:
            pair = Image.new("RGB", (b.width + a.width + 8, b.height), (255, 255, 255))
            pair.paste(b, (0, 0))
            pair.paste(a, (b.width + 8, 0))
            # 256 colours: the sketch is grey and the photo smooth, so this looks the same at a
            # third of the size.
            pair.quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    if sys.argv[1:] == ["figure"]:
        figure()
    else:
        report(benchmark())
