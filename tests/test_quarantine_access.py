"""A quarantined item still answers by the ownership rule ("a hash is not a key").

Its quarantine record keeps who could see it: they (its holders, admins, and everyone when it was
shared, published or an asset) get the 410 with the reason; anyone else gets, byte for byte, what
an unknown hash gets. Real sign-in (dev L2), real Redis, the real app; items are quarantined the
real way, by flipping a byte on disk and reading them.
"""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from l1web import access
from l1web.runs.model import RunStatus
from l1web.state import keys
from l1web.users import User

JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html"}
UNKNOWN = "f" * 64
WORKER = {"X-Worker-Token": "w", **JSON}

#: (method, path, Accept) of every route that turns a content hash into bytes or facts for a user.
READS = [
    ("GET", "/cache/{}", JSON),
    ("GET", "/cache/{}?inline=1", JSON),
    ("HEAD", "/cache/{}", JSON),
    ("GET", "/cache/{}/meta", JSON),
    ("GET", "/media/{}", HTML),
    ("GET", "/media/{}", JSON),
    ("GET", "/media/{}/thumb", HTML),
]
#: Routes that change an item: the owner is told it is quarantined; others, that it is unknown.
CHANGES = [
    ("DELETE", "/cache/{}", JSON),
    ("POST", "/cache/{}/share", JSON),
    ("DELETE", "/cache/{}/share", JSON),
    ("POST", "/media/{}/share", HTML),
    ("POST", "/media/{}/delete", HTML),
]


def png(seed: int = 1) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, 90, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def upload(client, seed: int = 1) -> str:
    answer = client.post("/cache/upload", data=png(seed), headers={**JSON, "Content-Type": "image/png"})
    assert answer.status_code in (200, 201), answer.data
    return answer.json["digest"]


def corrupt(client, settings, digest: str) -> None:
    """Flip a byte of the stored file, then read it as `client` (who may): the store quarantines it."""
    path = settings.cache_dir / digest[:2] / digest
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    answer = client.get(f"/cache/{digest}", headers=JSON)
    assert answer.status_code == 410 and "integrity check failed" in answer.json["message"], answer.data


def answer(client, method: str, path: str, digest: str, accept: dict, **kwargs) -> tuple[int, list, bytes]:
    """(status, headers, body) with `digest` (and its 12-character prefix) written as `<hash>`."""
    response = client.open(path.format(digest), method=method, headers=accept, **kwargs)
    try:
        def plain(text: str) -> str:
            return text.replace(digest, "<hash>").replace(digest[:12], "<hash>")

        body = plain(response.get_data(as_text=True)).encode()
        headers = sorted((name, plain(value)) for name, value in response.headers.items())
        return response.status_code, headers, body
    finally:
        response.close()


def assert_like_unknown(client, method: str, path: str, hidden: str, accept: dict, **kwargs) -> None:
    mine = answer(client, method, path, hidden, accept, **kwargs)
    unknown = answer(client, method, path, UNKNOWN, accept, **kwargs)
    assert mine[0] == 404, (method, path, mine)
    assert mine == unknown, (method, path)


def assert_told(client, method: str, path: str, digest: str, accept: dict, **kwargs) -> None:
    response = client.open(path.format(digest), method=method, headers=accept, **kwargs)
    assert response.status_code == 410, (method, path, response.data[:300])
    if method != "HEAD":
        assert b"quarantined" in response.data and b"integrity check failed" in response.data, response.data[:300]
    response.close()


def test_another_user_gets_what_an_unknown_hash_gets_and_the_owner_the_reason(alice_client, bob_client, settings):
    mine = upload(alice_client)
    corrupt(alice_client, settings, mine)
    for method, path, accept in READS + CHANGES:
        assert_like_unknown(bob_client, method, path, mine, accept)
    for method, path, accept in READS + CHANGES:
        assert_told(alice_client, method, path, mine, accept)


def test_an_admin_is_told_why(alice_client, admin_client, settings):
    mine = upload(alice_client)
    corrupt(alice_client, settings, mine)
    for method, path, accept in READS:
        assert_told(admin_client, method, path, mine, accept)


@pytest.mark.parametrize("how", ["shared", "published", "asset"])
def test_who_could_see_it_before_is_told_why(how, alice_client, bob_client, state, settings):
    mine = upload(alice_client)
    if how == "shared":
        assert alice_client.post(f"/cache/{mine}/share", headers=JSON).status_code == 200
    elif how == "published":
        state.cache.mark_published(mine)
    else:
        state.cache.set_asset("cat", mine)
    assert bob_client.get(f"/cache/{mine}/meta", headers=JSON).status_code == 200
    corrupt(alice_client, settings, mine)
    for method, path, accept in READS:
        assert_told(bob_client, method, path, mine, accept)
    assert state.cache.quarantined()[mine][how] is True


def test_every_holder_is_told_and_loses_it_from_their_listing(alice_client, bob_client, settings, state):
    mine = upload(alice_client)
    assert upload(bob_client) == mine  # the same bytes: bob holds them too
    assert bob_client.get("/cache?owner=bob", headers=JSON).json["total"] == 1
    corrupt(bob_client, settings, mine)
    record = state.cache.quarantined()[mine]
    assert record["owner"] == "alice" and record["holders"] == ["alice", "bob"]
    for client in (alice_client, bob_client):
        assert_told(client, "GET", "/cache/{}/meta", mine, JSON)
        assert client.get("/cache", headers=JSON).json["total"] == 0
    assert state.redis.zscore(keys.cache_owner_index("bob"), mine) is None


