"""L1's Flask class: the cookie session opened without a signer when there is no cookie, one
signer per set of keys, and `ensure_sync` remembered for plain functions (l1web/web/flaskapp.py)."""

import asyncio

import pytest
from flask import flash, get_flashed_messages
from flask.sessions import SecureCookieSessionInterface

from l1web.web.flaskapp import CookieSessions, L1Flask


def small_app(secret: str = "first") -> L1Flask:
    app = L1Flask("flaskapp-test")
    app.secret_key = secret

    @app.post("/note")
    def note():
        flash("kept for the next page")
        return "ok"

    @app.get("/notes")
    def notes():
        return ",".join(get_flashed_messages())

    return app


def count_signers(monkeypatch) -> list[int]:
    built = [0]
    original = SecureCookieSessionInterface.get_signing_serializer

    def counting(self, app):
        built[0] += 1
        return original(self, app)

    monkeypatch.setattr(SecureCookieSessionInterface, "get_signing_serializer", counting)
    return built


def test_requests_without_the_session_cookie_build_no_signer_and_flash_still_works(monkeypatch):
    built = count_signers(monkeypatch)
    app = small_app()
    assert isinstance(app.session_interface, CookieSessions)
    client = app.test_client()
    for _ in range(5):
        assert client.get("/notes").text == ""
    assert built[0] == 0  # no cookie: an empty session, as Flask gives, without a signer
    assert client.post("/note").status_code == 200  # writing the cookie builds the signer once
    assert client.get("/notes").text == "kept for the next page"  # read back through the same signer
    assert client.get("/notes").text == ""  # consumed, as Flask's flash works
    assert built[0] == 1


def test_the_signer_follows_the_secret_key_and_a_tampered_cookie_gives_an_empty_session(monkeypatch):
    built = count_signers(monkeypatch)
    app = small_app()
    client = app.test_client()
    client.post("/note")
    app.secret_key = "rotated"  # without a fallback the old cookie no longer verifies
    assert client.get("/notes").text == ""
    assert built[0] == 2
    app.config["SECRET_KEY_FALLBACKS"] = ["rotated"]
    app.secret_key = "third"
    client.post("/note")  # signed with "third"
    assert client.get("/notes").text == "kept for the next page"
    assert built[0] == 3
    client.set_cookie("session", "forged.value.sig")
    assert client.get("/notes").text == ""


def test_ensure_sync_remembers_plain_functions_and_still_runs_async_views():
    app = small_app()

    def plain():
        return "plain"

    async def later():
        await asyncio.sleep(0)
        return "async"

    assert app.ensure_sync(plain) is plain and app.ensure_sync(plain) is plain
    assert plain in app._sync
    # Coroutine functions go to Flask's own answer each time: without asgiref (not in our lock) it
    # refuses them, as plain Flask does; nothing is remembered for them.
    for _ in range(2):
        with pytest.raises(RuntimeError, match="async"):
            app.ensure_sync(later)
    assert later not in app._sync
