"""PNG encoding chosen by measurement (issue 19): encode time and size of each candidate.

Encodes a 1920×1080 photo-like picture and a 1920×1080 render (`bench/images.py`, made here)
with every candidate setting, in this process, single-threaded (Pillow's PNG encoder is), best
of `REPEATS`; each figure is beside Pillow's default (level 6) from the same run. The rule that
picked L1's default ("fast", `l1web/engine/encoding.py`): the fastest candidate whose total size
over both pictures is within `PNG_SIZE_BOUND` of level 6's. The last rows say which candidate the
rule picks in this run, and which settings the profiles use.

Candidates: Pillow's zlib levels 1-9, zlib's run-length strategy (Z_RLE), level 9 with Pillow's
optimizer, and, when they are installed, encoders from other wheels (`fpng`, `imagecodecs`).
They are not dependencies of L1; `pip install fpng imagecodecs` to include them.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from images import photo, render  # noqa: E402

from l1web.engine.encoding import DEFAULT_PNG, PNG_PROFILES, PNG_SIZE_BOUND, Z_RLE  # noqa: E402

#: Encodes per candidate and picture; the best is kept (other programs share this machine).
REPEATS = 3
SIZE = (1920, 1080)
BASELINE = "pillow level 6 (Pillow's default)"


def pillow(**options) -> Callable[[np.ndarray], bytes]:
    def encode(pixels: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG", **options)
        return buf.getvalue()
    return encode


def candidates() -> dict[str, tuple[Callable[[np.ndarray], bytes], dict | None]]:
    """name → (encoder, the Pillow options it stands for, or None for other libraries)."""
    out: dict[str, tuple[Callable[[np.ndarray], bytes], dict | None]] = {}
    for level in (1, 2, 3, 4, 6, 9):
        options = {"compress_level": level}
        name = BASELINE if level == 6 else f"pillow level {level}"
        out[name] = (pillow(**options), options)
    out["pillow level 1, zlib Z_RLE"] = (pillow(compress_level=1, compress_type=Z_RLE),
                                         {"compress_level": 1, "compress_type": Z_RLE})
    out["pillow level 9 + optimize"] = (pillow(compress_level=9, optimize=True),
                                        {"compress_level": 9, "optimize": True})
    try:
        import fpng  # noqa: PLC0415 - optional, measured only when installed

        out["fpng (wheel)"] = (fpng.from_ndarray, None)
    except ImportError:
        pass
    try:
        import imagecodecs  # noqa: PLC0415 - optional, measured only when installed

        out["imagecodecs libpng level 1, RLE, SUB filter (wheel)"] = (
            lambda p: imagecodecs.png_encode(p, level=1, strategy=3, filter=16), None)
    except ImportError:
        pass
    return out


def best_of(encode: Callable[[np.ndarray], bytes], pixels: np.ndarray) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(REPEATS):
        started = time.perf_counter()
        size = len(encode(pixels))
        times.append(time.perf_counter() - started)
    return min(times), size


def rows() -> list[dict]:
    pictures = {"photo": photo(SIZE, 1), "render": render(SIZE)}
    measured: dict[str, dict[str, tuple[float, int]]] = {}
    options: dict[str, dict | None] = {}
    for name, (encode, opts) in candidates().items():
        decoded_ok = all(np.array_equal(np.asarray(Image.open(io.BytesIO(encode(p))).convert("RGB")), p)
                         for p in pictures.values())
        if not decoded_ok:
            raise RuntimeError(f"{name}: the PNG does not decode to the same pixels")
        measured[name] = {kind: best_of(encode, p) for kind, p in pictures.items()}
        options[name] = opts
    base = measured[BASELINE]
    out = []
    for name, by_kind in measured.items():
        for kind, (seconds, size) in by_kind.items():
            base_seconds, base_size = base[kind]
            out.append({"benchmark": f"PNG encode 1920x1080 {kind}: {name}; size {size / 1e6:.3f} MB "
                                     f"= {size / base_size:.3f} x level 6",
                        "l1": seconds * 1000, "baseline": base_seconds * 1000, "ratio": seconds / base_seconds,
                        "goal": "", "unit": "ms"})
    total_base = sum(size for _, size in base.values())
    within = {name: sum(s for s, _ in by.values()) for name, by in measured.items()
              if sum(size for _, size in by.values()) <= (1 + PNG_SIZE_BOUND) * total_base}
    chosen = min(within, key=within.get)
    chosen_size = sum(size for _, size in measured[chosen].values()) / total_base
    fast, small = PNG_PROFILES[DEFAULT_PNG]["pillow"], PNG_PROFILES["small"]["pillow"]
    out.append({"benchmark": f"fastest within {PNG_SIZE_BOUND:.0%} of level 6's size: {chosen} "
                             f"(size {chosen_size:.3f} x); L1's default 'fast' = {fast}, "
                             f"{'the same' if options[chosen] == fast else 'NOT the same'}",
                "l1": within[chosen] * 1000, "baseline": sum(s for s, _ in base.values()) * 1000,
                "ratio": within[chosen] / sum(s for s, _ in base.values()), "goal": "", "unit": "ms"})
    out.append({"benchmark": f"PNG_ENCODING=small = {small}: total size vs level 6",
                "l1": sum(size for _, size in measured["pillow level 9 + optimize"].values()) / 1e6,
                "baseline": total_base / 1e6,
                "ratio": sum(size for _, size in measured["pillow level 9 + optimize"].values()) / total_base,
                "goal": "", "unit": "MB"})
    return out


if __name__ == "__main__":
    for row in rows():
        print(row)
