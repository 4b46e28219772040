"""How every step encodes its output, and the version that pins those settings in cache ids.

Video: H.264 4:2:0 in MP4 with the index first, so browsers play it while it downloads; audio
AAC; images PNG (lossless, keeps alpha); audio-only outputs AAC in an M4A container. The
effects package takes these same settings (effects/encoding.py), so every step encodes alike.

PNG settings come in two profiles, chosen by measurement (`bench/bench_png.py`, the table in
docs/performance.md): "fast" (the default) is the fastest encoding whose files stay within
`PNG_SIZE_BOUND` of Pillow's default level 6 on photos and renders; "small" is for operators
who prefer smaller files at several times the encode time (`PNG_ENCODING=small`). The profile
in use is part of the encoder version, hence of every cache id: outputs encoded with other
settings are other items, and a step planned under one profile is never rendered under another.
"""

from __future__ import annotations

from typing import Any

from l1web.engine.canonical import sha3_json

#: ffmpeg output arguments for the video stream.
VIDEO_ARGS = (
    "-c:v", "libx264",
    "-preset", "veryfast",  # ~3x faster than "medium" for ~10 % more bytes at the same CRF
    "-crf", "20",  # visually lossless for web playback
    "-pix_fmt", "yuv420p",
)
#: ffmpeg output arguments for the MP4/M4A container: moov atom first.
CONTAINER_ARGS = ("-movflags", "+faststart")
#: ffmpeg output arguments for an audio stream.
AUDIO_ARGS = ("-c:a", "aac", "-b:a", "192k")
#: Sample rate, in Hz, of audio the engine synthesises or resamples to.
AUDIO_RATE = 48000
#: Filter placed last in every video chain: 4:2:0 needs even sizes, an odd row/column is cropped.
EVEN_SIZE = "crop=trunc(iw/2)*2:trunc(ih/2)*2"
#: File suffix of each media kind's output.
SUFFIX = {"video": ".mp4", "image": ".png", "audio": ".m4a"}
#: Bump when the encoding changes in a way the arguments above do not show.
REVISION = "1"

#: zlib's run-length strategy (Z_RLE): Pillow's `compress_type`.
Z_RLE = 3
#: PNG profiles: Pillow's save options, and ffmpeg's for image outputs it writes itself.
#: "fast": zlib level 1 with the run-length strategy measured ~3x faster than Pillow's default
#: (level 6, default strategy) for files within 2 % of its size; "small": level 9 with Pillow's
#: optimizer, the smallest files measured (2-6 % below level 6) at 2-7x its encode time.
PNG_PROFILES: dict[str, dict[str, Any]] = {
    "fast": {"pillow": {"compress_level": 1, "compress_type": Z_RLE}, "ffmpeg": ["-compression_level", "1"]},
    "small": {"pillow": {"compress_level": 9, "optimize": True}, "ffmpeg": ["-compression_level", "9"]},
}
DEFAULT_PNG = "fast"
#: Largest size cost the default profile may have over Pillow's level 6, summed over the bench's images.
PNG_SIZE_BOUND = 0.10

_png = DEFAULT_PNG


def configure(png: str) -> None:
    """Choose the PNG profile of this process (workers: `PNG_ENCODING`, before any plan or render)."""
    global _png
    if png not in PNG_PROFILES:
        raise ValueError(f"PNG_ENCODING must be one of {', '.join(PNG_PROFILES)}, not {png!r}")
    _png = png


def png_profile() -> str:
    return _png


def png_options() -> dict[str, Any]:
    """Keyword arguments for Pillow's `Image.save(..., "PNG", **options)`."""
    return dict(PNG_PROFILES[_png]["pillow"])


def png_ffmpeg_args() -> list[str]:
    """ffmpeg output arguments for a PNG it writes (image RESIZE/TRANSFORM)."""
    return list(PNG_PROFILES[_png]["ffmpeg"])


def _version(profile: dict[str, Any]) -> str:
    return sha3_json(
        [REVISION, *VIDEO_ARGS, *CONTAINER_ARGS, *AUDIO_ARGS, AUDIO_RATE, EVEN_SIZE,
         {"png": profile}]
    )[:16]


# Hashed once per profile at import, not at each of a run's calls (plan, cache ids, each render).
_VERSIONS = {name: _version(profile) for name, profile in PNG_PROFILES.items()}


def encoder_version(png: str | None = None) -> str:
    """Part of every cache id: outputs made with other settings are never served as current."""
    return _VERSIONS[png or _png]


#: The encoder version of the default settings (the one docs/engine.md's test vectors use).
ENCODER_VERSION = encoder_version(DEFAULT_PNG)


def video_out(path: str, *, audio: bool) -> list[str]:
    """Output arguments for a video file, with or without its audio stream encoded."""
    return [*VIDEO_ARGS, *(AUDIO_ARGS if audio else ("-an",)), *CONTAINER_ARGS, path]
