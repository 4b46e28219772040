"""The runs JSON API: submit, list, read, cancel, re-run, delete, provenance."""

import io

import pytest
import rq
from flask import g
from PIL import Image

from l1web.context import User
from l1web.engine.canonical import sha3_json
from l1web.runs.model import RunStatus

JSON = {"Accept": "application/json"}


@pytest.fixture()
def sign_in(app):
    """Sign in as someone by setting `g.user` right after the sign-in layer loads (or not) a user."""
    who: dict = {}

    def load_test_user() -> None:
        if who:
            g.user = User(**who)

    hooks = app.before_request_funcs.setdefault(None, [])
    names = [getattr(f, "__name__", "") for f in hooks]
    hooks.insert(names.index("load_user") + 1 if "load_user" in names else 0, load_test_user)

    def sign_in_as(name: str = "alice", is_admin: bool = False) -> None:
        who.clear()
        who.update(name=name, is_admin=is_admin)

    return sign_in_as


@pytest.fixture()
def alice(sign_in):
    sign_in("alice")


def png(colour=(200, 40, 40), size=(32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def put_image(app, owner="alice", colour=(200, 40, 40)) -> str:
    return app.extensions["l1"].store.put_bytes(png(colour), source="upload", owner=owner, name="red.png").digest


def queued(app, name="runs") -> int:
    return rq.Queue(name, connection=app.extensions["l1"].rq_connection).count


def make_run(state, owner="alice", status=RunStatus.COMPLETED, seed="1", **extra) -> dict:
    run = {"id": sha3_json({"seed": seed, "owner": owner}), "status": status, "created": 1_700_000_000 + int(seed),
           "owner": owner, "recipe_id": "r" * 64, "recipe_name": "invert", "config_id": "",
           "input_hashes": {"input": "a" * 64}, "params": {}, "output_name": "", "attempt": 1, **extra}
    assert state.runs.create(run)
    return state.runs.get(run["id"])


def test_submitting_an_effect_run_creates_it_and_enqueues_its_plan(app, client, alice):
    digest = put_image(app)
    response = client.post("/runs", json={"recipe": "invert", "inputs": [digest], "output_name": "inverted"})
    assert response.status_code == 201
    body = response.json
    assert body["status"] == "pending" and body["owner"] == "alice" and body["recipe_name"] == "invert"
    assert body["input_hashes"] == {"input": digest}
    assert body["steps"] == [] and body["links"]["page"] == f"/run/{body['id']}"
    assert queued(app) == 1


def test_identical_submission_returns_the_existing_run(app, client, alice):
    digest = put_image(app)
    first = client.post("/runs", json={"recipe": "invert", "inputs": [digest]})
    again = client.post("/runs", json={"recipe": "invert", "inputs": {"input": digest}})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["id"] == first.json["id"]
    assert queued(app) == 1


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"recipe": "no-such-effect", "inputs": ["x"]}, 404, "recipe"),
    ({"recipe": "invert", "inputs": ["f" * 64]}, 404, "inputs.input"),
    ({"recipe": "invert", "inputs": ["not-an-asset"]}, 404, "inputs.input"),
    ({"recipe": "invert", "inputs": []}, 400, "inputs"),
    ({"recipe": "invert", "inputs": 7}, 400, "inputs"),
    ({"recipe": "invert", "inputs": [], "colour": "red"}, 400, "colour"),
    ({"recipe": "invert", "inputs": [], "output_name": "<b>x</b>"}, 400, "output_name"),
    ({"recipe": "invert", "inputs": [], "params": {"strength": "lots"}}, None, None),
])
def test_bad_submissions_are_refused_and_nothing_is_enqueued(app, client, alice, redis_client, body, status, field):
    put_image(app)
    before = set(redis_client.keys("*"))
    response = client.post("/runs", json=body)
    assert response.status_code == (status or response.status_code) and 400 <= response.status_code < 500
    assert response.json["message"]
    if field:
        assert response.json["field"] == field
    assert queued(app) == 0
    assert set(redis_client.keys("*")) == before


def test_a_body_that_is_not_a_json_object_is_refused(app, client, alice):
    response = client.post("/runs", data="recipe=invert", headers={**JSON, "Content-Type": "text/plain"})
    assert response.status_code == 400
    assert response.json["error"] == "bad_request"
    assert queued(app) == 0


def test_anonymous_submission_is_unauthorized(app, client):
    response = client.post("/runs", json={"recipe": "invert", "inputs": []})
    assert response.status_code == 401
    assert queued(app) == 0


def test_listing_shows_only_the_users_own_runs_newest_first(client, state, alice):
    older = make_run(state, seed="1")
    newer = make_run(state, seed="2", status=RunStatus.FAILED)
    make_run(state, owner="bob", seed="3")
    response = client.get("/runs", headers=JSON)
    assert response.status_code == 200
    assert [r["id"] for r in response.json["runs"]] == [newer["id"], older["id"]]
    assert response.json["total"] == 2
    assert response.json["runs"][0]["created"] == 1_700_000_002.0


def test_a_user_cannot_list_someone_elses_runs(client, state, alice):
    make_run(state, owner="bob")
    response = client.get("/runs?user=bob", headers=JSON)
    assert response.json["runs"] == [] and response.json["total"] == 0


