"""The /recipes and /recipe/<id> pages: upload form, DAG picture, run form (POST-redirect-GET)."""

import io
import re

import pytest
import rq
from PIL import Image

from l1web.recipes.parse import parse_recipe

HTML = {"Accept": "text/html"}

RECIPE = """\
name: invert-it
version: "1.0"
description: Invert <em>all</em> the colours
dag:
  nodes:
    - {id: user_image, type: SOURCE, config: {input: true, name: input_image}}
    - {id: flip, type: EFFECT, config: {effect: invert}, inputs: [user_image]}
  output: flip
"""


@pytest.fixture()
def recipe_id(alice_client) -> str:
    response = alice_client.post("/configs/upload", data=RECIPE.encode(),
                           headers={"Content-Type": "application/x-yaml", "Accept": "application/json"})
    assert response.status_code == 201
    return response.json["id"]


def put_image(app, owner="alice", name="cat.png", colour=(10, 200, 90)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, "PNG")
    return app.extensions["l1"].store.put_bytes(buffer.getvalue(), source="upload", owner=owner, name=name).digest


def text(response) -> str:
    return response.get_data(as_text=True)


def test_the_recipes_page_lists_recipes_and_offers_an_upload_form(alice_client, recipe_id):
    page = text(alice_client.get("/recipes", headers=HTML))
    assert f'href="/recipe/{recipe_id}"' in page and "invert-it" in page
    assert 'enctype="multipart/form-data"' in page and 'name="yaml"' in page and 'name="file"' in page


def test_uploading_through_the_form_redirects_to_the_recipe(alice_client):
    response = alice_client.post("/recipes", data={"yaml": RECIPE}, headers=HTML)
    assert response.status_code == 303
    assert response.location == f"/recipe/{parse_recipe(RECIPE).id}"
    assert "Recipe invert-it uploaded." in text(alice_client.get(response.location, headers=HTML))


def test_uploading_a_file_through_the_form(alice_client):
    response = alice_client.post("/recipes", headers=HTML, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(RECIPE.encode()), "r.yaml"), "yaml": ""})
    assert response.status_code == 303


def test_a_refused_upload_shows_where_and_keeps_the_text(alice_client, redis_client):
    before = set(redis_client.keys("*"))
    broken = RECIPE.replace("type: EFFECT", "type: <TELEPORT>")
    response = alice_client.post("/recipes", data={"yaml": broken}, headers=HTML)
    assert response.status_code == 400
    page = text(response)
    assert "The recipe was not saved." in page and "unknown node type" in page
    assert "node: <code>flip</code>" in page and "field: <code>type</code>" in page
    assert "type: &lt;TELEPORT&gt;" in page and "<TELEPORT>" not in page
    assert set(redis_client.keys("*")) == before


def test_a_yaml_syntax_error_shows_line_and_column(alice_client):
    page = text(alice_client.post("/recipes", data={"yaml": "name: [oops\n"}, headers=HTML))
    assert "line: <code>2</code>" in page and "column: <code>1</code>" in page


def test_the_recipe_page_draws_the_dag_and_shows_the_source(alice_client, recipe_id):
    page = text(alice_client.get(f"/recipe/{recipe_id}", headers=HTML))
    assert 'role="img"' in page and "<title>flip (EFFECT)</title>" in page
    assert "<title>user_image (SOURCE)</title>" in page
    assert "Invert &lt;em&gt;all&lt;/em&gt; the colours" in page and "<em>all" not in page


def test_the_run_form_offers_the_users_media_and_the_assets(app, alice_client, recipe_id, state):
    mine = put_image(app)
    theirs = put_image(app, owner="bob", name="dog.png", colour=(1, 2, 3))
    state.cache.set_asset("logo", mine)
    page = text(alice_client.get(f"/recipe/{recipe_id}", headers=HTML))
    assert 'name="input.input_image"' in page
    assert f'<option value="{mine}">cat.png · image 16×16</option>' in page
    assert theirs not in page
    assert '<option value="logo">logo (' in page
    assert f'action="/recipe/{recipe_id}/run"' in page


def test_the_run_button_starts_a_run_and_shows_it(app, alice_client, recipe_id):
    digest = put_image(app)
    response = alice_client.post(f"/recipe/{recipe_id}/run", data={"input.input_image": digest}, headers=HTML)
    assert response.status_code == 303 and response.location.startswith("/run/")
    page = text(alice_client.get(response.location, headers=HTML))
    assert "invert-it" in page and 'hx-trigger="every 1s"' in page
    assert rq.Queue("runs", connection=app.extensions["l1"].rq_connection).count == 1


def test_a_refused_run_goes_back_to_the_form_with_a_message(app, alice_client, recipe_id):
    response = alice_client.post(f"/recipe/{recipe_id}/run", data={"input.input_image": ""}, headers=HTML)
    assert response.status_code == 303 and response.location == f"/recipe/{recipe_id}"
    assert "is neither a cached hash nor a known asset name" in text(alice_client.get(response.location, headers=HTML))
    assert rq.Queue("runs", connection=app.extensions["l1"].rq_connection).count == 0


def test_deleting_a_recipe_from_its_page(alice_client, recipe_id):
    response = alice_client.post(f"/recipe/{recipe_id}/delete", headers=HTML)
    assert response.status_code == 303 and response.location == "/recipes"
    assert alice_client.get(f"/recipe/{recipe_id}", headers=HTML).status_code == 404


def test_a_recipe_in_use_is_not_deleted_from_its_page(app, alice_client, recipe_id):
    alice_client.post(f"/recipe/{recipe_id}/run", data={"input.input_image": put_image(app)}, headers=HTML)
    response = alice_client.post(f"/recipe/{recipe_id}/delete", headers=HTML, follow_redirects=True)
    assert "still use this recipe" in text(response)
    assert alice_client.get(f"/recipe/{recipe_id}", headers=HTML).status_code == 200


def test_someone_elses_recipe_page_is_not_found(bob_client, recipe_id):
    assert bob_client.get(f"/recipe/{recipe_id}", headers=HTML).status_code == 404
    assert bob_client.post(f"/recipe/{recipe_id}/run", data={}, headers=HTML).status_code == 404


def test_the_pages_forms_carry_the_csrf_token(alice_client, recipe_id):
    token = alice_client.csrf
    assert token
    recipes = text(alice_client.get("/recipes", headers=HTML))
    assert f'action="/recipes?csrf_token={token}"' in recipes  # multipart: the check reads the query
    recipe = text(alice_client.get(f"/recipe/{recipe_id}", headers=HTML))
    forms = re.findall(rf'action="/recipe/{recipe_id}/\w+"[^>]*>\s*<input type="hidden" name="csrf_token" '
                       rf'value="{token}">', recipe)
    assert len(forms) == 3  # run, share (issue 13) and delete


def test_a_form_post_without_the_csrf_token_changes_nothing(app, alice_client, recipe_id):
    alice_client.csrf = ""
    response = alice_client.post(f"/recipe/{recipe_id}/run", data={"input.input_image": put_image(app)},
                                 headers=HTML)
    assert response.status_code == 403
    assert rq.Queue("runs", connection=app.extensions["l1"].rq_connection).count == 0
    assert alice_client.post(f"/recipe/{recipe_id}/delete", headers=HTML).status_code == 403
