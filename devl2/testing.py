"""Test helpers: WSGI apps served over real HTTP in a thread, the dev L2, signed-in L1 clients.

`tests/conftest.py` builds its `dev_l2` and `alice_client`-style fixtures from these.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from waitress import wasyncore
from waitress.server import create_server
from werkzeug.datastructures import Headers

from devl2.app import EXTENSION, DevL2, create_app
from devl2.config import Config

#: Methods that change state, so a signed-in test client adds its CSRF header to them.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """A WSGI app served by waitress on a loopback port, in a daemon thread."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self.server = create_server(app, host="127.0.0.1", port=port, threads=4, ident="test")
        self.port = self.server.effective_port  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.run, name=f"live-{self.port}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        stop_waitress(self.server, self.thread)


def stop_waitress(server: Any, thread: threading.Thread) -> None:
    """Stop a waitress server running `server.run` in `thread`."""
    server.task_dispatcher.shutdown()
    # Close the sockets from inside the serving thread (waitress's trigger runs the thunk
    # there): closing them from this thread raced its select() and raised EBADF in it.
    sockets = server._map  # noqa: SLF001
    try:
        server.trigger.pull_trigger(lambda: wasyncore.close_all(sockets))
    except OSError:
        # The trigger's descriptor was already gone (CI under load: test_publish's slow-L2 test,
        # test_uploads' teardown; cause not found): with it the serving thread's select() fails
        # too and its loop ends, so the sockets are closed from here.
        thread.join(5)
        wasyncore.close_all(sockets)
    thread.join(5)


class LiveL2:
    """The real development L2 over HTTP, plus direct access to mint tokens for tests."""

    def __init__(self, data_dir: Path, l1_urls: tuple[str, ...] = ()) -> None:
        port = free_port()
        # Tokens name their issuer, so the config must know this server's real URL up front.
        config = Config(data_dir=data_dir, public_url=f"http://127.0.0.1:{port}", l1_urls=l1_urls)
        self.app: Flask = create_app(config)
        self.live = LiveServer(self.app, port)
        self.url = self.live.url

    @property
    def _ext(self) -> DevL2:
        return self.app.extensions[EXTENSION]

    def allow(self, l1_url: str) -> None:
        """Let users attach one more L1 (and L2 notify it at logout)."""
        config = self._ext.config
        if l1_url not in config.l1_urls:
            self._ext.config = replace(config, l1_urls=(*config.l1_urls, l1_url))

    def mint(self, username: str, l1: str, ttl: int = 3600) -> str:
        """A token for `username` scoped to `l1`; a negative `ttl` gives an expired one."""
        return self._ext.issuer.mint(username, l1, ttl)

    def calls(self, path: str = "/auth/verify") -> int:
        """How many requests this L2 has served on `path` since it started."""
        return self._ext.calls[path]

    def revoke_user(self, username: str) -> int:
        return self._ext.issuer.revoke_user(username)

    def stop(self) -> None:
        self.live.stop()


class SignedInClient(FlaskClient):
    """A Flask test client that sends its `csrf` token on POST, PUT, PATCH and DELETE.

    `token` is the L2 token it signed in with (send it as Bearer to test the API path);
    set `csrf = ""` to send no CSRF token.
    """

    csrf: str = ""
    token: str = ""
    username: str = ""

    def open(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        method = str(kwargs.get("method", "GET")).upper()
        if self.csrf and method in UNSAFE_METHODS:
            headers = Headers(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRF-Token", self.csrf)
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)


def sign_in(app: Flask, l2: LiveL2, username: str) -> SignedInClient:
    """A test client signed in the real way: a token from the dev L2 exchanged at `/auth`."""
    l1_url = app.extensions["l1"].settings.l1_public_url
    client = SignedInClient(app, app.response_class, use_cookies=True)
    client.token = l2.mint(username, l1_url)
    client.username = username
    answer = client.get("/auth", query_string={"auth_token": client.token})
    if answer.status_code != 303:
        raise AssertionError(f"sign-in of {username} failed: {answer.status_code} {answer.data[:200]!r}")
    client.csrf = client.get("/auth/whoami").json["csrf_token"]
    return client