def test_a_quarantined_item_is_missing_for_everyone(alice_client, bob_client, settings):
    mine = upload(alice_client)
    kept = upload(alice_client, seed=2)
    corrupt(alice_client, settings, mine)
    assert alice_client.post("/cache/missing", json={"hashes": [mine, kept]}, headers=JSON).json == {
        "missing": [mine], "asked": 2}
    for client in (alice_client, bob_client):
        hidden = answer(client, "POST", "/cache/missing", mine, JSON, json={"hashes": [mine]})
        unknown = answer(client, "POST", "/cache/missing", UNKNOWN, JSON, json={"hashes": [UNKNOWN]})
        assert hidden[0] == 200 and hidden == unknown


def test_a_run_input_answers_like_an_unknown_one_to_others_and_with_the_reason_to_its_owner(
        alice_client, bob_client, settings, redis_client):
    mine = upload(alice_client)
    corrupt(alice_client, settings, mine)
    before = set(redis_client.keys("*"))
    for body in ({"recipe": "invert", "inputs": [mine]}, {"recipe": "invert", "inputs": {"input": mine}}):
        mine_answer = answer(bob_client, "POST", "/runs", mine, JSON, json=body)
        same_with_unknown = json.loads(json.dumps(body).replace(mine, UNKNOWN))
        unknown = answer(bob_client, "POST", "/runs", UNKNOWN, JSON, json=same_with_unknown)
        assert mine_answer[0] == 404 and mine_answer == unknown
        told = alice_client.post("/runs", json=body, headers=JSON)
        assert told.status_code == 410 and "integrity check failed" in told.json["message"], told.data
        assert mine in told.json["message"]
    assert set(redis_client.keys("*")) == before, "a refused run leaves no run, job or key"


RECIPE = """\
name: {name}
registry:
  assets:
    fixed: {{hash: "{digest}"}}
dag:
  nodes:
    - {{id: src, type: SOURCE, config: {{asset: fixed}}}}
    - {{id: out, type: EFFECT, config: {{effect: invert}}, inputs: [src]}}
  output: out
"""


def test_a_recipe_input_answers_like_an_unknown_one_to_others_and_with_the_reason_to_its_owner(
        alice_client, bob_client, settings):
    mine = upload(alice_client)
    corrupt(alice_client, settings, mine)

    def post(client, digest: str):
        return answer(client, "POST", "/configs/upload", digest, JSON,
                      data=RECIPE.format(name="fixed", digest=digest).encode(), content_type="application/x-yaml")

    hidden, unknown = post(bob_client, mine), post(bob_client, UNKNOWN)
    assert hidden[0] == 404 and hidden == unknown
    told = alice_client.post("/configs/upload", data=RECIPE.format(name="fixed", digest=mine).encode(),
                             content_type="application/x-yaml", headers=JSON)
    assert told.status_code == 410 and "quarantined" in told.json["message"], told.data


def test_the_worker_fetch_answers_like_unknown_unless_a_live_run_needs_it(app, alice_client, settings, state):
    mine = upload(alice_client)
    corrupt(alice_client, settings, mine)
    app.extensions["l1"].settings = app.extensions["l1"].settings.with_changes(worker_token="w")
    assert_like_unknown(alice_client, "GET", "/worker/cache/{}", mine, WORKER)
    state.runs.create({"id": "e" * 64, "status": RunStatus.RUNNING, "created": 1.0, "owner": "alice",
                       "input_hashes": {"input": mine}})
    told = alice_client.get(f"/worker/cache/{mine}", headers=WORKER)
    assert told.status_code == 410 and "quarantined" in told.json["message"]


def test_a_record_written_before_it_kept_who_could_see_tells_only_admins(alice_client, bob_client, admin_client,
                                                                         settings, state):
    mine = upload(alice_client)
    corrupt(alice_client, settings, mine)
    old = {"reason": "integrity check failed: old record", "at": 1.0, "size": 10}
    state.redis.hset(keys.cache_quarantine(), mine, json.dumps(old))
    for client in (alice_client, bob_client):
        assert_like_unknown(client, "GET", "/cache/{}/meta", mine, JSON)
    assert_told(admin_client, "GET", "/cache/{}/meta", mine, JSON)
    assert state.cache.access_items([mine], "alice") == [state.cache.access_item(mine, "alice")]


def test_quarantining_again_keeps_who_could_see_it(alice_client, bob_client, settings, state):
    mine = upload(alice_client)
    corrupt(alice_client, settings, mine)
    state.cache.quarantine(mine, "integrity check failed: seen again")
    assert state.cache.quarantined()[mine]["holders"] == ["alice"]
    assert_told(alice_client, "GET", "/cache/{}/meta", mine, JSON)
    assert_like_unknown(bob_client, "GET", "/cache/{}/meta", mine, JSON)


names = st.sampled_from(["alice", "bob", "carol"])
items = st.builds(access.Item, exists=st.booleans(), owner=st.none() | names, holders=st.frozensets(names),
                  asset=st.booleans(), published=st.booleans(), shared=st.booleans(),
                  quarantined=st.none() | st.just("bytes changed"))
users = st.none() | st.builds(User, names, is_admin=st.booleans())


@given(users, items)
def test_only_those_who_could_see_an_item_are_told_it_is_quarantined(user, item):
    told = access.told_quarantined(user, item)
    if told:
        assert item.quarantined is not None and user is not None
    would_see = access.can_see(user, access.Item(exists=True, owner=item.owner, holders=item.holders,
                                                  asset=item.asset, published=item.published, shared=item.shared))
    assert told == (item.quarantined is not None and would_see)
