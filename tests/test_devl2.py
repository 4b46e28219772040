"""The development L2 on its own: password form, Attach, verify, revoke, and its CLI."""

import os
import re
import subprocess
import sys

import pytest
import requests

from devl2 import Config, create_app
from devl2.testing import free_port
from l1web.devtools.processes import python_process, stop_process, wait_for
from l1web.paths import ROOT

L1 = "http://127.0.0.1:8100"


@pytest.fixture()
def l2_app(tmp_path):
    return create_app(Config(data_dir=tmp_path / "devl2", public_url="http://127.0.0.1:8200", l1_urls=(L1,)))


def csrf(page: bytes) -> str:
    return re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()


def signed_in(l2_app, user="alice"):
    client = l2_app.test_client()
    token = csrf(client.get("/login").data)
    response = client.post("/login", data={"username": user, "password": user, "csrf_token": token})
    assert response.status_code == 303
    return client


def verify(client, token, l1=L1):
    return client.post("/auth/verify", json={"token": token, "l1": l1}).json


def test_renderers_page_needs_sign_in(l2_app):
    response = l2_app.test_client().get("/renderers?l1=" + L1)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")


def test_wrong_password_is_refused(l2_app):
    client = l2_app.test_client()
    token = csrf(client.get("/login").data)
    response = client.post("/login", data={"username": "alice", "password": "nope", "csrf_token": token})
    assert response.status_code == 401 and b"wrong password" in response.data


def test_login_form_needs_its_csrf_token(l2_app):
    response = l2_app.test_client().post("/login", data={"username": "alice", "password": "alice"})
    assert response.status_code == 403


def test_attach_redirects_to_l1_auth_with_a_token_scoped_to_it(l2_app):
    client = signed_in(l2_app)
    page = client.get("/renderers", query_string={"l1": L1, "next": "/media"}).data
    response = client.post("/renderers/attach", data={"l1": L1, "next": "/media", "csrf_token": csrf(page)})
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith(f"{L1}/auth?auth_token=") and location.endswith("&next=%2Fmedia")
    token = location.split("auth_token=")[1].split("&")[0]
    assert verify(client, token) == {"valid": True, "username": "alice", "l1": L1,
                                     "expires_at": verify(client, token)["expires_at"]}
    assert verify(client, token, "http://other-l1.example") == {"valid": False, "reason": "wrong_l1"}


def test_attach_refuses_an_unknown_l1(l2_app):
    client = signed_in(l2_app)
    token = csrf(client.get("/renderers").data)
    response = client.post("/renderers/attach", data={"l1": "http://evil.example", "csrf_token": token})
    assert response.status_code == 400


def test_verify_refuses_expired_forged_revoked_and_garbage(l2_app):
    issuer = l2_app.extensions["devl2"].issuer
    client = l2_app.test_client()
    expired = issuer.mint("alice", L1, -5)
    good = issuer.mint("alice", L1, 60)
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for token in (expired, forged, "garbage", "x" * 10000):
        assert verify(client, token)["valid"] is False
    assert client.post("/auth/revoke", json={"token": good}).json == {"revoked": True}
    assert verify(client, good) == {"valid": False, "reason": "revoked"}
    assert client.post("/auth/verify", json={"token": 5}).status_code == 400


def test_tokens_from_another_key_are_refused(l2_app, tmp_path):
    other = create_app(Config(data_dir=tmp_path / "other", public_url="http://127.0.0.1:8200"))
    token = other.extensions["devl2"].issuer.mint("alice", L1, 60)
    assert verify(l2_app.test_client(), token) == {"valid": False, "reason": "invalid"}


def test_a_token_can_be_reissued_from_its_stored_claims(l2_app):
    issuer = l2_app.extensions["devl2"].issuer
    token = issuer.mint("bob", L1, 60)
    assert [issuer.token_for(t) for t in issuer.live_tokens("bob")] == [token]


def test_renderers_page_lists_and_revokes_own_tokens(l2_app):
    client = signed_in(l2_app)
    l2_app.extensions["devl2"].issuer.mint("alice", L1, 60)
    page = client.get("/renderers").data
    jti = re.search(rb'/tokens/([^/]+)/revoke', page).group(1).decode()
    assert client.post(f"/tokens/{jti}/revoke", data={"csrf_token": csrf(page)}).status_code == 303
    assert b"No live tokens" in client.get("/renderers").data


def test_logout_revokes_every_token_even_when_l1_is_down(l2_app):
    client = signed_in(l2_app)
    issuer = l2_app.extensions["devl2"].issuer
    token = issuer.mint("alice", f"http://127.0.0.1:{free_port()}", 60)
    page = client.get("/renderers").data
    assert client.post("/logout", data={"csrf_token": csrf(page)}).status_code == 303
    assert issuer.live_tokens("alice") == []
    assert verify(client, token, token_l1(issuer, token))["valid"] is False


def token_l1(issuer, token):
    return issuer.decode(token).aud


def test_cli_token_command_and_serve(tmp_path):
    port = free_port()
    env = {"DEVL2_DATA_DIR": str(tmp_path / "cli"), "DEVL2_PORT": str(port), "DEVL2_L1_URL": L1}
    minted = subprocess.run([sys.executable, "-m", "devl2", "token", "alice", "--l1", L1], check=False, cwd=ROOT,
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    server = python_process(["-m", "devl2", "serve"], env, log=tmp_path / "devl2.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(f"{url}/healthz", timeout=1).ok, what="devl2 serve")
        answer = requests.post(f"{url}/auth/verify", json={"token": token, "l1": L1}, timeout=5).json()
        assert answer["valid"] is True and answer["username"] == "alice"
    finally:
        stop_process(server)


def test_cli_refuses_unknown_users(tmp_path):
    env = {**os.environ, "DEVL2_DATA_DIR": str(tmp_path / "cli")}
    result = subprocess.run([sys.executable, "-m", "devl2", "token", "mallory", "--l1", L1], check=False, cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown user" in result.stderr
