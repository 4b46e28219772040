"""The configs (recipes) JSON API: upload, list, read, delete, run; hostile YAML changes nothing."""

import io

import pytest
import rq
from PIL import Image

from l1web.recipes.parse import MAX_RECIPE_BYTES, parse_recipe

JSON = {"Accept": "application/json"}
YAML = {"Content-Type": "application/x-yaml", "Accept": "application/json"}

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

ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 10) if prev else ', '.join(['x'] * 10)}]\n"
    for prev, name in zip(["", "a", "b", "c", "d"], ["a", "b", "c", "d", "e"])
)

HOSTILE = {
    "syntax error": ("name: x\ndag: [unclosed\n", "line 3, column 1"),
    "alias bomb": (ALIAS_BOMB, "alias bomb"),
    "python tag": ("name: !!python/object/apply:os.system ['touch /tmp/pwned']\n", "python/object"),
    "huge document": ("name: x\ndescription: '" + "x" * (MAX_RECIPE_BYTES + 10) + "'\n", "limit"),
    "cycle": (RECIPE.replace("inputs: [user_image]", "inputs: [flip]"), "cycle"),
    "unknown type": (RECIPE.replace("type: EFFECT", "type: TELEPORT"), "unknown node type"),
    "unknown effect": (RECIPE.replace("effect: invert", "effect: nope"), "nope"),
    "not a mapping": ("- just\n- a list\n", "mapping"),
    "empty": ("", "empty"),
}


def queued(app) -> int:
    return rq.Queue("runs", connection=app.extensions["l1"].rq_connection).count


def put_image(app, owner="alice") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 90)).save(buffer, "PNG")
    return app.extensions["l1"].store.put_bytes(buffer.getvalue(), source="upload", owner=owner).digest


def upload(alice_client, text=RECIPE):
    return alice_client.post("/configs/upload", data=text.encode(), headers=YAML)


def test_uploading_yaml_stores_the_recipe_under_its_canonical_id(alice_client):
    response = upload(alice_client)
    assert response.status_code == 201
    body = response.json
    assert body["id"] == parse_recipe(RECIPE).id
    assert body["name"] == "invert-it" and body["variable_inputs"] == ["input_image"]
    assert body["links"]["page"] == f"/recipe/{body['id']}"


def test_uploading_the_same_recipe_again_is_not_a_new_one(alice_client):
    first = upload(alice_client)
    respelled = RECIPE.replace('"1.0"', "'1.0'")
    again = upload(alice_client, respelled)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["id"] == first.json["id"]


def test_uploading_a_file_in_a_multipart_form(alice_client):
    response = alice_client.post("/configs/upload", headers=JSON,
                           data={"file": (io.BytesIO(RECIPE.encode()), "invert.yaml")})
    assert response.status_code == 201 and response.json["name"] == "invert-it"


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_recipes_are_refused_with_a_message_and_nothing_changes(app, alice_client, redis_client, case):
    text, expected = HOSTILE[case]
    before = set(redis_client.keys("*"))
    response = upload(alice_client, text)
    assert response.status_code == 400
    assert expected in response.json["message"]
    assert set(redis_client.keys("*")) == before
    assert queued(app) == 0


def test_a_syntax_error_reports_line_and_column(alice_client):
    body = upload(alice_client, HOSTILE["syntax error"][0]).json
    assert (body["line"], body["column"]) == (3, 1)


def test_a_validation_error_names_the_node_and_field(alice_client):
    body = upload(alice_client, HOSTILE["unknown type"][0]).json
    assert (body["node"], body["field"]) == ("flip", "type")


def test_the_python_tag_is_never_constructed(alice_client, tmp_path):
    marker = tmp_path / "pwned"
    text = f"name: !!python/object/apply:os.system ['touch {marker}']\n"
    assert upload(alice_client, text).status_code == 400
    assert not marker.exists()


def test_listing_shows_the_users_recipes(alice_client, bob_client):
    upload(bob_client, RECIPE.replace("invert-it", "bobs"))
    config_id = upload(alice_client).json["id"]
    body = alice_client.get("/configs", headers=JSON).json
    assert [c["id"] for c in body["configs"]] == [config_id] and body["total"] == 1


