"""Per-user isolation through the real sign-in: B gets for A's things what an unknown id gets."""

import io

import pytest
from PIL import Image

from l1web.engine.canonical import sha3_json
from l1web.runs.model import RunStatus

JSON = {"Accept": "application/json"}
UNKNOWN = "f" * 64


def alices_run(state) -> str:
    run = {"id": sha3_json({"owner": "alice", "test": "isolation"}), "status": RunStatus.FAILED,
           "created": 1_700_000_000, "owner": "alice", "recipe_id": "r" * 64, "recipe_name": "invert",
           "config_id": "", "input_hashes": {"input": "a" * 64}, "params": {}, "output_name": "", "attempt": 1}
    assert state.runs.create(run)
    return run["id"]


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def same_answer(client, method, path_for, known, **kwargs):
    hidden = getattr(client, method)(path_for(known), **kwargs)
    unknown = getattr(client, method)(path_for(UNKNOWN), **kwargs)
    assert hidden.status_code == unknown.status_code == 404, (method, path_for(known))
    assert hidden.data.replace(known.encode(), b"") == unknown.data.replace(UNKNOWN.encode(), b"")


@pytest.mark.parametrize(("method", "suffix"), [
    ("get", ""), ("delete", ""), ("post", "/cancel"), ("post", "/rerun"), ("get", "/provenance")])
def test_bob_gets_the_unknown_run_answer_for_alices_run(alice_client, bob_client, state, method, suffix):
    run_id = alices_run(state)
    same_answer(bob_client, method, lambda rid: f"/runs/{rid}{suffix}", run_id, headers=JSON)
    assert alice_client.get(f"/runs/{run_id}", headers=JSON).status_code == 200
    assert state.runs.get(run_id)["status"] == RunStatus.FAILED


def test_bob_gets_the_unknown_page_for_alices_run_page(bob_client, state):
    run_id = alices_run(state)
    same_answer(bob_client, "get", lambda rid: f"/run/{rid}", run_id, headers={"Accept": "text/html"})


def test_bob_cannot_see_or_delete_alices_upload(alice_client, bob_client, admin_client):
    raw = {"Content-Type": "application/octet-stream", **JSON}
    digest = alice_client.post("/cache/upload", data=png(), headers=raw).json["digest"]
    same_answer(bob_client, "get", lambda d: f"/cache/{d}/meta", digest, headers=JSON)
    same_answer(bob_client, "delete", lambda d: f"/cache/{d}", digest, headers=JSON)
    same_answer(bob_client, "get", lambda d: f"/media/{d}", digest, headers={"Accept": "text/html"})
    assert digest not in str(bob_client.get("/cache", headers=JSON).json)
    assert alice_client.get(f"/cache/{digest}/meta", headers=JSON).status_code == 200
    assert admin_client.get(f"/cache/{digest}/meta", headers=JSON).status_code == 200
