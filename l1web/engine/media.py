"""What a media file is — image, video or audio — read from its header, never trusted blindly.

Images are identified by Pillow from the header alone, and their declared pixel count is
checked before anything decodes them. Everything else goes through ffprobe restricted to a
demuxer allow-list, so a playlist or concat list posing as a video is refused instead of
making ffmpeg read the files it names.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from l1web.engine import ffmpeg
from l1web.engine.errors import HostileMedia, MediaError

#: Most pixels an image or video frame may declare (64 MPixel, e.g. 8000×8000).
MAX_PIXELS = 64_000_000
#: Longest media the engine accepts, in seconds.
MAX_DURATION = 4 * 3600.0
#: Image formats, as Pillow names them, that the engine reads.
IMAGE_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"})
#: Bytes read from the start of a file to spot text playlists.
SNIFF_BYTES = 64
#: Text that opens a playlist or a concat list, which ffmpeg would follow to other files.
PLAYLIST_MARKERS = (b"#EXTM3U", b"#EXT-X", b"ffconcat", b"[playlist]", b"<MPD")
#: An XML prolog: never media (a DASH manifest usually starts so, but so does an SVG drawing).
XML_MARKER = b"<?xml"


@dataclass(frozen=True)
class MediaInfo:
    """Facts about one media file. Width/height/fps are None for audio, duration for images."""

    kind: str  # "image" | "video" | "audio"
    format: str
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    fps: float | None = None
    has_audio: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect(path: Path, *, own: bool = False) -> MediaInfo:
    """The kind and basic metadata of a file, or MediaError saying why it is refused.

    `own`: a video this engine just rendered (a chunk), probed in process (`ffmpeg.probe_own`)."""
    _refuse_playlists(path)
    image = _detect_image(path)
    return image if image is not None else _detect_av(path, own=own)


def _refuse_playlists(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        raise MediaError(f"{path.name}: empty file")
    if head.startswith(PLAYLIST_MARKERS):
        raise HostileMedia(f"{path.name}: a playlist or concat list, not media; refused")
    if head.startswith(XML_MARKER):
        raise MediaError(f"{path.name}: an XML document, not media; refused")


def _detect_image(path: Path) -> MediaInfo | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                fmt, (width, height) = im.format or "", im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise HostileMedia(f"{path.name}: image too large: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    if fmt not in IMAGE_FORMATS:
        return None
    return checked_image(path, MediaInfo("image", fmt.lower(), width, height))


def checked_image(path: Path, info: MediaInfo) -> MediaInfo:
    """An image's facts (detected here, or recorded when it was stored), refused as `detect`
    refuses them: no usable size, or more pixels than the limit."""
    _check_pixels(path, info.width or 0, info.height or 0)
    return info


def _detect_av(path: Path, *, own: bool = False) -> MediaInfo:
    try:
        data = ffmpeg.probe_own(path) if own else ffmpeg.probe(path, safe=True)
    except ffmpeg.FFmpegError as exc:
        raise MediaError(f"{path.name}: not a readable media file of an allowed format "
                         f"({exc})") from None
    streams = data.get("streams", [])
    video = [s for s in streams if s.get("codec_type") == "video"
             and not s.get("disposition", {}).get("attached_pic")]
    has_audio = any(s.get("codec_type") == "audio" for s in streams)
    fmt = data.get("format", {})
    duration = _float(fmt.get("duration")) or _float((video or [{}])[0].get("duration"))
    if duration is not None and duration > MAX_DURATION:
        raise HostileMedia(f"{path.name}: {duration:.0f} s is longer than {MAX_DURATION:.0f} s")
    if video:
        return _video_info(path, video[0], fmt.get("format_name", ""), duration, has_audio)
    if has_audio:
        return MediaInfo("audio", fmt.get("format_name", ""), duration=duration, has_audio=True)
    raise MediaError(f"{path.name}: no video or audio stream")


def _video_info(path: Path, stream: dict[str, Any], fmt: str, duration: float | None,
                has_audio: bool) -> MediaInfo:
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    _check_pixels(path, width, height)
    return MediaInfo("video", fmt, width, height, duration, frame_rate(stream), has_audio)


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise MediaError(f"{path.name}: no usable picture size ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise HostileMedia(f"{path.name}: declares {width}x{height} pixels, more than the "
                         f"{MAX_PIXELS // 1_000_000} MPixel limit")


def frame_rate(stream: dict[str, Any]) -> float | None:
    """A video stream's frames per second from ffprobe's fields (average first), or None; the one reading."""
    for key in ("avg_frame_rate", "r_frame_rate"):
        try:
            rate = Fraction(stream.get(key) or "")
        except (ValueError, ZeroDivisionError):
            continue
        if rate > 0:
            return float(rate)
    return None


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]  # float() judges any value; refusals answered below
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None
