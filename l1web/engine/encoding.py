"""How every step encodes its output, and the version that pins those settings in cache ids.

Video: H.264 4:2:0 in MP4 with the index first, so browsers play it while it downloads; audio
AAC; images PNG (lossless, keeps alpha); audio-only outputs AAC in an M4A container. The
effects package takes these same settings (effects/encoding.py), so every step encodes alike.
"""

from __future__ import annotations

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

#: Part of every cache id: outputs made with other settings are never served as current.
ENCODER_VERSION = sha3_json(
    [REVISION, *VIDEO_ARGS, *CONTAINER_ARGS, *AUDIO_ARGS, AUDIO_RATE, EVEN_SIZE]
)[:16]


def video_out(path: str, *, audio: bool) -> list[str]:
    """Output arguments for a video file, with or without its audio stream encoded."""
    return [*VIDEO_ARGS, *(AUDIO_ARGS if audio else ("-an",)), *CONTAINER_ARGS, path]
