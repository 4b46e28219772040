"""The output encoding of every effect render, in one place so the benchmark can reuse it.

Video: H.264 in MP4, 4:2:0 so browsers play it, moov atom first so playback starts before the
download ends. These settings are hashed into every effect's version: changing them changes every
effect id, so no cached output made with older settings is served as current.
"""

#: ffmpeg output arguments for the video stream.
VIDEO_ENCODE_ARGS = (
    "-c:v", "libx264",
    "-preset", "veryfast",  # ~3x faster than "medium" for ~10 % more bytes at the same CRF
    "-crf", "20",  # visually lossless for web playback; lower = larger files
    "-pix_fmt", "yuv420p",
    "-movflags", "+faststart",
)
#: ffmpeg output arguments for an audio stream that is not AAC already.
AUDIO_ENCODE_ARGS = ("-c:a", "aac", "-b:a", "192k")
#: ffmpeg output arguments for an AAC audio stream: copied, no generation loss.
AUDIO_COPY_ARGS = ("-c:a", "copy")
#: Filter run before encoding: 4:2:0 needs even sizes, so an odd last row/column is cropped.
EVEN_SIZE_FILTER = "crop=trunc(iw/2)*2:trunc(ih/2)*2"
#: Image formats an effect may write, by output suffix (Pillow format names).
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
