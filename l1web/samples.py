"""Sample assets made on first start, so `render.py dog cat` works on a fresh install.

Both are generated here, deterministically and without downloads: `cat`, a drawn cat face with
fur-like noise textures (so edge effects such as `dog` have something photo-like to bite on),
and `testvideo`, three seconds of ffmpeg's test pattern with a tone (H.264/AAC, faststart).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import redis
from PIL import Image, ImageDraw, ImageFilter

from l1web.engine import ffmpeg
from l1web.state import StateManager
from l1web.state.cache import CacheIndex
from l1web.store import ContentStore

log = logging.getLogger(__name__)

#: Size of the cat image, in pixels.
CAT_SIZE = (512, 512)
#: Seed of every random texture, so the cat is the same bytes on every machine with this Pillow.
SEED = 20240101
#: The test video: size, frames per second, seconds, tone in Hz.
VIDEO_SIZE, VIDEO_RATE, VIDEO_SECONDS, VIDEO_TONE = "320x240", 25, 3, 440
#: Seconds the test video encode may take.
VIDEO_TIMEOUT = 60.0
#: Where generated samples come from, as recorded in the index.
SOURCE = "sample"
#: Seconds the start-up lock lives (making both samples takes a few); a crashed holder frees it then.
LOCK_TTL = 120
#: Seconds another starting process waits for the holder before going on without the samples.
LOCK_WAIT = 150


def _fur(rng: np.random.Generator, size: tuple[int, int], blur: float, streak: int) -> Image.Image:
    """Grey noise blurred along one axis: reads as fur or grain rather than flat colour."""
    noise = rng.normal(128, 80, (size[1], size[0])).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(noise, "L").filter(ImageFilter.GaussianBlur(blur))
    return image.resize((size[0], size[1] // streak)).resize(size, Image.Resampling.BICUBIC)


def _tint(texture: Image.Image, dark: tuple[int, int, int], light: tuple[int, int, int]) -> Image.Image:
    grey = np.asarray(texture, dtype=np.float32)[..., None] / 255.0
    lo, hi = np.array(dark, np.float32), np.array(light, np.float32)
    return Image.fromarray((lo + (hi - lo) * grey).astype(np.uint8), "RGB")


def draw_cat() -> Image.Image:
    """A ginger cat's face on a soft background, with textured fur, eyes, nose and whiskers."""
    rng = np.random.default_rng(SEED)
    w, h = CAT_SIZE
    picture = _tint(_fur(rng, CAT_SIZE, 6, 1), (70, 96, 120), (150, 180, 200))
    fur = _tint(_fur(rng, CAT_SIZE, 1.2, 3), (150, 80, 30), (245, 170, 90))
    mask = Image.new("L", CAT_SIZE, 0)
    shape = ImageDraw.Draw(mask)
    shape.ellipse((96, 150, 416, 440), fill=255)
    shape.polygon([(110, 250), (130, 60), (230, 170)], fill=255)
    shape.polygon([(402, 250), (382, 60), (282, 170)], fill=255)
    picture.paste(fur, mask=mask.filter(ImageFilter.GaussianBlur(1.5)))
    muzzle = _tint(_fur(rng, CAT_SIZE, 1.0, 2), (215, 170, 120), (255, 240, 215))
    cheeks = Image.new("L", CAT_SIZE, 0)
    ImageDraw.Draw(cheeks).ellipse((176, 318, 336, 420), fill=255)
    picture.paste(muzzle, mask=cheeks.filter(ImageFilter.GaussianBlur(8)))
    pen = ImageDraw.Draw(picture)
    for x in (226, 256, 286):  # tabby stripes on the forehead
        pen.line([(x, 160), (x + (x - 256) // 3, 225)], fill=(120, 60, 20), width=9)
    for y in (290, 318):  # and on the cheeks
        pen.line([(104, y), (150, y + 6)], fill=(120, 60, 20), width=7)
        pen.line([(408, y), (362, y + 6)], fill=(120, 60, 20), width=7)
    pen.polygon([(140, 215), (148, 105), (205, 175)], fill=(235, 150, 150))
    pen.polygon([(372, 215), (364, 105), (307, 175)], fill=(235, 150, 150))
    for cx in (196, 316):
        pen.ellipse((cx - 38, 250, cx + 38, 310), fill=(120, 190, 60), outline=(30, 30, 20), width=3)
        pen.ellipse((cx - 9, 254, cx + 9, 306), fill=(15, 15, 10))
        pen.ellipse((cx + 8, 262, cx + 18, 272), fill=(250, 250, 240))
    pen.polygon([(236, 340), (276, 340), (256, 362)], fill=(200, 90, 100), outline=(90, 40, 40))
    pen.line([(256, 362), (256, 380)], fill=(60, 30, 20), width=3)
    pen.arc((216, 360, 256, 400), 0, 180, fill=(60, 30, 20), width=3)
    pen.arc((256, 360, 296, 400), 0, 180, fill=(60, 30, 20), width=3)
    for dy in (-12, 0, 12):
        pen.line([(200, 365), (60, 350 + dy * 2)], fill=(250, 245, 230), width=2)
        pen.line([(312, 365), (452, 350 + dy * 2)], fill=(250, 245, 230), width=2)
    return picture


def make_cat(dest: Path) -> None:
    draw_cat().save(dest, "PNG", optimize=False)


def make_testvideo(dest: Path) -> None:
    """testsrc2 with a sine tone: H.264 yuv420p + AAC in MP4 with the index up front."""
    ffmpeg.ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={VIDEO_SIZE}:rate={VIDEO_RATE}:duration={VIDEO_SECONDS}",
        "-f", "lavfi", "-i", f"sine=frequency={VIDEO_TONE}:sample_rate=44100:duration={VIDEO_SECONDS}",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-x264-params", "threads=1",
        "-c:a", "aac", "-b:a", "96k", "-shortest", "-movflags", "+faststart",
        "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
        "-f", "mp4", str(dest),
        timeout=VIDEO_TIMEOUT,
    )


#: Asset name → (file suffix, generator).
SAMPLES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "cat": (".png", make_cat),
    "testvideo": (".mp4", make_testvideo),
}


def ensure_samples(store: ContentStore, index: CacheIndex) -> dict[str, str]:
    """Make and register every sample that is missing; name → digest. Safe to call on every start."""
    found: dict[str, str] = {}
    for name, (suffix, make) in SAMPLES.items():
        digest = index.asset(name)
        if digest is None or not store.has(digest):
            digest = _generate(store, name, suffix, make)
            index.set_asset(name, digest)
            log.info("sample asset %s generated: %s", name, digest)
        found[name] = digest
    return found


def present(store: ContentStore, index: CacheIndex) -> dict[str, str] | None:
    """name → digest when every sample is registered and stored, else None."""
    found = {name: index.asset(name) for name in SAMPLES}
    if all(digest and store.has(digest) for digest in found.values()):
        return found  # type: ignore[return-value]
    return None


def ensure_samples_once(store: ContentStore, state: StateManager, *,
                        wait: float = LOCK_WAIT) -> dict[str, str] | None:
    """At a server's start: make the missing samples, in one process only.

    The web app and every worker call this when they start. The first to take the Redis lock
    makes them; the others wait for it, then find them made. Returns name → digest, or None
    when the lock was not freed within `wait` seconds (the holder is still at it).
    """
    found = present(store, state.cache)
    if found is not None:
        return found
    lock = state.samples_lock(timeout=LOCK_TTL, wait=wait)
    if not lock.acquire():
        log.warning("sample assets: another process holds the start-up lock for over %g s; going on without it",
                    wait)
        return None
    try:
        return ensure_samples(store, state.cache)
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:  # expired while generating: someone else may hold it now
            log.warning("sample assets: the start-up lock expired before they were made")


def _generate(store: ContentStore, name: str, suffix: str, make: Callable[[Path], None]) -> str:
    with tempfile.TemporaryDirectory(dir=store.tmp) as work:
        path = Path(work) / f"{name}{suffix}"
        make(path)
        with open(path, "rb", buffering=0) as handle:
            return store.put_stream(handle, source=SOURCE, name=path.name).digest
