"""Media facts for the index: kinds, formats, MIME types; hostile input is just "other"."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from l1web.engine import ffmpeg
from l1web.store import facts as media
from l1web.store import thumbs


def test_png_is_an_image_with_its_size(tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (30, 20)).save(path)
    assert media.describe(path) == media.MediaFacts("image", "png", "image/png", 30, 20, None)


def test_mp4_video_is_video_with_duration(tmp_path):
    path = tmp_path / "v.mp4"
    ffmpeg.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=1", "-pix_fmt", "yuv420p", str(path))
    facts = media.describe(path)
    assert (facts.kind, facts.format, facts.mimetype) == ("video", "mp4", "video/mp4")
    assert (facts.width, facts.height) == (64, 48)
    assert abs(facts.duration - 1.0) < 0.2


def test_text_svg_and_playlists_are_other(tmp_path):
    for name, data in {
        "t.txt": b"hello", "i.svg": b'<svg xmlns="http://www.w3.org/2000/svg"/>',
        "p.mp4": b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n",
    }.items():
        path = tmp_path / name
        path.write_bytes(data)
        facts = media.describe(path)
        assert (facts.kind, facts.mimetype) == ("other", "application/octet-stream"), name


def test_only_real_media_kinds_may_be_inline():
    assert media.may_inline("video", "video/mp4")
    assert not media.may_inline("other", "application/octet-stream")
    assert not media.may_inline("image", "application/octet-stream")


def test_no_thumbnail_for_audio_or_other(tmp_path):
    assert not thumbs.make_thumbnail(Path("/nonexistent"), "audio", tmp_path / "t.jpg")
    assert not (tmp_path / "t.jpg").exists()


def test_a_broken_image_gives_no_thumbnail_and_leaves_no_temp(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    assert not thumbs.make_thumbnail(path, "image", tmp_path / "out" / "t.jpg")
    assert list((tmp_path / "out").iterdir()) == []
