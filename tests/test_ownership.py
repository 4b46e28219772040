"""Issue 13: a hash is not a key; runs belong to their owners; sharing on purpose.

Real sign-in (dev L2, users alice, bob and admin), real Redis, real workers where runs render.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from l1web import access
from l1web.runs.model import RunStatus, legacy_run_id_for
from l1web.users import User

JSON = {"Accept": "application/json"}
UNKNOWN = "f" * 64


def png(seed: int = 1) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def upload(client, seed: int = 1) -> str:
    answer = client.post("/cache/upload", data=png(seed), headers={**JSON, "Content-Type": "image/png"})
    assert answer.status_code in (200, 201), answer.data
    return answer.json["digest"]


def snapshot(redis_client, cache_dir: Path) -> tuple[dict, set]:
    """Every Redis key with its type, and every file under the cache: what a refusal must not change."""
    keys = {k: redis_client.type(k) for k in redis_client.keys("*")}
    files = {str(p.relative_to(cache_dir)) for p in cache_dir.rglob("*")} if cache_dir.exists() else set()
    return keys, files


def refused_like_unknown(client, path: str, body_for, hidden: str, redis_client, cache_dir: Path, **kwargs):
    """bob's use of alice's private hash answers byte for byte like an unknown hash, and changes nothing."""
    before = snapshot(redis_client, cache_dir)
    answer = client.post(path, **body_for(hidden), headers=JSON, **kwargs)
    after = snapshot(redis_client, cache_dir)
    unknown = client.post(path, **body_for(UNKNOWN), headers=JSON, **kwargs)
    assert answer.status_code == unknown.status_code == 404, (answer.data, unknown.data)
    assert answer.data.replace(hidden[:12].encode(), b"") == unknown.data.replace(UNKNOWN[:12].encode(), b"")
    assert after == before, "a refused use must leave no run, job, key or file"


RECIPE = """\
name: {name}
registry:
  assets:
    theirs: {{hash: "{digest}"}}
dag:
  nodes:
    - {{id: src, type: SOURCE, config: {{asset: theirs}}}}
    - {{id: out, type: EFFECT, config: {{effect: invert}}, inputs: [src]}}
  output: out
