"""Images through numpy: load any Pillow-readable file as RGB, run the effect, save by suffix."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from l1web import trace
from l1web.engine import written
from l1web.engine.effects.effect import Effect
from l1web.engine.effects.encoding import IMAGE_FORMATS
from l1web.engine.effects.errors import EffectError
from l1web.engine.effects.params import ParamValues
from l1web.engine.encoding import png_options

#: Largest image accepted, in pixels (64 MPixel: 192 MB as RGB, ~770 MB as float32 for blur).
MAX_PIXELS = 64_000_000


def apply_image(effect: Effect, params: ParamValues, src: Path, dst: Path) -> None:
    """Run `effect` with resolved `params` on the image `src`, writing `dst` (format by suffix)."""
    fmt = image_format(dst)
    rgb, alpha = load_rgb(src)
    trace.mark("render.decoded")
    out = effect.image(rgb, params)
    trace.mark("render.effect")
    if out.shape != rgb.shape or out.dtype != np.uint8:
        raise EffectError(f"effect {effect.name!r} returned {out.shape} {out.dtype}")
    save_rgb(out, alpha, dst, fmt)
    trace.mark("render.encoded")


def image_format(dst: Path) -> str:
    try:
        return IMAGE_FORMATS[dst.suffix.lower()]
    except KeyError:
        raise EffectError(f"cannot write images as {dst.suffix!r}") from None


def load_rgb(src: Path) -> tuple[np.ndarray, Image.Image | None]:
    """H×W×3 uint8 RGB (upright per EXIF) and the alpha channel if the image has one.

    The size is checked from the header before any pixel is decoded.
    """
    with warnings.catch_warnings():
        # We enforce our own, lower limit below; Pillow's warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(src)
        except (OSError, Image.DecompressionBombError) as exc:
            raise EffectError(f"cannot read image {src.name}: {exc}") from None
    with im:
        width, height = im.size
        if width * height > MAX_PIXELS:
            raise EffectError(
                f"image {src.name} is {width}×{height}: more than {MAX_PIXELS:,} pixels"
            )
        try:
            upright = ImageOps.exif_transpose(im)
            alpha = upright.convert("RGBA").getchannel("A") if upright.has_transparency_data else None
            return np.asarray(upright.convert("RGB")), alpha
        except (OSError, ValueError) as exc:
            raise EffectError(f"cannot decode image {src.name}: {exc}") from None


def save_rgb(rgb: np.ndarray, alpha: Image.Image | None, dst: Path, fmt: str) -> None:
    out = Image.fromarray(rgb, "RGB")
    if alpha is not None and fmt != "JPEG":
        out.putalpha(alpha)
    written.save_image(out, dst, fmt, **(png_options() if fmt == "PNG" else {}))
