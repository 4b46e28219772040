"""Small JPEG previews of stored items, made once: an image's thumbnail, a video's poster frame,
or a picture of a sound's waveform."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from PIL import Image, ImageOps

from l1web.engine import ffmpeg

log = logging.getLogger(__name__)

#: Longest side of a thumbnail or poster, in pixels.
THUMB_SIZE = 320
#: JPEG quality of thumbnails (1–95).
THUMB_QUALITY = 82
#: Seconds into a video its poster frame is taken from (or a third of it when shorter).
POSTER_AT = 1.0
#: Seconds a poster extraction may take.
POSTER_TIMEOUT = 30.0
#: Kinds that get a thumbnail (images), a poster frame (videos) or a waveform picture (audio).
PREVIEW_KINDS = frozenset({"image", "video", "audio"})
#: Size of a waveform picture, and the colour of the wave on its white ground.
WAVE_SIZE, WAVE_COLOUR = (THUMB_SIZE, THUMB_SIZE * 3 // 8), "0x2255cc"


def make_thumbnail(source: Path, kind: str, dest: Path, *, duration: float | None = None) -> bool:
    """Write a JPEG preview of an image or video to `dest` (atomically); False when there is none."""
    if kind not in PREVIEW_KINDS:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        if kind == "image":
            _image_thumbnail(source, partial)
        elif kind == "audio":
            _audio_waveform(source, partial)
        else:
            _video_poster(source, partial, duration)
        os.replace(partial, dest)
    except (OSError, ValueError, ffmpeg.FFmpegError, Image.DecompressionBombError) as exc:
        log.warning("no thumbnail for %s: %s", source.name, exc)
        return False
    finally:
        partial.unlink(missing_ok=True)
    return True


def _image_thumbnail(source: Path, dest: Path) -> None:
    with Image.open(source) as image:
        image.draft("RGB", (THUMB_SIZE * 2, THUMB_SIZE * 2))
        picture = ImageOps.exif_transpose(image)
        picture.thumbnail((THUMB_SIZE, THUMB_SIZE))
        if picture.mode in ("RGBA", "LA", "P"):
            picture = picture.convert("RGBA")
            backdrop = Image.new("RGB", picture.size, "white")
            backdrop.paste(picture, mask=picture.getchannel("A"))
            picture = backdrop
        picture.convert("RGB").save(dest, "JPEG", quality=THUMB_QUALITY)


def _video_poster(source: Path, dest: Path, duration: float | None) -> None:
    at = POSTER_AT if duration is None else min(POSTER_AT, duration / 3)
    ffmpeg.ffmpeg(
        "-ss", f"{at:.3f}", *ffmpeg.MEDIA_INPUT_FLAGS, "-i", str(source),
        "-frames:v", "1", "-vf", f"scale={THUMB_SIZE}:{THUMB_SIZE}:force_original_aspect_ratio=decrease",
        "-f", "image2", "-c:v", "mjpeg", "-q:v", "4", str(dest),
        timeout=POSTER_TIMEOUT,
    )


def _audio_waveform(source: Path, dest: Path) -> None:
    """ffmpeg's `showwavespic` (the whole sound in one picture), flattened onto white as JPEG."""
    wave = dest.with_name(dest.name + ".png")
    try:
        ffmpeg.ffmpeg(
            *ffmpeg.MEDIA_INPUT_FLAGS, "-i", str(source), "-filter_complex",
            f"[0:a:0]showwavespic=s={WAVE_SIZE[0]}x{WAVE_SIZE[1]}:scale=sqrt:colors={WAVE_COLOUR}",
            "-frames:v", "1", "-f", "image2", "-c:v", "png", str(wave),
            timeout=POSTER_TIMEOUT,
        )
        with Image.open(wave) as picture:
            backdrop = Image.new("RGB", picture.size, "white")
            rgba = picture.convert("RGBA")
            backdrop.paste(rgba, mask=rgba.getchannel("A"))
            backdrop.save(dest, "JPEG", quality=THUMB_QUALITY)
    finally:
        wave.unlink(missing_ok=True)