"""


def recipe_body(name: str):
    return lambda digest: {"data": RECIPE.format(name=name, digest=digest).encode(),
                           "content_type": "application/x-yaml"}


def test_bob_cannot_run_alices_private_upload(alice_client, bob_client, redis_client, settings):
    mine = upload(alice_client)
    refused_like_unknown(bob_client, "/runs", lambda d: {"json": {"recipe": "invert", "inputs": [d]}},
                         mine, redis_client, settings.cache_dir)


def test_bob_cannot_name_alices_hash_in_a_recipe(alice_client, bob_client, redis_client, settings):
    mine = upload(alice_client)
    refused_like_unknown(bob_client, "/configs/upload", recipe_body("sneaky"), mine, redis_client,
                         settings.cache_dir)


def test_a_recipe_run_rechecks_its_fixed_hashes_for_the_runner(alice_client, bob_client, redis_client, settings):
    mine = upload(alice_client)
    config = alice_client.post("/configs/upload", data=RECIPE.format(name="mine", digest=mine).encode(),
                               content_type="application/x-yaml", headers=JSON)
    assert config.status_code == 201, config.data
    assert alice_client.post(f"/configs/{config.json['id']}/share", headers=JSON).status_code == 200
    before = snapshot(redis_client, settings.cache_dir)
    answer = bob_client.post(f"/configs/{config.json['id']}/run", json={"inputs": {}}, headers=JSON)
    assert answer.status_code == 404 and "is not in the cache" in answer.json["message"], answer.data
    assert snapshot(redis_client, settings.cache_dir) == before


def test_admin_may_use_anything(alice_client, admin_client):
    mine = upload(alice_client)
    answer = admin_client.post("/runs", json={"recipe": "invert", "inputs": [mine]}, headers=JSON)
    assert answer.status_code == 201, answer.data
    assert answer.json["id"]


def test_a_shared_item_works_for_both_and_unsharing_hides_it(alice_client, bob_client):
    mine = upload(alice_client)
    assert bob_client.get(f"/cache/{mine}/meta", headers=JSON).status_code == 404
    assert bob_client.post(f"/cache/{mine}/share", headers=JSON).status_code == 404  # not bob's to share
    assert alice_client.post(f"/cache/{mine}/share", headers=JSON).json == {"digest": mine, "shared": True}
    assert bob_client.get(f"/cache/{mine}/meta", headers=JSON).status_code == 200
    assert bob_client.delete(f"/cache/{mine}", headers=JSON).status_code == 403  # seen, not owned
    assert bob_client.post("/runs", json={"recipe": "invert", "inputs": [mine]}, headers=JSON).status_code == 201
    assert alice_client.post("/runs", json={"recipe": "invert", "inputs": [mine]}, headers=JSON).status_code == 201
    assert mine.encode() in bob_client.get("/media").data  # listed under "Shared"
    assert alice_client.delete(f"/cache/{mine}/share", headers=JSON).json["shared"] is False
    assert bob_client.get(f"/cache/{mine}/meta", headers=JSON).status_code == 404


def test_the_worker_fetch_route_serves_only_what_a_live_run_needs(app, alice_client, settings, state):
    mine = upload(alice_client)
    app.extensions["l1"].settings = app.extensions["l1"].settings.with_changes(worker_token="w")
    worker = {"X-Worker-Token": "w"}
    assert alice_client.get(f"/worker/cache/{mine}", headers=worker).status_code == 404
    state.runs.create({"id": "e" * 64, "status": RunStatus.RUNNING, "created": 1.0, "owner": "alice",
                       "input_hashes": {"input": mine}})
    answer = alice_client.get(f"/worker/cache/{mine}", headers=worker)
    assert answer.status_code == 200 and answer.data == png()
    answer.close()


def wait_done(state, run_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = state.runs.get(run_id)
        if run and not RunStatus(run["status"]).live:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id[:12]} not finished: {state.runs.get(run_id)}")


def test_bobs_identical_run_is_his_own_and_renders_nothing(alice_client, bob_client, state, start_worker):
    start_worker()
    state.cache.set_asset("cat", upload(alice_client, seed=9))  # an admin-registered asset
    body = {"recipe": "invert", "inputs": ["cat"]}
    alices = alice_client.post("/runs", json=body, headers=JSON)
    assert alices.status_code == 201, alices.data
    assert wait_done(state, alices.json["id"])["status"] == RunStatus.COMPLETED
    bobs = bob_client.post("/runs", json=body, headers=JSON)
    assert bobs.status_code == 201 and bobs.json["id"] != alices.json["id"]
    run = wait_done(state, bobs.json["id"])
    assert run["status"] == RunStatus.COMPLETED and run["owner"] == "bob"
    steps = state.runs.step_states(bobs.json["id"]).values()
    assert [s for s in steps if s["status"] == "completed"] == [], "every step reused, none rendered"
    assert bob_client.get(f"/cache/{run['output_hash']}/meta", headers=JSON).status_code == 200
    assert bob_client.post("/runs", json=body, headers=JSON).json["id"] == bobs.json["id"]  # his own again
    for client, own, other in ((alice_client, alices, bobs), (bob_client, bobs, alices)):
        ids = [r["id"] for r in client.get("/runs", headers=JSON).json["runs"]]
        assert own.json["id"] in ids and other.json["id"] not in ids
        assert client.get(f"/runs/{other.json['id']}", headers=JSON).status_code == 404


def test_a_run_under_its_old_id_still_resolves_and_is_returned_on_resubmission(alice_client, bob_client, state):
    cat = upload(alice_client, seed=5)
    state.cache.set_asset("cat", cat)
    from l1web.recipes.parse import effect_recipe

    recipe = effect_recipe("invert", {})
    old_id = legacy_run_id_for(recipe.id, {"input": cat}, {})
    state.runs.create({"id": old_id, "status": RunStatus.COMPLETED, "created": 1.0, "owner": "alice",
                       "recipe_id": recipe.id, "recipe_name": "invert", "config_id": "", "input_hashes": {"input": cat},
                       "params": {}, "output_name": "", "attempt": 1})
    assert alice_client.get(f"/runs/{old_id}", headers=JSON).status_code == 200
    again = alice_client.post("/runs", json={"recipe": "invert", "inputs": ["cat"]}, headers=JSON)
    assert again.status_code == 200 and again.json["id"] == old_id
    assert bob_client.get(f"/runs/{old_id}", headers=JSON).status_code == 404


names = st.sampled_from(["alice", "bob", "carol"])
items = st.builds(access.Item, exists=st.booleans(), owner=st.none() | names,
                  holders=st.frozensets(names), asset=st.booleans(), published=st.booleans(), shared=st.booleans())
users = st.none() | st.builds(User, names, is_admin=st.booleans())


@given(users, items)
def test_can_use_never_admits_what_can_see_refuses(user, item):
    if access.can_use(user, item):
        assert access.can_see(user, item)
    if access.can_manage(user, item):
        assert access.can_see(user, item)
    if not item.exists:
        assert not access.can_see(user, item)


def test_the_run_form_refuses_another_users_hash_like_an_unknown_one(alice_client, bob_client, redis_client,
                                                                     settings):
    """The recipe page's Run button (a form post, CSRF and all) asks the same rule as the API."""
    mine = upload(alice_client)
    recipe = """\
name: form-run
dag:
  nodes:
    - {id: src, type: SOURCE, config: {input: true, name: image}}
    - {id: out, type: EFFECT, config: {effect: invert}, inputs: [src]}
  output: out
"""
    config = bob_client.post("/configs/upload", data=recipe.encode(), content_type="application/x-yaml", headers=JSON)
    assert config.status_code in (200, 201), config.data
    path = f"/recipe/{config.json['id']}/run"

    def flashed(digest: str) -> str:
        answer = bob_client.post(path, data={"input.image": digest}, follow_redirects=True)
        assert answer.status_code == 200
        return answer.get_data(as_text=True)

    before = snapshot(redis_client, settings.cache_dir)
    hers = flashed(mine)
    after = snapshot(redis_client, settings.cache_dir)
    unknown = flashed(UNKNOWN)
    assert "is not in the cache" in hers
    assert hers.replace(mine[:12], "") == unknown.replace(UNKNOWN[:12], "")
    assert {k for k in after[0] if k.startswith("artdag:run")} == {k for k in before[0] if k.startswith("artdag:run")}
    assert after[1] == before[1]


def test_the_runs_fragment_lists_only_ones_own_runs(alice_client, bob_client):
    alices = alice_client.post("/runs", json={"recipe": "invert", "inputs": [upload(alice_client, 3)]}, headers=JSON)
    bobs = bob_client.post("/runs", json={"recipe": "invert", "inputs": [upload(bob_client, 4)]}, headers=JSON)
    assert alices.status_code == bobs.status_code == 201
    for client, own, other in ((alice_client, alices, bobs), (bob_client, bobs, alices)):
        for path in ("/runs", "/runs/fragment"):  # the page and the fragment it polls
            html = client.get(path, headers={"Accept": "text/html"}).get_data(as_text=True)
            assert f"run-link-{own.json['id'][:16]}" in html, path
            assert other.json["id"][:12] not in html, path
