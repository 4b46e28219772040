"""The /recipes and /recipe/<id> pages: upload form, DAG picture, run form (POST-redirect-GET)."""

import io

import pytest
import rq
from flask import g
from PIL import Image

from l1web.context import User
from l1web.recipes import parse_recipe

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


@pytest.fixture()
def recipe_id(client, alice) -> str:
    response = client.post("/configs/upload", data=RECIPE.encode(),
                           headers={"Content-Type": "application/x-yaml", "Accept": "application/json"})
    assert response.status_code == 201
    return response.json["id"]


def put_image(app, owner="alice", name="cat.png", colour=(10, 200, 90)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, "PNG")
    return app.extensions["l1"].store.put_bytes(buffer.getvalue(), source="upload", owner=owner, name=name).digest


def text(response) -> str:
    return response.get_data(as_text=True)


def test_the_recipes_page_lists_recipes_and_offers_an_upload_form(client, recipe_id):
    page = text(client.get("/recipes", headers=HTML))
    assert f'href="/recipe/{recipe_id}"' in page and "invert-it" in page
    assert 'enctype="multipart/form-data"' in page and 'name="yaml"' in page and 'name="file"' in page


def test_uploading_through_the_form_redirects_to_the_recipe(client, alice):
    response = client.post("/recipes", data={"yaml": RECIPE}, headers=HTML)
    assert response.status_code == 303
    assert response.location == f"/recipe/{parse_recipe(RECIPE).id}"
    assert "Recipe invert-it uploaded." in text(client.get(response.location, headers=HTML))


def test_uploading_a_file_through_the_form(client, alice):
    response = client.post("/recipes", headers=HTML, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(RECIPE.encode()), "r.yaml"), "yaml": ""})
    assert response.status_code == 303


def test_a_refused_upload_shows_where_and_keeps_the_text(client, alice, redis_client):
    before = set(redis_client.keys("*"))
    broken = RECIPE.replace("type: EFFECT", "type: <TELEPORT>")
    response = client.post("/recipes", data={"yaml": broken}, headers=HTML)
    assert response.status_code == 400
    page = text(response)
    assert "The recipe was not saved." in page and "unknown node type" in page
    assert "node: <code>flip</code>" in page and "field: <code>type</code>" in page
    assert "type: &lt;TELEPORT&gt;" in page and "<TELEPORT>" not in page
    assert set(redis_client.keys("*")) == before


def test_a_yaml_syntax_error_shows_line_and_column(client, alice):
    page = text(client.post("/recipes", data={"yaml": "name: [oops\n"}, headers=HTML))
    assert "line: <code>2</code>" in page and "column: <code>1</code>" in page


def test_the_recipe_page_draws_the_dag_and_shows_the_source(client, recipe_id):
    page = text(client.get(f"/recipe/{recipe_id}", headers=HTML))
    assert 'role="img"' in page and "<title>flip (EFFECT)</title>" in page
    assert "<title>user_image (SOURCE)</title>" in page
    assert "Invert &lt;em&gt;all&lt;/em&gt; the colours" in page and "<em>all" not in page


def test_the_run_form_offers_the_users_media_and_the_assets(app, client, recipe_id, state):
    mine = put_image(app)
    theirs = put_image(app, owner="bob", name="dog.png", colour=(1, 2, 3))
    state.cache.set_asset("logo", mine)
    page = text(client.get(f"/recipe/{recipe_id}", headers=HTML))
    assert 'name="input.input_image"' in page
    assert f'<option value="{mine}">cat.png · image 16×16</option>' in page
    assert theirs not in page
    assert '<option value="logo">logo (' in page
    assert f'action="/recipe/{recipe_id}/run"' in page


def test_the_run_button_starts_a_run_and_shows_it(app, client, recipe_id):
    digest = put_image(app)
    response = client.post(f"/recipe/{recipe_id}/run", data={"input.input_image": digest}, headers=HTML)
    assert response.status_code == 303 and response.location.startswith("/run/")
    page = text(client.get(response.location, headers=HTML))
    assert "invert-it" in page and 'hx-trigger="every 1s"' in page
    assert rq.Queue("runs", connection=app.extensions["l1"].rq_connection).count == 1


def test_a_refused_run_goes_back_to_the_form_with_a_message(app, client, recipe_id):
    response = client.post(f"/recipe/{recipe_id}/run", data={"input.input_image": ""}, headers=HTML)
    assert response.status_code == 303 and response.location == f"/recipe/{recipe_id}"
    assert "is neither a cached hash nor a known asset name" in text(client.get(response.location, headers=HTML))
    assert rq.Queue("runs", connection=app.extensions["l1"].rq_connection).count == 0


def test_deleting_a_recipe_from_its_page(client, recipe_id):
    response = client.post(f"/recipe/{recipe_id}/delete", headers=HTML)
    assert response.status_code == 303 and response.location == "/recipes"
    assert client.get(f"/recipe/{recipe_id}", headers=HTML).status_code == 404


def test_a_recipe_in_use_is_not_deleted_from_its_page(app, client, recipe_id):
    client.post(f"/recipe/{recipe_id}/run", data={"input.input_image": put_image(app)}, headers=HTML)
    response = client.post(f"/recipe/{recipe_id}/delete", headers=HTML, follow_redirects=True)
    assert "still use this recipe" in text(response)
    assert client.get(f"/recipe/{recipe_id}", headers=HTML).status_code == 200


def test_someone_elses_recipe_page_is_not_found(client, recipe_id, sign_in):
    sign_in("bob")
    assert client.get(f"/recipe/{recipe_id}", headers=HTML).status_code == 404
    assert client.post(f"/recipe/{recipe_id}/run", data={}, headers=HTML).status_code == 404
