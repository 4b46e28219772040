"""What a stored item is (image, video, audio or other) and its thumbnail or poster.

Detection is the engine's (`l1web.engine.media.detect`: Pillow for images, ffprobe behind a
demuxer allow-list for the rest); this module adds what the web needs on top: a MIME type,
whether a browser may show it inline, a file extension, and small JPEG previews made once.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from l1web.engine import ffmpeg
from l1web.engine.errors import HostileMedia, MediaError
from l1web.engine.media import detect
from l1web.errors import UnsupportedMedia

log = logging.getLogger(__name__)

#: Longest side of a thumbnail or poster, in pixels.
THUMB_SIZE = 320
#: JPEG quality of thumbnails (1–95).
THUMB_QUALITY = 82
#: Seconds into a video its poster frame is taken from (or a third of it when shorter).
POSTER_AT = 1.0
#: Seconds a poster extraction may take.
POSTER_TIMEOUT = 30.0
#: Kinds a browser may render inline from `/cache/<hash>?inline=1`. SVG and HTML are never
#: among them: detection never calls them images, so they always download as attachments.
INLINE_KINDS = frozenset({"image", "video", "audio"})
#: Kinds that get a thumbnail (images) or a poster frame (videos).
PREVIEW_KINDS = frozenset({"image", "video"})
#: Fallback for anything that is not recognised media.
OCTET_STREAM = "application/octet-stream"

#: (kind, short format) → (MIME type, file extension).
_TYPES: dict[tuple[str, str], tuple[str, str]] = {
    ("image", "png"): ("image/png", "png"),
    ("image", "jpeg"): ("image/jpeg", "jpg"),
    ("image", "gif"): ("image/gif", "gif"),
    ("image", "webp"): ("image/webp", "webp"),
    ("image", "bmp"): ("image/bmp", "bmp"),
    ("image", "tiff"): ("image/tiff", "tif"),
    ("video", "mp4"): ("video/mp4", "mp4"),
    ("video", "webm"): ("video/webm", "webm"),
    ("video", "avi"): ("video/x-msvideo", "avi"),
    ("video", "mpegts"): ("video/mp2t", "ts"),
    ("video", "flv"): ("video/x-flv", "flv"),
    ("video", "ogg"): ("video/ogg", "ogv"),
    ("audio", "mp4"): ("audio/mp4", "m4a"),
    ("audio", "webm"): ("audio/webm", "weba"),
    ("audio", "mp3"): ("audio/mpeg", "mp3"),
    ("audio", "wav"): ("audio/wav", "wav"),
    ("audio", "flac"): ("audio/flac", "flac"),
    ("audio", "ogg"): ("audio/ogg", "ogg"),
    ("audio", "aac"): ("audio/aac", "aac"),
    ("audio", "aiff"): ("audio/aiff", "aiff"),
}
#: ffprobe's container names (first of its comma list) → our short format name.
_CONTAINERS = {"mov": "mp4", "matroska": "webm", "mpegts": "mpegts"}


@dataclass(frozen=True)
class MediaFacts:
    """Detected facts about a file, as stored in the cache index."""

    kind: str = "other"
    format: str = ""
    mimetype: str = OCTET_STREAM
    width: int | None = None
    height: int | None = None
    duration: float | None = None


def describe(path: Path, *, refuse_hostile: bool = False) -> MediaFacts:
    """Facts about a file; anything that is not accepted media is kind "other".

    With `refuse_hostile` (uploads and imports), media refused for safety — playlists, pixel
    bombs, over-long streams — raise UnsupportedMedia instead of being kept as opaque bytes.
    """
    try:
        info = detect(path)
    except HostileMedia as exc:
        if refuse_hostile:
            reason = str(exc).removeprefix(f"{path.name}: ")
            raise UnsupportedMedia(f"media refused: {reason}") from None
        log.info("not media: %s", exc)
        return MediaFacts()
    except MediaError as exc:
        log.info("not media: %s", exc)
        return MediaFacts()
    short = info.format.split(",")[0]
    short = _CONTAINERS.get(short, short)
    mimetype, _ext = _TYPES.get((info.kind, short), (OCTET_STREAM, "bin"))
    duration = round(info.duration, 3) if info.duration is not None else None
    return MediaFacts(info.kind, short, mimetype, info.width, info.height, duration)


def extension(kind: str, fmt: str) -> str:
    return _TYPES.get((kind, fmt), (OCTET_STREAM, "bin"))[1]


def may_inline(kind: str, mimetype: str) -> bool:
    return kind in INLINE_KINDS and mimetype != OCTET_STREAM


def make_thumbnail(source: Path, kind: str, dest: Path, *, duration: float | None = None) -> bool:
    """Write a JPEG preview of an image or video to `dest` (atomically); False when there is none."""
    if kind not in PREVIEW_KINDS:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        if kind == "image":
            _image_thumbnail(source, partial)
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
