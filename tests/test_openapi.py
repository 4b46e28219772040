"""The OpenAPI document against the real app: valid OpenAPI 3, exactly the app's JSON routes,
examples that fit their schemas, and real responses (real Redis, a real worker) that fit theirs.

Which routes are pages is written down here (`PAGE_ENDPOINTS`): every other route of the app
must be in the document, so a new JSON route without documentation fails
`test_the_document_lists_exactly_the_json_routes`.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec
from PIL import Image

from l1web import openapi

#: Endpoints that serve pages, fragments, redirects or static files to browsers, never JSON.
PAGE_ENDPOINTS = frozenset({
    "static",
    "apidocs.docs",
    "auth.login", "auth.auth", "auth.logout_page", "auth.logout",
    "media.index", "media.upload", "media.item", "media.thumbnail", "media.delete", "media.share",
    "recipes.index", "recipes.upload_form", "recipes.page", "recipes.run_form", "recipes.delete_form",
    "recipes.share_form",
    "runs.page", "runs.run_fragment", "runs.list_fragment", "runs.act", "runs.log_panel",
    "workers.fragment", "batches.fragment",
    "publish.publish_page",
    # Catch-all that answers 400 for /cache/<anything with a slash>: part of /cache/{digest}'s contract.
    "cache.malformed",
})
#: Blueprints whose every route is a page (a mounted third-party UI, for instance).
PAGE_BLUEPRINTS = frozenset({"rq_dashboard"})
#: Methods Flask adds to routes by itself; HEAD is documented only where it means something.
IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})
#: A Flask converter in a rule: `<int:page>` → `page`.
CONVERTER = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")
JSON = {"Accept": "application/json"}
RECIPE = """\
name: invert-it
version: "1.0"
description: Invert the colours of one image
dag:
  nodes:
    - {id: user_image, type: SOURCE, config: {input: true, name: input_image}}
    - {id: flip, type: EFFECT, config: {effect: invert}, inputs: [user_image]}
  output: flip
"""


def is_page(app: Flask, endpoint: str) -> bool:
    blueprint = endpoint.rsplit(".", 1)[0] if "." in endpoint else ""
    return endpoint in PAGE_ENDPOINTS or blueprint in PAGE_BLUEPRINTS


def app_operations(app: Flask) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(required, allowed): JSON (path, METHOD)s the document must list, and those it may list."""
    required, allowed = set(), set()
    for rule in app.url_map.iter_rules():
        if is_page(app, rule.endpoint):
            continue
        methods = rule.methods or set()
        path = CONVERTER.sub(r"<\1>", rule.rule)  # /x/<int:n> is /x/{n} in OpenAPI
        required.update((path, m) for m in methods - IMPLICIT_METHODS)
        allowed.update((path, m) for m in methods - {"OPTIONS"})
    return required, allowed


