"""The /media pages: grid with previews, upload without and with htmx, item page, delete."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from l1web import samples
from l1web.store import ContentStore

HTML = {"Accept": "text/html"}
HTMX = {**HTML, "HX-Request": "true"}


@pytest.fixture()
def client(alice_client):
    return alice_client


@pytest.fixture()
def sample_assets(app, state) -> dict[str, str]:
    store: ContentStore = app.extensions["l1"].store
    return samples.ensure_samples(store, state.cache)


def png_bytes(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def upload_page(client, data: bytes, name: str, headers=HTML):
    return client.post("/media", headers=headers, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(data), name)})


def test_media_page_lists_items_with_thumbnails_and_a_video_poster(admin_client, sample_assets):
    page = admin_client.get("/media", headers=HTML)
    html = page.data.decode()
    assert page.status_code == 200 and "<h1>Media</h1>" in html
    assert f'src="/media/{sample_assets["cat"]}/thumb"' in html
    assert f'src="/media/{sample_assets["testvideo"]}/thumb"' in html
    assert 'enctype="multipart/form-data"' in html and 'name="file"' in html
    assert f'action="/media/{sample_assets["cat"]}/delete"' in html


def test_upload_form_carries_the_csrf_token_for_the_no_js_post(client):
    html = client.get("/media", headers=HTML).data.decode()
    assert re.search(r'action="/media\?csrf_token=[0-9a-f]{64}"', html)


def test_upload_without_javascript_redirects_to_the_item(client):
    response = upload_page(client, png_bytes(), "green.png")
    assert response.status_code == 303
    digest = response.headers["Location"].rsplit("/", 1)[-1]
    item = client.get(f"/media/{digest}", headers=HTML).data.decode()
    assert "green.png" in item and f'src="/cache/{digest}?inline=1"' in item and "<img" in item


def test_upload_with_htmx_returns_the_status_and_the_grid_out_of_band(client):
    response = upload_page(client, png_bytes(), "green.png", headers=HTMX)
    html = response.data.decode()
    assert response.status_code == 200 and "Uploaded" in html
    assert 'id="media-grid"' in html and 'hx-swap-oob="outerHTML"' in html
    assert "<html" not in html


def test_a_failed_htmx_upload_shows_the_reason(client):
    response = upload_page(client, b"", "empty.bin", headers=HTMX)
    assert response.status_code == 400 and "zero-byte" in response.data.decode()
    assert "<html" not in response.data.decode()


def test_item_page_has_a_seekable_video_player(admin_client, sample_assets):
    digest = sample_assets["testvideo"]
    html = admin_client.get(f"/media/{digest}", headers=HTML).data.decode()
    assert "<video controls" in html
    assert f'<source src="/cache/{digest}?inline=1" type="video/mp4">' in html
    assert f'poster="/media/{digest}/thumb"' in html
    with admin_client.get(f"/cache/{digest}?inline=1", headers={"Range": "bytes=1000-1999"}) as ranged:
        assert ranged.status_code == 206 and len(ranged.data) == 1000
        assert ranged.headers["Content-Disposition"].startswith("inline")


def test_item_page_has_an_audio_player_for_audio(client, tmp_path):
    from l1web.engine import ffmpeg

    tone = tmp_path / "tone.wav"
    ffmpeg.ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=0.5", str(tone))
    digest = upload_page(client, tone.read_bytes(), "tone.wav").headers["Location"].rsplit("/", 1)[-1]
    html = client.get(f"/media/{digest}", headers=HTML).data.decode()
    assert "<audio controls" in html and 'type="audio/wav"' in html


def test_thumbnail_is_a_small_jpeg_made_once(client, app):
    digest = upload_page(client, png_bytes((900, 600)), "wide.png").headers["Location"].rsplit("/", 1)[-1]
    with client.get(f"/media/{digest}/thumb") as first:
        assert first.status_code == 200 and first.headers["Content-Type"] == "image/jpeg"
        thumb = Image.open(io.BytesIO(first.data))
        assert thumb.size == (320, 213)
    path = app.extensions["l1"].store.thumb_path(digest)
    made = path.stat().st_mtime_ns
    with client.get(f"/media/{digest}/thumb") as second:
        assert second.status_code == 200
    assert path.stat().st_mtime_ns == made


def test_video_poster_is_a_jpeg_frame(admin_client, sample_assets):
    with admin_client.get(f"/media/{sample_assets['testvideo']}/thumb") as response:
        assert response.status_code == 200
        assert Image.open(io.BytesIO(response.data)).size == (320, 240)


def test_non_media_gets_no_thumbnail(client):
    digest = upload_page(client, b"just some text", "notes.txt").headers["Location"].rsplit("/", 1)[-1]
    assert client.get(f"/media/{digest}/thumb", headers=HTML).status_code == 404
    html = client.get("/media", headers=HTML).data.decode()
    assert 'class="thumb placeholder"' in html


def test_delete_without_javascript_redirects_to_the_grid(client):
    digest = upload_page(client, png_bytes(), "gone.png").headers["Location"].rsplit("/", 1)[-1]
    response = client.post(f"/media/{digest}/delete", headers=HTML)
    assert response.status_code == 303 and response.headers["Location"] == "/media"
    assert client.get(f"/media/{digest}", headers=HTML).status_code == 404


def test_delete_with_htmx_removes_the_card(client):
    digest = upload_page(client, png_bytes(), "gone.png").headers["Location"].rsplit("/", 1)[-1]
    response = client.post(f"/media/{digest}/delete", headers=HTMX)
    html = response.data.decode()
    assert response.status_code == 200 and f"item-{digest}" not in html  # the card's swap: gone
    assert 'id="media-status"' in html and "Deleted gone.png." in html and html.count('hx-swap-oob') == 2


def test_deleting_a_sample_shows_why_it_is_refused(admin_client, sample_assets):
    html = admin_client.get("/media", headers=HTML).data.decode()
    assert 'title="The named asset cat needs it"' in html
    response = admin_client.post(f"/media/{sample_assets['cat']}/delete", headers=HTMX)
    assert response.status_code == 409 and "asset:cat" in response.data.decode()


def test_names_with_markup_are_escaped(client):
    response = upload_page(client, png_bytes(), '<img src=x onerror="alert(1)">.png')
    digest = response.headers["Location"].rsplit("/", 1)[-1]
    for path in ("/media", f"/media/{digest}"):
        html = client.get(path, headers=HTML).data.decode()
        assert '<img src=x onerror="alert(1)">' not in html
        assert "&lt;img src=x onerror=" in html


def test_media_page_for_anonymous_browsers_redirects_to_sign_in(app):
    response = app.test_client().get("/media", headers=HTML)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