def test_reading_a_recipe_includes_its_yaml_and_canonical_form(alice_client):
    config_id = upload(alice_client).json["id"]
    body = alice_client.get(f"/configs/{config_id}", headers=JSON).json
    assert body["yaml"] == RECIPE
    assert body["recipe"]["dag"]["output"] == "flip"


def test_someone_elses_recipe_is_not_found(alice_client, bob_client):
    config_id = upload(bob_client).json["id"]
    for method, path in [("get", ""), ("delete", ""), ("post", "/run")]:
        kwargs = {"json": {"inputs": {}}} if method == "post" else {"headers": JSON}
        response = getattr(alice_client, method)(f"/configs/{config_id}{path}", **kwargs)
        assert response.status_code == 404, (method, path)


@pytest.mark.parametrize("config_id", ["0" * 64, "../../etc/passwd", "x" * 300])
def test_unknown_or_malformed_ids_are_not_found(alice_client, config_id):
    assert alice_client.get(f"/configs/{config_id}", headers=JSON).status_code == 404


def test_deleting_an_unused_recipe(alice_client):
    config_id = upload(alice_client).json["id"]
    response = alice_client.delete(f"/configs/{config_id}", headers=JSON)
    assert response.status_code == 200 and response.json["deleted"] is True
    assert alice_client.get(f"/configs/{config_id}", headers=JSON).status_code == 404


def test_deleting_a_recipe_in_use_is_refused_naming_the_runs(app, alice_client):
    config_id = upload(alice_client).json["id"]
    run_id = alice_client.post(f"/configs/{config_id}/run", json={"inputs": {"input_image": put_image(app)}}).json["id"]
    response = alice_client.delete(f"/configs/{config_id}", headers=JSON)
    assert response.status_code == 409
    assert run_id[:12] in response.json["message"] and response.json["runs"] == [run_id]


def test_running_a_recipe_by_id_starts_a_run(app, alice_client):
    config_id = upload(alice_client).json["id"]
    digest = put_image(app)
    response = alice_client.post(f"/configs/{config_id}/run", json={"inputs": {"input_image": digest},
                                                              "output_name": "flipped"})
    assert response.status_code == 201
    body = response.json
    assert body["config_id"] == config_id and body["input_hashes"] == {"input_image": digest}
    assert body["output_name"] == "flipped" and queued(app) == 1
    again = alice_client.post(f"/configs/{config_id}/run", json={"inputs": {"input_image": digest}})
    assert again.status_code == 200 and again.json["id"] == body["id"] and queued(app) == 1


def test_a_recipe_can_be_run_by_name_through_post_runs(app, alice_client):
    config_id = upload(alice_client).json["id"]
    response = alice_client.post("/runs", json={"recipe": "invert-it", "inputs": [put_image(app)]})
    assert response.status_code == 201 and response.json["config_id"] == config_id


@pytest.mark.parametrize(("body", "status"), [
    ({"inputs": {}}, 400),
    ({"inputs": {"other": "x"}}, 400),
    ({"inputs": {"input_image": "f" * 64}}, 404),
    ({"inputs": {"input_image": "x"}, "recipe": "invert"}, 400),
    ({"inputs": {"input_image": "x"}, "bogus": 1}, 400),
])
def test_bad_run_requests_enqueue_nothing(app, alice_client, redis_client, body, status):
    config_id = upload(alice_client).json["id"]
    put_image(app)
    before = set(redis_client.keys("*"))
    response = alice_client.post(f"/configs/{config_id}/run", json=body)
    assert response.status_code == status and response.json["message"]
    assert queued(app) == 0
    assert set(redis_client.keys("*")) == before


def test_running_an_unknown_recipe_is_not_found(app, alice_client):
    response = alice_client.post(f"/configs/{'0' * 64}/run", json={"inputs": {}})
    assert response.status_code == 404 and queued(app) == 0


def test_anonymous_clients_cannot_upload(app, redis_client):
    before = set(redis_client.keys("*"))
    assert upload(app.test_client()).status_code == 401
    assert set(redis_client.keys("*")) == before
