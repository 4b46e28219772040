"""What a stored item is (image, video, audio or other): the facts the cache index keeps.

Detection is the engine's (`l1web.engine.media.detect`: Pillow for images, ffprobe behind a
demuxer allow-list for the rest); this module adds what the web needs on top: a MIME type,
whether a browser may show it inline and a file extension. Previews are `store/thumbs.py`'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from l1web.engine.errors import HostileMedia, MediaError
from l1web.engine.media import MediaInfo, detect
from l1web.errors import UnsupportedMedia

log = logging.getLogger(__name__)

#: Kinds a browser may render inline from `/cache/<hash>?inline=1`. SVG and HTML are never
#: among them: detection never calls them images, so they always download as attachments.
INLINE_KINDS = frozenset({"image", "video", "audio"})
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


def describe(path: Path, *, refuse_hostile: bool = False, own: bool = False) -> MediaFacts:
    """Facts about a file; anything that is not accepted media is kind "other".

    With `refuse_hostile` (uploads and imports), media refused for safety — playlists, pixel
    bombs, over-long streams — raise UnsupportedMedia instead of being kept as opaque bytes.
    `own`: a video the engine just rendered, probed in process (engine/media.py `detect`).
    """
    try:
        info = detect(path, own=own)
    except HostileMedia as exc:
        if refuse_hostile:
            reason = str(exc).removeprefix(f"{path.name}: ")
            raise UnsupportedMedia(f"media refused: {reason}") from None
        log.info("not media: %s", exc)
        return MediaFacts()
    except MediaError as exc:
        log.info("not media: %s", exc)
        return MediaFacts()
    return facts_of(info)


def facts_of(info: MediaInfo) -> MediaFacts:
    """The index's facts of detected media (or of an image the engine wrote: `engine/written.py`)."""
    short = info.format.split(",")[0]
    short = _CONTAINERS.get(short, short)
    mimetype, _ext = _TYPES.get((info.kind, short), (OCTET_STREAM, "bin"))
    duration = round(info.duration, 3) if info.duration is not None else None
    return MediaFacts(info.kind, short, mimetype, info.width, info.height, duration)


def extension(kind: str, fmt: str) -> str:
    return _TYPES.get((kind, fmt), (OCTET_STREAM, "bin"))[1]


def may_inline(kind: str, mimetype: str) -> bool:
    return kind in INLINE_KINDS and mimetype != OCTET_STREAM