def test_admins_list_everyone_and_may_filter_by_user(client, state, sign_in):
    make_run(state, owner="alice", seed="1")
    bobs = make_run(state, owner="bob", seed="2")
    sign_in("root", is_admin=True)
    assert client.get("/runs", headers=JSON).json["total"] == 2
    assert [r["id"] for r in client.get("/runs?user=bob", headers=JSON).json["runs"]] == [bobs["id"]]


def test_listing_filters_by_status_and_pages(client, state, alice):
    for seed in range(5):
        make_run(state, seed=str(seed), status=RunStatus.FAILED if seed % 2 else RunStatus.COMPLETED)
    failed = client.get("/runs?status=failed", headers=JSON).json
    assert failed["total"] == 2 and {r["status"] for r in failed["runs"]} == {"failed"}
    first = client.get("/runs?limit=2", headers=JSON).json
    assert len(first["runs"]) == 2 and first["next"] == "/runs?limit=2&offset=2"
    last = client.get("/runs?limit=2&offset=4", headers=JSON).json
    assert len(last["runs"]) == 1 and last["next"] is None


@pytest.mark.parametrize("query", ["status=done", "limit=0", "limit=100000", "offset=-1", "limit=ten"])
def test_bad_listing_queries_are_refused(client, alice, query):
    response = client.get(f"/runs?{query}", headers=JSON)
    assert response.status_code == 400 and response.json["message"]


def test_reading_a_run_includes_its_steps(client, state, alice):
    run = make_run(state)
    state.runs.init_steps(run["id"], [{"step_id": "input", "type": "SOURCE", "inputs": [], "level": 0}],
                          {"input": {"status": "cached"}})
    body = client.get(f"/runs/{run['id']}", headers=JSON).json
    assert body["id"] == run["id"]
    assert body["steps"][0]["status"] == "cached"


def test_someone_elses_run_is_not_found(client, state, alice):
    bobs = make_run(state, owner="bob")
    for method, path in [("get", ""), ("delete", ""), ("post", "/cancel"), ("post", "/rerun"),
                         ("get", "/provenance")]:
        response = getattr(client, method)(f"/runs/{bobs['id']}{path}", headers=JSON)
        assert response.status_code == 404, (method, path)
    assert state.runs.get(bobs["id"])["status"] == "completed"


def test_admins_can_read_anyones_run(client, state, sign_in):
    bobs = make_run(state, owner="bob")
    sign_in("root", is_admin=True)
    assert client.get(f"/runs/{bobs['id']}", headers=JSON).status_code == 200


def test_browsers_are_sent_from_the_api_url_to_the_run_page(client, state, alice):
    run = make_run(state)
    response = client.get(f"/runs/{run['id']}", headers={"Accept": "text/html"})
    assert response.status_code == 302 and response.location == f"/run/{run['id']}"


def test_failed_runs_can_be_deleted(client, state, alice):
    run = make_run(state, status=RunStatus.FAILED)
    response = client.delete(f"/runs/{run['id']}", headers=JSON)
    assert response.status_code == 200 and response.json["deleted"] is True
    assert state.runs.get(run["id"]) is None


def test_live_and_published_runs_cannot_be_deleted(client, state, alice):
    running = make_run(state, status=RunStatus.RUNNING, seed="1")
    published = make_run(state, seed="2", published="1")
    for run in (running, published):
        response = client.delete(f"/runs/{run['id']}", headers=JSON)
        assert response.status_code == 409 and response.json["message"]
        assert state.runs.get(run["id"]) is not None


def test_cancelling_a_pending_run_cancels_it_once(client, state, alice):
    run = make_run(state, status=RunStatus.PENDING)
    response = client.post(f"/runs/{run['id']}/cancel", headers=JSON)
    assert response.status_code == 200 and response.json["status"] == "cancelled"
    assert client.post(f"/runs/{run['id']}/cancel", headers=JSON).status_code == 409


def test_rerunning_a_failed_run_enqueues_a_new_attempt(app, client, state, alice):
    run = make_run(state, status=RunStatus.FAILED, error="boom")
    response = client.post(f"/runs/{run['id']}/rerun", headers=JSON)
    assert response.status_code == 200
    assert response.json["status"] == "pending" and response.json["attempt"] == 2
    assert queued(app) == 1


def test_completed_runs_cannot_be_rerun_without_force(app, client, state, alice):
    run = make_run(state)
    assert client.post(f"/runs/{run['id']}/rerun", headers=JSON).status_code == 409
    assert queued(app) == 0


def test_provenance_is_served_as_json_and_as_a_download(client, state, alice):
    record = {"task_id": "x", "output": {"name": "out", "content_hash": "b" * 64}}
    run = make_run(state, output_hash="b" * 64, provenance=record)
    assert client.get(f"/runs/{run['id']}/provenance", headers=JSON).json == record
    download = client.get(f"/runs/{run['id']}/provenance?download=1", headers=JSON)
    assert download.headers["Content-Disposition"].startswith("attachment; filename=\"provenance-")


def test_provenance_of_an_unfinished_run_is_a_conflict(client, state, alice):
    run = make_run(state, status=RunStatus.RUNNING)
    response = client.get(f"/runs/{run['id']}/provenance", headers=JSON)
    assert response.status_code == 409 and "running" in response.json["message"]
