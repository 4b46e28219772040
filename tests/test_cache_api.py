"""The cache's JSON API against the real Redis: every endpoint, Range, uploads, bad input."""

from __future__ import annotations

import hashlib
import io

import pytest

JSON = {"Accept": "application/json"}
RAW = {"Content-Type": "application/octet-stream", **JSON}
DATA = bytes(range(256)) * 64


def sha3(data: bytes) -> str:
    return hashlib.sha3_256(data).hexdigest()


def upload(client, data: bytes = DATA, **query):
    return client.post("/cache/upload", data=data, headers=RAW, query_string=query)


@pytest.fixture()
def client(alice_client):
    """Every request here is alice's, signed in through the real dev L2, unless a test says."""
    return alice_client


def test_raw_upload_is_created_and_named_by_its_sha3(client):
    response = upload(client, filename="bytes.bin")
    assert response.status_code == 201
    assert response.json["digest"] == sha3(DATA) and response.json["new"] is True
    assert response.json["size"] == len(DATA) and response.json["name"] == "bytes.bin"
    assert response.headers["Location"] == f"/cache/{sha3(DATA)}"


def test_uploading_the_same_bytes_again_is_200_not_new(client):
    upload(client)
    response = upload(client)
    assert response.status_code == 200 and response.json["new"] is False


def test_multipart_upload_stores_the_file_part(client):
    response = client.post("/cache/upload", headers=JSON, content_type="multipart/form-data",
                           data={"note": "hello", "file": (io.BytesIO(DATA), "pattern.bin")})
    assert response.status_code == 201
    assert response.json["digest"] == sha3(DATA) and response.json["name"] == "pattern.bin"


def test_multipart_without_a_file_part_is_400(client):
    response = client.post("/cache/upload", headers=JSON, content_type="multipart/form-data",
                           data={"note": "no file"})
    assert response.status_code == 400 and "file" in response.json["message"]


def test_zero_byte_upload_is_400(client, settings):
    response = upload(client, b"")
    assert response.status_code == 400 and response.json["error"] == "bad_request"
    assert list((settings.cache_dir / "tmp").iterdir()) == []


def test_oversized_upload_is_413_and_leaves_nothing(app, client, settings):
    app.extensions["l1"].settings = settings.with_changes(max_upload_bytes=1000)
    response = upload(client)
    assert response.status_code == 413 and response.json["error"] == "payload_too_large"
    assert list((settings.cache_dir / "tmp").iterdir()) == []
    assert client.get("/cache", headers=JSON).json["total"] == 0


def test_oversized_multipart_upload_is_413_while_streaming(app, client, settings):
    app.extensions["l1"].settings = settings.with_changes(max_upload_bytes=1000)
    response = client.post("/cache/upload", headers=JSON, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(DATA), "big.bin")})
    assert response.status_code == 413
    assert list((settings.cache_dir / "tmp").iterdir()) == []


def test_upload_records_the_signed_in_owner(client):
    assert upload(client).json["owner"] == "alice"


def test_anonymous_requests_are_401(app):
    anonymous = app.test_client()
    assert anonymous.get("/cache", headers=JSON).status_code == 401
    assert anonymous.post("/cache/upload", data=DATA, headers=RAW).status_code == 401


def test_another_users_item_is_the_same_404_as_an_unknown_one(client, bob_client, admin_client):
    digest = upload(client).json["digest"]
    unknown = bob_client.get(f"/cache/{sha3(b'unknown')}", headers=JSON)
    hidden = bob_client.get(f"/cache/{digest}", headers=JSON)
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json["error"] == unknown.json["error"]
    assert bob_client.delete(f"/cache/{digest}", headers=JSON).status_code == 404
    assert bob_client.get("/cache", headers=JSON).json["total"] == 0
    with admin_client.get(f"/cache/{digest}") as response:
        assert response.status_code == 200


def test_a_user_who_uploaded_the_same_bytes_sees_the_item(client, bob_client):
    digest = upload(client).json["digest"]
    upload(bob_client)
    with bob_client.get(f"/cache/{digest}") as response:
        assert response.status_code == 200
    assert bob_client.get("/cache", headers=JSON).json["total"] == 1


def test_download_sends_the_bytes_as_a_nosniff_attachment(client):
    digest = upload(client).json["digest"]
    with client.get(f"/cache/{digest}") as response:
        assert response.status_code == 200 and response.data == DATA
        assert response.headers["Content-Disposition"].startswith("attachment")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Accept-Ranges"] == "bytes"
        assert response.headers["ETag"] == f'"{digest}"'


