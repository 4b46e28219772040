"""The guard, CSRF, admin and ownership helpers, Redis failures and log redaction."""

import logging
import threading

import pytest
import requests
from flask import g
from werkzeug.serving import make_server

from l1web.auth.access import require_admin
from l1web.auth.ratelimit import rate_limit
from l1web.auth.tokens import token_hash
from l1web.devtools.processes import RedisServer, free_port
from l1web.errors import Forbidden, TooManyRequests, Unauthorized
from l1web.state import StateManager, connect, keys
from l1web.users import User
from l1web.web import create_app
from l1web.web.current import signed_in

JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html"}


@pytest.fixture()
def app(settings, state):
    """The real app plus one protected route that changes state, for POST and DELETE."""
    app = create_app(settings, state=state)

    @app.route("/test/thing", methods=["POST", "DELETE"])
    def thing():
        return {"changed": True}

    return app


# The guard ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/login", "/logout", "/static/app.css"])
def test_anonymous_users_reach_public_pages(client, path):
    with client.get(path, headers=HTML) as response:
        assert response.status_code == 200


def test_anonymous_api_clients_get_401(client):
    response = client.get("/media", headers=JSON)
    assert response.status_code == 401 and response.json["error"] == "unauthorized"


def test_anonymous_browsers_are_sent_to_login_with_next(client):
    response = client.get("/runs?page=2", headers=HTML)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fruns%3Fpage%3D2"


def test_anonymous_htmx_requests_get_a_redirect_header(client):
    response = client.get("/media", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=%2Fmedia"


def test_anonymous_state_changes_are_401(client):
    assert client.post("/test/thing", headers=JSON).status_code == 401


def test_login_page_points_to_the_first_l2(client, dev_l2):
    page = client.get("/login?next=/media", headers=HTML).data.decode()
    assert f'href="{dev_l2.url}/renderers?l1=http%3A%2F%2F127.0.0.1%3A8100&amp;next=%2Fmedia"' in page


# CSRF --------------------------------------------------------------------------------------
def test_signed_in_post_and_delete_with_the_csrf_token_pass(alice_client):
    assert alice_client.post("/test/thing").status_code == 200
    assert alice_client.delete("/test/thing").status_code == 200


@pytest.mark.parametrize("method", ["post", "delete"])
@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
    {"Origin": "null"},
])
def test_cross_site_state_changes_are_403(alice_client, method, headers):
    response = getattr(alice_client, method)("/test/thing", headers={**JSON, **headers})
    assert response.status_code == 403


@pytest.mark.parametrize("method", ["post", "delete"])
def test_state_changes_without_the_csrf_token_are_403(alice_client, method):
    alice_client.csrf = ""
    assert getattr(alice_client, method)("/test/thing", headers=JSON).status_code == 403
    assert getattr(alice_client, method)("/test/thing", headers={"X-CSRF-Token": "x" * 64}).status_code == 403


def test_same_origin_requests_with_the_token_pass(alice_client):
    headers = {"Origin": "http://127.0.0.1:8100", "Sec-Fetch-Site": "same-origin"}
    assert alice_client.post("/test/thing", headers=headers).status_code == 200


def test_the_csrf_token_may_come_in_a_urlencoded_form(alice_client):
    token, alice_client.csrf = alice_client.csrf, ""
    assert alice_client.post("/test/thing", data={"csrf_token": token}).status_code == 200


def test_bearer_calls_need_no_csrf_token(client, dev_l2):
    token = dev_l2.mint("alice", "http://127.0.0.1:8100")
    response = client.post("/test/thing", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_get_on_a_mutating_route_is_405(alice_client):
    assert alice_client.get("/auth/revoke", headers=JSON).status_code == 405
    assert alice_client.get("/test/thing", headers=JSON).status_code == 405


# Admin and ownership -----------------------------------------------------------------------
def test_admin_helpers(app):
    with app.test_request_context():
        g.user = None
        with pytest.raises(Unauthorized):
            signed_in()
        g.user = User("alice")
        with pytest.raises(Forbidden):
            require_admin()
        g.user = User("admin", is_admin=True)
        assert require_admin().name == "admin"


def test_rate_limit_counts_a_fixed_window(app):
    with app.test_request_context():
        for _ in range(3):
            rate_limit("test", 3, 60)
        with pytest.raises(TooManyRequests):
            rate_limit("test", 3, 60)


# Redis failures ----------------------------------------------------------------------------
def test_redis_down_on_an_authenticated_request_is_503(app, alice_client, client, dev_l2):
    token = dev_l2.mint("bob", "http://127.0.0.1:8100")
    app.extensions["l1"].state = StateManager(connect(f"redis://127.0.0.1:{free_port()}/5"))
    assert alice_client.get("/auth/whoami", headers=JSON).status_code == 503
    assert client.get("/auth/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 503
    assert client.get("/", headers=JSON).status_code == 200  # anonymous pages need no Redis


def test_revocation_survives_a_redis_restart(settings, dev_l2, tmp_path):
    from devl2.testing import sign_in

    own = RedisServer(tmp_path / "own-redis", aof=True).start()
    try:
        settings = settings.with_changes(redis_url=f"{own.url}/5")
        app = create_app(settings, state=StateManager.from_url(settings.redis_url))
        alice = sign_in(app, dev_l2, "alice")
        anyone = app.test_client()
        call = {"username": "alice", "tokens": [alice.token]}
        assert anyone.post("/auth/revoke-user", json=call).status_code == 200
        own.restart()
        assert alice.get("/auth/whoami", headers=JSON).status_code == 401
        bearer = {"Authorization": f"Bearer {alice.token}"}
        assert anyone.get("/auth/whoami", headers=bearer).status_code == 401
        assert connect(settings.redis_url).ttl(keys.revoked(token_hash(alice.token))) > 29 * 24 * 3600
    finally:
        own.stop()


# Logs --------------------------------------------------------------------------------------
def test_the_access_log_never_shows_the_token(app, dev_l2, caplog):
    token = dev_l2.mint("alice", "http://127.0.0.1:8100")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.INFO):
            url = f"http://127.0.0.1:{server.port}/auth?auth_token={token}&next=/media"
            response = requests.get(url, allow_redirects=False, timeout=10)
    finally:
        server.shutdown()
        thread.join(5)
    assert response.status_code == 303
    request_lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("/auth?auth_token=[redacted]" in line for line in request_lines)
    assert not any(token in r.getMessage() for r in caplog.records)


def test_run_submission_limit_counts_per_user_and_per_address(app):
    from l1web.auth.ratelimit import limit_run_submission

    app.extensions["l1"].settings = app.extensions["l1"].settings.with_changes(run_rate_limit=1, run_rate_burst=1)
    with app.test_request_context(environ_base={"REMOTE_ADDR": "10.0.0.1"}):
        g.user = User("alice")
        limit_run_submission()
        with pytest.raises(TooManyRequests):
            limit_run_submission()
    with app.test_request_context(environ_base={"REMOTE_ADDR": "10.0.0.2"}):
        g.user = User("alice")  # same user from another address is still limited
        with pytest.raises(TooManyRequests):
            limit_run_submission()
