"""The one exception the effects package raises for its own reasons (ffmpeg raises FFmpegError)."""


class EffectError(ValueError):
    """An unknown effect, a bad parameter, an unsupported media kind or an unusable input."""