def test_range_request_returns_206_with_exactly_those_bytes(client):
    digest = upload(client).json["digest"]
    with client.get(f"/cache/{digest}", headers={"Range": "bytes=100-199"}) as response:
        assert response.status_code == 206
        assert response.headers["Content-Range"] == f"bytes 100-199/{len(DATA)}"
        assert response.data == DATA[100:200]


def test_open_ended_and_suffix_ranges(client):
    digest = upload(client).json["digest"]
    with client.get(f"/cache/{digest}", headers={"Range": "bytes=-10"}) as response:
        assert response.status_code == 206 and response.data == DATA[-10:]
    with client.get(f"/cache/{digest}", headers={"Range": f"bytes={len(DATA) - 5}-"}) as response:
        assert response.data == DATA[-5:]


def test_unsatisfiable_range_is_416(client):
    digest = upload(client).json["digest"]
    with client.get(f"/cache/{digest}", headers={"Range": f"bytes={len(DATA) + 10}-"}) as response:
        assert response.status_code == 416


def test_if_none_match_gives_304(client):
    digest = upload(client).json["digest"]
    with client.get(f"/cache/{digest}", headers={"If-None-Match": f'"{digest}"'}) as response:
        assert response.status_code == 304


def test_head_gives_the_headers_without_a_body(client):
    digest = upload(client).json["digest"]
    with client.head(f"/cache/{digest}") as response:
        assert response.status_code == 200 and response.data == b""
        assert int(response.headers["Content-Length"]) == len(DATA)


def test_inline_is_only_granted_to_playable_media(client, cat_png):
    binary = upload(client).json["digest"]
    with client.get(f"/cache/{binary}?inline=1") as response:
        assert response.headers["Content-Disposition"].startswith("attachment")
    image = upload(client, cat_png).json["digest"]
    with client.get(f"/cache/{image}?inline=1") as response:
        assert response.headers["Content-Type"] == "image/png"
        assert response.headers["Content-Disposition"].startswith("inline")


def test_svg_and_html_are_never_served_inline(client):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    for payload in (svg, b"<html><script>alert(1)</script></html>"):
        digest = upload(client, payload).json["digest"]
        with client.get(f"/cache/{digest}?inline=1") as response:
            assert response.headers["Content-Disposition"].startswith("attachment")
            assert response.headers["Content-Type"] == "application/octet-stream"
            assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_meta_describes_the_item_and_its_references(client, state, cat_png):
    digest = upload(client, cat_png).json["digest"]
    state.cache.add_ref(digest, "run:abc")
    meta = client.get(f"/cache/{digest}/meta", headers=JSON).json
    assert meta["kind"] == "image" and meta["format"] == "png" and meta["mimetype"] == "image/png"
    assert (meta["width"], meta["height"]) == (64, 48)
    assert meta["refs"] == ["run:abc"] and meta["published"] is False


@pytest.mark.parametrize("path", [
    "/cache/" + "A" * 64, "/cache/" + "a" * 63, "/cache/" + "a" * 65, "/cache/..%2F..%2Fetc%2Fpasswd",
    "/cache/../../etc/passwd", "/cache/%00", "/cache/*", "/cache/" + "a" * 63 + "%0A",
    "/cache/" + "A" * 64 + "/meta",
])
def test_malformed_hashes_are_400(client, path):
    response = client.get(path, headers=JSON)
    assert response.status_code == 400 and response.json["error"] == "invalid_hash"


def test_malformed_hash_on_delete_is_400(client):
    assert client.delete("/cache/" + "Z" * 64, headers=JSON).status_code == 400


@pytest.mark.parametrize("method, suffix", [("get", ""), ("head", ""), ("get", "/meta"), ("delete", "")])
def test_unknown_hashes_are_404(client, method, suffix):
    response = getattr(client, method)(f"/cache/{sha3(b'unknown')}{suffix}", headers=JSON)
    assert response.status_code == 404


def test_a_corrupted_item_is_refused_with_410_and_quarantined(client, settings):
    digest = upload(client).json["digest"]
    path = settings.cache_dir / digest[:2] / digest
    path.write_bytes(b"tampered" + DATA[8:])
    response = client.get(f"/cache/{digest}", headers=JSON)
    assert response.status_code == 410 and "integrity check failed" in response.json["message"]
    assert not path.exists()
    assert client.get(f"/cache/{digest}", headers=JSON).status_code == 410


