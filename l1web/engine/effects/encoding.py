"""The output encoding of every effect render: the engine's settings, in the shapes effects use.

Video: H.264 in MP4, 4:2:0 so browsers play it, moov atom first so playback starts before the
download ends. The arguments themselves live in `l1web.engine.encoding` (one place for every
step); they are hashed into every effect's version, so changing them changes every effect id and
no cached output made with older settings is served as current.
"""

from l1web.engine.encoding import AUDIO_ARGS, CONTAINER_ARGS, EVEN_SIZE, VIDEO_ARGS

#: ffmpeg output arguments for the video stream, container included.
VIDEO_ENCODE_ARGS = (*VIDEO_ARGS, *CONTAINER_ARGS)
#: ffmpeg output arguments for an audio stream that is not AAC already.
AUDIO_ENCODE_ARGS = AUDIO_ARGS
#: ffmpeg output arguments for an AAC audio stream: copied, no generation loss.
AUDIO_COPY_ARGS = ("-c:a", "copy")
#: Filter run before encoding: 4:2:0 needs even sizes, so an odd last row/column is cropped.
EVEN_SIZE_FILTER = EVEN_SIZE
#: Image formats an effect may write, by output suffix (Pillow format names).
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
