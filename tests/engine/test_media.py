"""Media detection, and hostile files refused with clear errors before anything decodes them."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from l1web.engine import MediaError, detect


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width×height pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def test_video_with_sound(media):
    info = detect(media["av"])
    assert (info.kind, info.width, info.height, info.has_audio) == ("video", 160, 120, True)
    assert info.fps == pytest.approx(25)
    assert info.duration == pytest.approx(2.0, abs=0.1)


def test_silent_video_and_audio_and_image(media):
    assert (detect(media["silent"]).kind, detect(media["silent"]).has_audio) == ("video", False)
    assert detect(media["tone"]).kind == "audio"
    image = detect(media["image"])
    assert (image.kind, image.format, image.width, image.height) == ("image", "png", 160, 120)


def test_image_declaring_50000_squared_pixels_is_refused(tmp_path):
    with pytest.raises(MediaError, match="too large|MPixel"):
        detect(png_declaring(tmp_path / "bomb.png", 50_000, 50_000))


def test_image_just_over_the_pixel_limit_is_refused(tmp_path):
    with pytest.raises(MediaError, match="MPixel"):
        detect(png_declaring(tmp_path / "big.png", 9000, 8000))


def test_hls_playlist_posing_as_video_is_refused(tmp_path, media):
    fake = tmp_path / "clip.mp4"
    fake.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{media['av']}\n"
                    "#EXT-X-ENDLIST\n")
    with pytest.raises(MediaError, match="playlist"):
        detect(fake)


def test_concat_list_posing_as_video_is_refused(tmp_path, media):
    fake = tmp_path / "clip.mp4"
    fake.write_text(f"ffconcat version 1.0\nfile '{media['av']}'\n")
    with pytest.raises(MediaError, match="playlist or concat"):
        detect(fake)


def test_text_file_is_not_media(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("just some words, which the tty demuxer would happily 'play'\n" * 4)
    with pytest.raises(MediaError, match="allowed format"):
        detect(text)


def test_empty_file_is_refused(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        detect(empty)


def test_playlist_source_fails_at_analysis(render, tmp_path, media):
    fake = tmp_path / "m3u8"
    fake.write_text(f"#EXTM3U\n#EXTINF:2,\n{media['av']}\n")
    with pytest.raises(MediaError, match="playlist"):
        render.plan([render.source("v", fake),
                     {"id": "s", "type": "SEGMENT", "inputs": ["v"]}])