def test_delete_removes_an_unreferenced_item(client):
    digest = upload(client).json["digest"]
    response = client.delete(f"/cache/{digest}", headers=JSON)
    assert response.status_code == 200 and response.json == {"deleted": digest}
    assert client.get(f"/cache/{digest}", headers=JSON).status_code == 404


def test_delete_of_a_referenced_item_is_409_naming_the_runs(client, state):
    digest = upload(client).json["digest"]
    state.cache.add_ref(digest, "run:run-one")
    response = client.delete(f"/cache/{digest}", headers=JSON)
    assert response.status_code == 409 and response.json["error"] == "conflict"
    assert response.json["runs"] == ["run-one"] and "run:run-one" in response.json["message"]
    with client.get(f"/cache/{digest}") as download:
        assert download.status_code == 200


def test_delete_of_a_published_item_is_409(client, state):
    digest = upload(client).json["digest"]
    state.cache.mark_published(digest)
    response = client.delete(f"/cache/{digest}", headers=JSON)
    assert response.status_code == 409 and "published" in response.json["refs"]


def test_listing_pages_with_cursor_and_page_numbers(client):
    digests = [upload(client, f"item {n}".encode()).json["digest"] for n in range(5)]
    first = client.get("/cache?limit=2", headers=JSON).json
    assert [i["digest"] for i in first["items"]] == digests[::-1][:2] and first["total"] == 5
    second = client.get("/cache", query_string={"limit": 2, "cursor": first["next_cursor"]}, headers=JSON).json
    assert [i["digest"] for i in second["items"]] == digests[::-1][2:4]
    third = client.get("/cache?limit=2&page=3", headers=JSON).json
    assert [i["digest"] for i in third["items"]] == [digests[0]] and third["next_cursor"] is None
    assert first["items"][0]["url"] == f"/cache/{digests[-1]}"


@pytest.mark.parametrize("query", ["limit=0", "limit=1000", "limit=x", "page=0", "cursor=garbage"])
def test_listing_rejects_bad_paging_arguments(client, query):
    assert client.get(f"/cache?{query}", headers=JSON).status_code == 400


def test_assets_lists_named_items(client, state):
    digest = upload(client).json["digest"]
    state.cache.set_asset("pattern", digest)
    assets = client.get("/assets", headers=JSON).json["assets"]
    assert assets["pattern"]["digest"] == digest and assets["pattern"]["size"] == len(DATA)


@pytest.fixture()
def import_root(app, settings, tmp_path):
    root = tmp_path / "imports"
    root.mkdir()
    (root / "clip.bin").write_bytes(DATA)
    app.extensions["l1"].settings = settings.with_changes(import_roots=(root,))
    return root


def test_import_needs_an_admin(app, client, import_root):
    path = str(import_root / "clip.bin")
    assert client.post("/cache/import", query_string={"path": path}, headers=JSON).status_code == 403
    assert app.test_client().post("/cache/import", query_string={"path": path}, headers=JSON).status_code == 401


def test_admin_imports_a_file_from_a_root(admin_client, import_root):
    response = admin_client.post("/cache/import", query_string={"path": str(import_root / "clip.bin")}, headers=JSON)
    assert response.status_code == 201 and response.json["digest"] == sha3(DATA)
    assert response.json["owner"] == "admin"


@pytest.mark.parametrize("path, status", [
    ("/etc/passwd", 403), ("{root}/../../etc/passwd", 403), ("{root}", 400), ("/dev/null", 403),
    ("{root}/missing.bin", 404), ("relative.bin", 400), ("", 400),
])
def test_import_refusals(admin_client, import_root, state, path, status):
    response = admin_client.post("/cache/import", query_string={"path": path.format(root=import_root)}, headers=JSON)
    assert response.status_code == status, response.json
    assert state.cache.count() == 0


def test_import_of_a_symlink_escape_is_403(admin_client, import_root):
    (import_root / "link").symlink_to("/etc/passwd")
    response = admin_client.post("/cache/import", query_string={"path": str(import_root / "link")}, headers=JSON)
    assert response.status_code == 403


@pytest.fixture()
def cat_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(buffer, "PNG")
    return buffer.getvalue()