# Schema helpers ---------------------------------------------------------------------------------
def resolved(node: object, document: dict) -> object:
    """`node` with every `$ref` replaced by what it points at (the document has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: object = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]  # type: ignore[index]
            return resolved(target, document)
        return {key: resolved(value, document) for key, value in node.items()}
    if isinstance(node, list):
        return [resolved(item, document) for item in node]
    return node


def schema_errors(schema: dict, instance: object) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in OAS30Validator(schema).iter_errors(instance)]


def operation(document: dict, template: str, method: str) -> dict:
    return resolved(document["paths"][template][method.lower()], document)  # type: ignore[return-value]


def walk_operations(document: dict) -> Iterator[tuple[str, str, dict]]:
    for template, item in document["paths"].items():
        for method in openapi.OPERATIONS:
            if method in item:
                yield template, method, resolved(item[method], document)  # type: ignore[misc]


# The document -----------------------------------------------------------------------------------
def test_the_served_document_is_valid_openapi_3_naming_this_server(client, settings):
    answer = client.get("/openapi.json")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    document = answer.json
    validate_spec(document)
    assert document["openapi"].startswith("3.")
    assert document["servers"] == [{"url": settings.l1_public_url}]
    assert set(document["components"]["securitySchemes"]) == {"bearerAuth", "cookieAuth", "csrfToken", "workerToken"}


def test_the_document_lists_exactly_the_json_routes(app):
    required, allowed = app_operations(app)
    documented = openapi.operations()
    assert required - documented == set(), "JSON routes missing from l1web/openapi/*.yaml (or add to PAGE_ENDPOINTS)"
    assert documented - allowed == set(), "documented operations the app does not have"
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert PAGE_ENDPOINTS - endpoints == set(), "PAGE_ENDPOINTS names endpoints that no longer exist"


def test_a_new_undocumented_json_route_is_noticed(app):
    app.add_url_rule("/runs/<run_id>/secret", "runs_secret", lambda run_id: {"x": run_id})
    required, _ = app_operations(app)
    assert ("/runs/<run_id>/secret", "GET") in required - openapi.operations()


def test_every_operation_has_an_id_a_summary_and_a_json_error_body(app):
    document = openapi.document()
    ids = []
    for template, method, op in walk_operations(document):
        ids.append(op["operationId"])
        assert op.get("summary"), f"{method} {template} has no summary"
        if method != "head":
            error = op["responses"]["default"]["content"]["application/json"]["schema"]
            assert error["required"] == ["error", "message"]
    assert len(ids) == len(set(ids)) == len(openapi.operations())


def test_no_value_is_a_stray_null():
    """An unquoted `, ` inside a YAML flow mapping silently makes a key with a null value."""
    def nulls(node: object, where: str) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if value is None:
                    yield f"{where}/{key}"
                yield from nulls(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from nulls(value, f"{where}/{index}")

    assert list(nulls(openapi.document(), "")) == []


def test_a_duplicate_definition_across_files_is_refused():
    document = openapi.document()
    with pytest.raises(openapi.DocumentError, match="already defined"):
        openapi._merge_area(document, {"paths": {"/runs": {"get": {}}}}, "dup.yaml")  # noqa: SLF001


def test_every_request_example_fits_its_schema():
    document = openapi.document()
    checked = 0
    for template, method, op in walk_operations(document):
        for media, content in op.get("requestBody", {}).get("content", {}).items():
            examples = [e["value"] for e in content.get("examples", {}).values()]
            examples += [content["example"]] if "example" in content else []
            for example in examples:
                assert schema_errors(content["schema"], example) == [], f"{method} {template} {media}"
                checked += 1
    assert checked >= 6


def test_the_request_schemas_refuse_what_the_server_refuses(alice_client):
    """The schema is no rubber stamp: bodies it refuses, the server refuses too."""
    schema = operation(openapi.document(), "/runs", "post")["requestBody"]["content"]["application/json"]["schema"]
    for body in ({"inputs": ["cat"]}, {"recipe": "dog", "inputs": 5}, {"recipe": "dog", "colour": "red"},
                 {"recipe": "dog", "force": "yes"}, {"recipe": "dog", "output_name": "a/b"}):
        assert schema_errors(schema, body), body
        answer = alice_client.post("/runs", json=body, headers=JSON)
        assert answer.status_code == 400, body
        assert schema_errors(operation(openapi.document(), "/runs", "post")["responses"]["400"]["content"]
                             ["application/json"]["schema"], answer.json) == []


# Real responses ---------------------------------------------------------------------------------
class Checker:
    """Calls the app by documented path template and checks each JSON answer against the document."""

    def __init__(self) -> None:
        self.document = openapi.document()
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, client: FlaskClient, method: str, template: str, *, expect: int, headers=None, **kwargs):
        params = re.findall(r"{(\w+)}", template)
        path = template.format(**{name: kwargs.pop(name) for name in params})
        answer = client.open(path, method=method, headers={**JSON, **(headers or {})}, **kwargs)
        assert answer.status_code == expect, (method, path, answer.status_code, answer.data[:300])
        responses = operation(self.document, template, method)["responses"]
        spec = responses.get(str(expect)) or responses["default"]
        content = spec.get("content", {})
        if answer.mimetype == "application/json":
            assert "application/json" in content, f"{method} {template} {expect} answered JSON it does not document"
            errors = schema_errors(content["application/json"]["schema"], answer.json)
            assert errors == [], (method, template, expect, errors)
        elif method != "HEAD" and expect != 204:  # 204 No Content has no body and no type
            assert answer.mimetype in content or "*/*" in content, (method, template, expect, answer.mimetype)
        answer.close()
        self.seen.add((template.replace("{", "<").replace("}", ">"), method))
        return answer


def png_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), colour).save(buffer, "PNG")
    return buffer.getvalue()


def wait_for(client: FlaskClient, run_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/runs/{run_id}", headers=JSON).json
        if run["status"] not in ("pending", "running"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still live after {timeout}s")


def test_real_responses_of_every_operation_fit_the_document(app, alice_client, admin_client, dev_l2, settings,
                                                             start_worker, tmp_path):
    check = Checker()
    start_worker()
    anonymous = app.test_client()
    bearer = {"Authorization": f"Bearer {alice_client.token}"}
    plain = app.test_client()  # no cookies: Bearer only

    check(anonymous, "GET", "/", expect=200)
    check(anonymous, "GET", "/openapi.json", expect=200)
    check(anonymous, "GET", "/download/client", expect=200)
    check(anonymous, "GET", "/effects", expect=401)
    check(alice_client, "GET", "/auth/whoami", expect=200)
    who = check(plain, "GET", "/auth/whoami", expect=200, headers=bearer).json
    assert who["via"] == "bearer" and who["csrf_token"] is None

    effects = check(plain, "GET", "/effects", expect=200, headers=bearer).json["effects"]
    assert {"dog", "invert", "identity"} <= {e["name"] for e in effects}
    check(alice_client, "GET", "/effects/{ref}", ref="dog", expect=200)
    check(alice_client, "GET", "/effects/{ref}", ref="nope", expect=404)

    # The cache
    stored = check(plain, "POST", "/cache/upload", expect=201, headers={**bearer, "Content-Type": "image/png"},
                   data=png_bytes((200, 30, 30))).json
    digest = stored["digest"]
    check(alice_client, "POST", "/cache/upload", expect=200, data={"file": (io.BytesIO(png_bytes((200, 30, 30))),
                                                                           "red.png")})
    check(alice_client, "GET", "/cache", expect=200)
    check(alice_client, "GET", "/cache", expect=400, query_string={"limit": "x"})
    check(alice_client, "GET", "/cache/{digest}/meta", digest=digest, expect=200)
    check(alice_client, "GET", "/cache/{digest}/meta", digest="ab" * 32, expect=404)
    check(alice_client, "POST", "/cache/{digest}/share", digest=digest, expect=200)
    check(alice_client, "DELETE", "/cache/{digest}/share", digest=digest, expect=200)
    check(alice_client, "POST", "/cache/{digest}/share", digest="ab" * 32, expect=404)
    check(alice_client, "GET", "/cache/{digest}", digest=digest, expect=200)
    check(alice_client, "HEAD", "/cache/{digest}", digest=digest, expect=200)
    check(alice_client, "GET", "/cache/{digest}", digest="XYZ", expect=400)
    check(alice_client, "POST", "/cache/import", expect=403, query_string={"path": "/etc/hostname"})
    roots_file = tmp_path / "import-me.png"
    roots_file.write_bytes(png_bytes((1, 2, 3)))
    admin_client.application.extensions["l1"].settings = settings.with_changes(import_roots=(tmp_path,))
    check(admin_client, "POST", "/cache/import", expect=201, query_string={"path": str(roots_file)})
    check(alice_client, "GET", "/assets", expect=200)
    check(plain, "POST", "/cache/missing", expect=200, headers=bearer, json={"hashes": [digest, "ab" * 32]})
    check(plain, "POST", "/cache/missing", expect=400, headers=bearer, json={"hashes": ["nope"]})
    tus = {**bearer, "Tus-Resumable": "1.0.0"}
    created = check(plain, "POST", "/cache/uploads", expect=201, headers={**tus, "Upload-Length": "3"}).json
    check(plain, "POST", "/cache/uploads", expect=400, headers={**tus, "Upload-Length": "-3"})
    check(plain, "HEAD", "/cache/uploads/{upload_id}", upload_id=created["id"], expect=200, headers=tus)
    check(plain, "PATCH", "/cache/uploads/{upload_id}", upload_id=created["id"], expect=409, data=b"abc",
          headers={**tus, "Upload-Offset": "1", "Content-Type": "application/offset+octet-stream"})
    check(plain, "PATCH", "/cache/uploads/{upload_id}", upload_id=created["id"], expect=204, data=b"a",
          headers={**tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    check(plain, "DELETE", "/cache/uploads/{upload_id}", upload_id=created["id"], expect=204, headers=tus)
    check(plain, "DELETE", "/cache/uploads/{upload_id}", upload_id=created["id"], expect=404, headers=tus)

    # Recipes and runs
    config = check(alice_client, "POST", "/configs/upload", expect=201, data=RECIPE.encode(),
                   headers={"Content-Type": "application/x-yaml"}).json
    check(alice_client, "POST", "/configs/upload", expect=400, data=b"name: [unclosed\n",
          headers={"Content-Type": "application/x-yaml"})
    check(alice_client, "GET", "/configs", expect=200)
    check(admin_client, "GET", "/configs", expect=200)
    check(alice_client, "GET", "/configs/{config_id}", config_id=config["id"], expect=200)
    check(alice_client, "GET", "/configs/{config_id}", config_id="0" * 64, expect=404)
    check(alice_client, "POST", "/configs/{config_id}/share", config_id=config["id"], expect=200)
    check(alice_client, "DELETE", "/configs/{config_id}/share", config_id=config["id"], expect=200)
    check(alice_client, "DELETE", "/configs/{config_id}/share", config_id="0" * 64, expect=404)
    by_recipe = check(plain, "POST", "/configs/{config_id}/run", config_id=config["id"], expect=201, headers=bearer,
                      json={"inputs": {"input_image": digest}}).json
    run = check(plain, "POST", "/runs", expect=201, headers=bearer, json={"recipe": "invert", "inputs": [digest]}).json
    check(alice_client, "POST", "/runs", expect=200, json={"recipe": "invert", "inputs": [digest]})
    check(alice_client, "POST", "/runs", expect=404, json={"recipe": "nope", "inputs": [digest]})
    check(alice_client, "GET", "/runs", expect=200)
    check(alice_client, "GET", "/runs", expect=400, query_string={"status": "sleeping"})
    wait_for(alice_client, by_recipe["id"])
    done = wait_for(alice_client, run["id"])
    assert done["status"] == "completed", done
    shown = check(alice_client, "GET", "/runs/{run_id}", run_id=run["id"], expect=200).json
    assert [s["status"] for s in shown["steps"]] and shown["links"]["output"]
    check(alice_client, "GET", "/runs/{run_id}/provenance", run_id=run["id"], expect=200)
    check(alice_client, "GET", "/runs/{run_id}/steps/{step_id}/log", run_id=run["id"], step_id="invert", expect=200)
    check(alice_client, "GET", "/runs/{run_id}/steps/{step_id}/log", run_id=run["id"], step_id="nope", expect=404)
    check(alice_client, "GET", "/runs/{run_id}/steps/{step_id}/preview", run_id=run["id"], step_id="invert",
          expect=404)  # an image step keeps no "last rendered" frame
    check(alice_client, "PUT", "/notify", expect=200, json={"secret": "x" * 20})
    check(alice_client, "PUT", "/notify", expect=400, json={"url": "ftp://example.org/"})
    check(alice_client, "GET", "/notify", expect=200)
    check(anonymous, "GET", "/notify", expect=401)
    check(anonymous, "GET", "/healthz", expect=200)
    check(anonymous, "GET", "/readyz", expect=200)  # a worker has just finished runs
    check(admin_client, "GET", "/metrics", expect=200)
    check(alice_client, "GET", "/metrics", expect=403)
    check(admin_client, "GET", "/admin/status", expect=200)
    check(alice_client, "GET", "/admin/status", expect=403)
    check(plain, "POST", "/runs/{run_id}/publish", run_id=run["id"], expect=201, headers=bearer)
    check(alice_client, "POST", "/runs/{run_id}/publish", run_id=run["id"], expect=200)
    check(alice_client, "POST", "/runs/{run_id}/publish", run_id="f" * 64, expect=404)
    check(alice_client, "POST", "/runs/{run_id}/cancel", run_id=run["id"], expect=409)
    check(alice_client, "POST", "/runs/{run_id}/rerun", run_id=run["id"], expect=409)
    check(alice_client, "DELETE", "/configs/{config_id}", config_id=config["id"], expect=409)
    check(alice_client, "DELETE", "/runs/{run_id}", run_id=by_recipe["id"], expect=200)
    check(alice_client, "DELETE", "/configs/{config_id}", config_id=config["id"], expect=200)
    check(alice_client, "DELETE", "/runs/{run_id}", run_id="f" * 64, expect=404)
    # The whole queue paused, the run stays live (no step of it starts) through the checks below
    # that need a live run, however fast the worker is (a loaded CI machine once saw the run
    # completed before its cancel when the queue was paused only after it).
    check(admin_client, "POST", "/admin/queue/{action}", action="pause", expect=200)
    live = check(alice_client, "POST", "/runs", expect=201,
                 json={"recipe": "dog", "inputs": [digest], "params": {"sigma": 2.0}}).json
    check(alice_client, "POST", "/runs/{run_id}/cancel", run_id=live["id"], expect=200)
    check(alice_client, "GET", "/runs/{run_id}/provenance", run_id=live["id"], expect=409)
    check(alice_client, "POST", "/runs/{run_id}/rerun", run_id=live["id"], expect=200)
    check(alice_client, "POST", "/runs/{run_id}/priority", run_id=live["id"], expect=200, json={"priority": -1})
    check(alice_client, "POST", "/runs/{run_id}/priority", run_id=live["id"], expect=403, json={"priority": 5})
    check(alice_client, "POST", "/runs/{run_id}/priority", run_id=live["id"], expect=400, json={"priority": "x"})
    check(alice_client, "POST", "/runs/{run_id}/priority", run_id=run["id"], expect=409, json={"priority": 0})
    check(alice_client, "POST", "/runs/{run_id}/pause", run_id=live["id"], expect=200)
    check(alice_client, "POST", "/runs/{run_id}/resume", run_id=live["id"], expect=200)
    check(alice_client, "POST", "/runs/{run_id}/resume", run_id=live["id"], expect=409)
    check(alice_client, "POST", "/runs/{run_id}/cancel", run_id=live["id"], expect=200)
    check(alice_client, "POST", "/runs/{run_id}/requeue", run_id=live["id"], expect=200)
    check(admin_client, "POST", "/admin/queue/{action}", action="resume", expect=200)
    check(alice_client, "POST", "/runs/{run_id}/pause", run_id=run["id"], expect=409)
    check(alice_client, "POST", "/runs/{run_id}/requeue", run_id=run["id"], expect=409)
    check(alice_client, "POST", "/runs/{run_id}/requeue", run_id="f" * 64, expect=404)
    batch = check(alice_client, "POST", "/batches", expect=201,
                  json={"recipe": "invert", "inputs": [digest], "paused": True, "priority": -2}).json
    check(alice_client, "POST", "/batches", expect=400, json={"recipe": "invert", "inputs": []})
    check(alice_client, "POST", "/batches", expect=404, json={"recipe": "invert", "inputs": ["ab" * 32]})
    check(alice_client, "GET", "/batches", expect=200)
    check(alice_client, "GET", "/batches/{batch_id}", batch_id=batch["id"], expect=200)
    check(alice_client, "GET", "/batches/{batch_id}", batch_id="0" * 32, expect=404)
    check(alice_client, "POST", "/runs/bulk", expect=200, json={"action": "resume", "runs": batch["run_ids"]})
    check(alice_client, "POST", "/runs/bulk", expect=400, json={"action": "explode", "runs": batch["run_ids"]})
    check(alice_client, "POST", "/batches/{batch_id}/{action}", batch_id=batch["id"], action="cancel", expect=200)
    check(alice_client, "POST", "/batches/{batch_id}/{action}", batch_id="0" * 32, action="cancel", expect=404)
    check(admin_client, "GET", "/admin/queue", expect=200)
    check(alice_client, "GET", "/admin/queue", expect=403)
    check(admin_client, "POST", "/admin/queue/{action}", action="pause", expect=200)
    check(admin_client, "POST", "/admin/queue/{action}", action="resume", expect=200)
    check(alice_client, "POST", "/admin/queue/{action}", action="pause", expect=403)
    rows = check(admin_client, "GET", "/workers", expect=200).json["workers"]
    check(alice_client, "GET", "/workers", expect=403)
    check(admin_client, "POST", "/workers/{name}/{action}", name=rows[0]["name"], action="drain", expect=200)
    check(admin_client, "POST", "/workers/{name}/{action}", name=rows[0]["name"], action="resume", expect=200)
    check(admin_client, "POST", "/workers/{name}/{action}", name="nobody", action="drain", expect=404)
    check(alice_client, "POST", "/workers/{name}/{action}", name=rows[0]["name"], action="drain", expect=403)
    check(alice_client, "DELETE", "/cache/{digest}", digest=digest, expect=409)
    other = check(alice_client, "POST", "/cache/upload", expect=201, data=b"just bytes",
                  headers={"Content-Type": "application/octet-stream"}).json
    check(alice_client, "DELETE", "/cache/{digest}", digest=other["digest"], expect=200)

    # Workers on other hosts: off (404) until WORKER_TOKEN is set, then token-checked.
    check(plain, "GET", "/worker/cache/{digest}", digest=digest, expect=404)
    app.extensions["l1"].settings = app.extensions["l1"].settings.with_changes(worker_token="w-secret")
    worker = {"X-Worker-Token": "w-secret", "Content-Type": "application/octet-stream"}
    check(plain, "GET", "/worker/cache/{digest}", digest=digest, expect=401, headers={"X-Worker-Token": "wrong"})
    # Issue 13: a worker may fetch only what a live run needs; a pending run needing `digest`:
    check(plain, "GET", "/worker/cache/{digest}", digest=digest, expect=404, headers=worker)
    app.extensions["l1"].state.runs.create({"id": "f" * 64, "status": "pending", "created": 1.0, "owner": "alice",
                                            "input_hashes": {"input": digest}})
    check(plain, "GET", "/worker/cache/{digest}", digest=digest, expect=200, headers=worker)
    with plain.get(f"/worker/cache/{digest}", headers=worker) as fetched:
        assert hashlib.sha3_256(fetched.data).hexdigest() == digest
    rendered = b"a worker's output"
    check(plain, "PUT", "/worker/cache/{digest}", digest=hashlib.sha3_256(rendered).hexdigest(), expect=200,
          headers=worker, data=rendered)
    check(plain, "PUT", "/worker/cache/{digest}", digest="ab" * 32, expect=400, headers=worker, data=rendered)
    # Issue 16: a worker that joined a chunked step deletes the server's copy of a chunk, and only that.
    chunk = hashlib.sha3_256(rendered).hexdigest()
    check(plain, "DELETE", "/worker/cache/{digest}", digest=chunk, expect=404, headers=worker)
    app.extensions["l1"].state.removed_chunks.add([chunk])
    check(plain, "DELETE", "/worker/cache/{digest}", digest=chunk, expect=200, headers=worker)
    check(plain, "DELETE", "/worker/cache/{digest}", digest=chunk, expect=401, headers={"X-Worker-Token": "no"})

    # Tokens last: they end sign-ins.
    spare = dev_l2.mint("alice", settings.l1_public_url)
    check(plain, "GET", "/auth/whoami", expect=200, headers={"Authorization": f"Bearer {spare}"})
    check(anonymous, "POST", "/auth/revoke", expect=200, json={"token": spare})
    check(plain, "GET", "/auth/whoami", expect=401, headers={"Authorization": f"Bearer {spare}"})
    check(anonymous, "POST", "/auth/revoke-user", expect=200, json={"username": "alice", "tokens": [spare]})
    unseen = dev_l2.mint("alice", settings.l1_public_url)
    check(anonymous, "POST", "/auth/revoke-user", expect=401, json={"username": "alice", "tokens": [unseen]})
    check(anonymous, "POST", "/auth/revoke-user", expect=200,
          json={"username": "alice", "tokens": [alice_client.token]})
    check(plain, "GET", "/auth/whoami", expect=401, headers=bearer)

    missing = openapi.operations() - check.seen
    assert missing == set(), "documented operations this test never called (add a call above)"


# /docs ------------------------------------------------------------------------------------------
def test_docs_page_loads_the_vendored_swagger_ui_and_its_own_script(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "the page has an inline script"
    assert 'data-spec-url="/openapi.json"' in html
    sources = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    needed = {"/static/vendor/swagger-ui/swagger-ui.css", "/static/vendor/swagger-ui/swagger-ui-bundle.js",
              "/static/vendor/swagger-ui/swagger-ui-standalone-preset.js", "/static/docs.js"}
    assert needed <= set(sources)
    assert not re.search(r'(?:src|href)="https?://', html), "the page loads something from another host"
    for source in needed:
        with client.get(source) as answer:
            assert answer.status_code == 200 and len(answer.data) > 500, source
    with client.get("/static/docs.js") as script:
        assert b"SwaggerUIBundle" in script.data


#: Path parameter values no route should take for a real id: each must get a documented 4xx.
JUNK_IDS = ("zz", "..", "%2e%2e%2fetc", "A" * 300, "0" * 64, "\u00e9t\u00e9", "%00")
#: Bodies that fit no schema of the API.
JUNK_BODIES = ({"data": b"\xff\xfe not json", "content_type": "application/json"}, {"json": [1, 2]},
               {"json": {"recipe": {"nested": True}}}, {})


def test_junk_ids_and_bodies_get_documented_errors_on_every_operation(alice_client):
    """What a schema-driven fuzzer (schemathesis) would try first: no 5xx, every answer documented."""
    check = Checker()
    tried = 0
    for template, method, op in walk_operations(check.document):
        if template in ("/openapi.json", "/download/client", "/auth/revoke", "/auth/revoke-user"):
            continue  # no input; revoking would end this sign-in (see the next test)
        params = re.findall(r"{(\w+)}", template)
        for junk in JUNK_IDS if params else ("",):
            path = template.format(**dict.fromkeys(params, junk))
            for body in JUNK_BODIES if "requestBody" in op else ({},):
                answer = alice_client.open(path, method=method.upper(), headers=JSON, **body)
                tried += 1
                responses = op["responses"]
                assert answer.status_code < 500 or str(answer.status_code) in responses, (method, path, body,
                                                                                         answer.data[:200])
                spec = responses.get(str(answer.status_code)) or responses.get("default")
                assert spec is not None, (method, path, answer.status_code)
                if answer.mimetype == "application/json" and method != "head":
                    errors = schema_errors(spec["content"]["application/json"]["schema"], answer.json)
                    assert errors == [], (method, path, answer.status_code, errors)
                answer.close()
        queries = [p["name"] for p in op.get("parameters", []) + check.document["paths"][template].get(
            "parameters", []) if p.get("in") == "query"]
        for name in queries if method in ("get", "head") else ():
            for junk in ("-1", "abc", "9" * 30, "\u00e9", ""):
                answer = alice_client.open(template.format(**dict.fromkeys(params, "0" * 64)), method=method.upper(),
                                           headers=JSON, query_string={name: junk})
                tried += 1
                assert answer.status_code < 500 or str(answer.status_code) in op["responses"], (
                    method, template, name, junk, answer.data[:200])
                spec = op["responses"].get(str(answer.status_code)) or op["responses"].get("default")
                if answer.mimetype == "application/json" and method != "head":
                    assert schema_errors(spec["content"]["application/json"]["schema"], answer.json) == []
                answer.close()
    assert tried > 100
    assert alice_client.get("/auth/whoami").json["username"] == "alice"  # signed in throughout


def test_revoke_with_a_body_that_is_not_a_json_object_is_refused_and_revokes_nothing(alice_client):
    check = Checker()
    for body in ({"data": b"{not json", "content_type": "application/json"}, {"json": [1, 2]}, {"json": "tok"}):
        check(alice_client, "POST", "/auth/revoke", expect=400, **body)
    assert alice_client.get("/auth/whoami").status_code == 200
