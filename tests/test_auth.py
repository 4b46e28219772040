"""Sign-in through the real dev L2 (over HTTP): /auth, Bearer, revocation, logout, the guard."""

import hashlib
from http.cookies import SimpleCookie

import pytest

from l1web.state import keys

L1 = "http://127.0.0.1:8100"
JSON = {"Accept": "application/json"}


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def non_rate_keys(redis_client) -> list[str]:
    return [k for k in redis_client.keys("*") if not k.startswith(keys.rate(""))]


def session_cookie(response) -> SimpleCookie:
    cookie = SimpleCookie()
    for header in response.headers.getlist("Set-Cookie"):
        cookie.load(header)
    return cookie


def test_auth_sets_a_session_cookie_and_redirects_to_a_clean_url(client, dev_l2, redis_client):
    token = dev_l2.mint("alice", L1)
    response = client.get("/auth", query_string={"auth_token": token, "next": "/media"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/media"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    value = session_cookie(response)["l1_session"].value
    assert value != token and len(value) >= 22
    assert redis_client.smembers(keys.user_tokens("alice")) == {sha256(token)}


def test_raw_tokens_are_never_stored_in_redis(alice_client, redis_client):
    alice_client.get("/auth/whoami", headers={"Authorization": f"Bearer {alice_client.token}"})
    for key in redis_client.keys("*"):
        assert alice_client.token not in key
        kind = redis_client.type(key)
        values = {"string": lambda: [redis_client.get(key)], "set": lambda: redis_client.smembers(key),
                  "hash": lambda: redis_client.hgetall(key).values()}.get(kind, list)()
        assert not any(alice_client.token in str(v) for v in values)


def test_signed_in_client_knows_its_user(alice_client, admin_client):
    assert alice_client.get("/auth/whoami").json == {
        "username": "alice", "is_admin": False, "via": "cookie", "csrf_token": alice_client.csrf}
    assert admin_client.get("/auth/whoami").json["is_admin"] is True


def test_pages_show_the_signed_in_user(alice_client):
    page = alice_client.get("/", headers={"Accept": "text/html"}).data
    assert b"@alice" in page and b'action="/logout"' in page and alice_client.csrf.encode() in page


def test_bearer_token_signs_in_api_calls_and_is_cached_briefly(client, dev_l2, redis_client):
    token = dev_l2.mint("bob", L1)
    response = client.get("/auth/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.json["username"] == "bob" and response.json["via"] == "bearer"
    assert 0 < redis_client.ttl(keys.token(sha256(token))) <= keys.TOKEN_VERIFY_TTL
    assert "Set-Cookie" not in response.headers


def test_token_for_another_l1_is_refused(client, dev_l2, redis_client):
    token = dev_l2.mint("alice", "http://other-l1.example:8100")
    response = client.get("/auth", query_string={"auth_token": token}, headers=JSON)
    assert response.status_code == 401
    assert "Set-Cookie" not in response.headers
    assert non_rate_keys(redis_client) == []


def test_expired_token_is_refused_without_cookie_or_redis_write(client, dev_l2, redis_client):
    token = dev_l2.mint("alice", L1, ttl=-10)
    response = client.get("/auth", query_string={"auth_token": token}, headers=JSON)
    assert response.status_code == 401
    assert "Set-Cookie" not in response.headers
    assert non_rate_keys(redis_client) == []


def test_forged_token_is_refused_without_cookie_or_redis_write(client, dev_l2, redis_client):
    header, claims, signature = dev_l2.mint("alice", L1).split(".")
    forged = f"{header}.{claims}.{'A' * len(signature)}"
    for attempt in (forged, f"{header}.{claims}."):
        response = client.get("/auth", query_string={"auth_token": attempt}, headers=JSON)
        assert response.status_code == 401
        assert "Set-Cookie" not in response.headers
    assert non_rate_keys(redis_client) == []


@pytest.mark.parametrize("token", ["a" * 10240, "abc\r\nSet-Cookie: x=1", "tökén-ünïcode", "abc def", ""])
def test_malformed_token_is_a_400_before_any_redis_access(client, redis_client, token):
    response = client.get("/auth", query_string={"auth_token": token}, headers=JSON)
    assert response.status_code == 400
    assert "Set-Cookie" not in response.headers
    assert redis_client.keys("*") == []


def test_malformed_bearer_token_is_a_400(client):
    response = client.get("/auth/whoami", headers={"Authorization": "Bearer " + "x" * 10240})
    assert response.status_code == 400


def test_revoke_user_then_cookie_and_bearer_requests_get_401(alice_client, client, dev_l2):
    cli_token = dev_l2.mint("alice", L1)
    assert client.get("/auth/whoami", headers={"Authorization": f"Bearer {cli_token}"}).status_code == 200
    answer = client.post("/auth/revoke-user", json={"username": "alice", "tokens": [alice_client.token]})
    assert answer.status_code == 200 and answer.json == {"revoked": 2}
    assert alice_client.get("/auth/whoami", headers=JSON).status_code == 401
    for token in (cli_token, alice_client.token):
        assert client.get("/auth/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_revoked_cookie_is_dropped_and_the_browser_sent_to_login(alice_client, client):
    client.post("/auth/revoke-user", json={"username": "alice", "tokens": [alice_client.token]})
    response = alice_client.get("/media", headers={"Accept": "text/html"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fmedia"
    assert "l1_session=;" in response.headers["Set-Cookie"]


def test_forged_revoke_user_revokes_nothing(alice_client, bob_client, client, dev_l2, redis_client):
    unseen = dev_l2.mint("alice", L1)  # genuine, but never presented here
    for tokens in ([bob_client.token], ["not-a-token"], [unseen], [alice_client.token + "x"]):
        answer = client.post("/auth/revoke-user", json={"username": "alice", "tokens": tokens})
        assert answer.status_code == 401
    assert client.post("/auth/revoke-user", json={"username": "alice", "tokens": []}).status_code == 400
    assert client.post("/auth/revoke-user", data="junk").status_code == 400
    assert alice_client.get("/auth/whoami").status_code == 200
    assert redis_client.keys(keys.revoked("*")) == []


def test_replayed_revoke_user_does_not_end_sessions_started_since(app, dev_l2, client):
    from devl2.testing import sign_in

    first = sign_in(app, dev_l2, "alice")
    call = {"username": "alice", "tokens": [first.token]}
    assert client.post("/auth/revoke-user", json=call).json == {"revoked": 1}
    second = sign_in(app, dev_l2, "alice")
    replay = client.post("/auth/revoke-user", json=call)
    assert replay.status_code == 200 and replay.json == {"revoked": 0}
    assert second.get("/auth/whoami").status_code == 200


def test_revoke_one_token_with_bearer(client, dev_l2):
    token = dev_l2.mint("bob", L1)
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.post("/auth/revoke", headers=bearer).json == {"revoked": True}
    assert client.get("/auth/whoami", headers=bearer).status_code == 401


def test_revoke_a_token_given_in_the_body(client, dev_l2):
    token = dev_l2.mint("bob", L1)
    assert client.post("/auth/revoke", json={"token": token}).status_code == 200
    assert client.get("/auth/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_logout_clears_the_cookie_and_revokes_the_session_token(alice_client, client):
    response = alice_client.post("/logout")
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert "l1_session=;" in response.headers["Set-Cookie"]
    assert alice_client.get("/auth/whoami", headers=JSON).status_code == 401
    bearer = {"Authorization": f"Bearer {alice_client.token}"}
    assert client.get("/auth/whoami", headers=bearer).status_code == 401


def test_logout_page_offers_a_form_and_changes_nothing_on_get(alice_client):
    page = alice_client.get("/logout")
    assert page.status_code == 200 and b'method="post"' in page.data
    assert alice_client.get("/auth/whoami").status_code == 200


def test_a_new_auth_replaces_an_existing_session(alice_client, dev_l2):
    old = alice_client.get_cookie("l1_session").value
    token = dev_l2.mint("alice", L1)
    response = alice_client.get("/auth", query_string={"auth_token": token})
    new = session_cookie(response)["l1_session"].value
    assert new != old
    alice_client.set_cookie("l1_session", old)
    assert alice_client.get("/auth/whoami", headers=JSON).status_code == 401


@pytest.mark.parametrize("target", [
    "//evil.example", "/\\evil.example", "https://evil.example", "javascript:alert(1)",
    "%2F%2Fevil.example", "/%2F/evil.example", "/%09/evil.example", "/\t/evil.example",
    "http:/evil.example", "\\\\evil.example", "", "/" + "a" * 3000,
])
def test_open_redirect_payloads_in_next_land_on_the_home_page(client, dev_l2, target):
    token = dev_l2.mint("alice", L1)
    response = client.get("/auth", query_string={"auth_token": token, "next": target})
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


def test_local_next_with_a_query_is_kept(client, dev_l2):
    token = dev_l2.mint("alice", L1)
    response = client.get("/auth", query_string={"auth_token": token, "next": "/runs?page=2"})
    assert response.headers["Location"] == "/runs?page=2"


def test_sign_in_is_rate_limited_per_address(app, client, dev_l2):
    app.extensions["l1"].settings = app.extensions["l1"].settings.with_changes(auth_rate_limit=2)
    codes = [client.get("/auth", query_string={"auth_token": dev_l2.mint("bob", L1)}).status_code
             for _ in range(3)]
    assert codes == [303, 303, 429]
