"""Effects on images: real PNG files in, pixel values of the output checked."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from l1web.engine.effects import EffectError, get_effect, list_effects
from l1web.engine.effects.apply import apply_effect

TIMEOUT = 30.0  # seconds


@pytest.fixture
def shapes(tmp_path: Path) -> Path:
    """160×120 RGB: a light grey ground, a dark rectangle, a red disc, a little noise."""
    im = Image.new("RGB", (160, 120), (200, 200, 200))
    draw = ImageDraw.Draw(im)
    draw.rectangle([20, 20, 70, 90], fill=(30, 40, 50))
    draw.ellipse([90, 30, 140, 80], fill=(220, 40, 30))
    rgb = np.asarray(im).astype(np.int16)
    rgb += np.random.default_rng(1).integers(-3, 4, rgb.shape, dtype=np.int16)
    path = tmp_path / "shapes.png"
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)
    return path


def render(name: str, src: Path, params: dict | None = None, suffix: str = ".png") -> np.ndarray:
    dst = src.with_name(f"{name}-out{suffix}")
    apply_effect(get_effect(name), params or {}, src, dst, "image", timeout=TIMEOUT)
    with Image.open(dst) as im:
        return np.asarray(im)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_identity_returns_the_same_pixels(shapes: Path) -> None:
    assert np.array_equal(render("identity", shapes), pixels(shapes))


def test_invert_is_255_minus_each_channel(shapes: Path) -> None:
    assert np.array_equal(render("invert", shapes), 255 - pixels(shapes))


def test_grayscale_has_equal_channels_equal_to_luma(shapes: Path) -> None:
    out = render("grayscale", shapes).astype(int)
    assert np.array_equal(out[..., 0], out[..., 1])
    assert np.array_equal(out[..., 0], out[..., 2])
    luma = pixels(shapes).astype(float) @ [0.299, 0.587, 0.114]
    assert np.abs(out[..., 0] - luma).max() <= 0.5 + 1e-3


def test_sepia_applies_the_sepia_matrix(tmp_path: Path) -> None:
    src = tmp_path / "two.png"
    Image.fromarray(np.array([[[10, 20, 30], [255, 255, 255]]], dtype=np.uint8)).save(src)
    assert render("sepia", src).tolist() == [[[25, 22, 17], [255, 255, 239]]]


def test_blur_lowers_variance_more_with_larger_sigma(shapes: Path) -> None:
    original = pixels(shapes).astype(float)
    soft = render("blur", shapes, {"sigma": 1.0}).astype(float)
    softer = render("blur", shapes, {"sigma": 4.0}).astype(float)
    assert original.var() > soft.var() > softer.var()
    assert abs(softer.mean() - original.mean()) < 1.0


def test_brightness_adds_amount_times_255(shapes: Path) -> None:
    out = render("brightness", shapes, {"amount": 0.2})
    assert np.array_equal(out, np.clip(pixels(shapes).astype(int) + 51, 0, 255))


def test_contrast_scales_distance_from_mid_grey(shapes: Path) -> None:
    out = render("contrast", shapes, {"factor": 0.0})
    assert np.all(out == 128)


def test_dog_is_white_paper_with_dark_edges(shapes: Path) -> None:
    out = render("dog", shapes)
    gray = out[..., 0]
    assert np.array_equal(out[..., 0], out[..., 2])
    assert (gray >= 200).mean() > 0.75  # mostly paper
    assert ((gray < 60) | (gray > 195)).mean() > 0.9  # ink or paper, little in between
    # XDoG inks the dark side of an edge: the strip just inside the dark rectangle.
    assert gray[40:70, 20:23].max() < 60
    assert gray[100:115, 5:15].min() > 200


def test_alpha_channel_is_kept(tmp_path: Path) -> None:
    src = tmp_path / "rgba.png"
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 3] = np.arange(8, dtype=np.uint8)[None, :] * 30
    Image.fromarray(rgba, "RGBA").save(src)
    out = render("invert", src)
    assert out.shape == (8, 8, 4)
    assert np.array_equal(out[..., 3], rgba[..., 3])
    assert np.all(out[..., :3] == 255)


def test_jpeg_output_by_suffix(shapes: Path) -> None:
    out = render("invert", shapes, suffix=".jpg")
    assert np.abs(out.astype(int) - (255 - pixels(shapes).astype(int))).mean() < 4


def test_unsupported_output_suffix_is_refused(shapes: Path) -> None:
    with pytest.raises(EffectError, match=".gif"):
        render("invert", shapes, suffix=".gif")


def test_not_an_image_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "fake.png"
    src.write_text("#EXTM3U\nhttp://example.com/a.ts\n")
    with pytest.raises(EffectError, match="cannot read image"):
        render("invert", src)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares a size but holds no pixels: only the header is ever read."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b""))
    return path


@pytest.mark.parametrize(("width", "height"), [(9000, 8000), (50_000, 50_000)])
def test_huge_images_are_refused_before_decoding(tmp_path: Path, width: int, height: int) -> None:
    src = png_header_only(tmp_path / "huge.png", width, height)
    with pytest.raises(EffectError, match="pixels|exceeds"):
        render("invert", src)
    assert not list(tmp_path.glob("*out*"))


def test_every_effect_keeps_image_size(shapes: Path) -> None:
    for effect in list_effects():
        assert render(effect.name, shapes).shape == (120, 160, 3), effect.name
