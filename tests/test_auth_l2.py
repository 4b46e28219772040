"""L2 misbehaving: down, slow, redirecting, oversized, lying about scope → never a session."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from l1web.auth import l2
from l1web.devtools.processes import free_port
from l1web.web import create_app

JSON = {"Accept": "application/json"}
L1 = "http://127.0.0.1:8100"
TOKEN = "header.payload.signature"


class StubL2(BaseHTTPRequestHandler):
    """Answers `/auth/verify` as `behaviour` says; records the bodies it received."""

    behaviour: dict = {}
    received: list = []

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.received.append((self.path, json.loads(self.rfile.read(length))))
        time.sleep(self.behaviour.get("delay", 0))
        status = self.behaviour.get("status", 200)
        body = self.behaviour.get("body", b"{}")
        self.send_response(status)
        for name, value in self.behaviour.get("headers", {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def stub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubL2)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    StubL2.behaviour, StubL2.received = {}, []
    yield f"http://127.0.0.1:{server.server_address[1]}", StubL2
    server.shutdown()
    server.server_close()


@pytest.fixture()
def make_client(settings, state):
    def make(l2_url: str, **changes):
        app = create_app(settings.with_changes(l2_servers=(l2_url,), **changes), state=state)
        return app.test_client()

    return make


def answer(**fields) -> bytes:
    body = {"valid": True, "username": "alice", "l1": L1, "expires_at": int(time.time()) + 600}
    return json.dumps({**body, **fields}).encode()


def sign_in(client):
    return client.get("/auth", query_string={"auth_token": TOKEN}, headers=JSON)


def test_l2_down_is_503_quickly_and_no_session(make_client, redis_client):
    client = make_client(f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    response = sign_in(client)
    assert response.status_code == 503 and "Set-Cookie" not in response.headers
    assert time.monotonic() - started < 2
    assert redis_client.keys("artdag:session:*") == []


def test_slow_l2_is_504_within_the_timeout(make_client, stub, redis_client):
    url, handler = stub
    handler.behaviour = {"delay": 2, "body": answer()}
    client = make_client(url, l2_timeout=0.5)
    started = time.monotonic()
    response = sign_in(client)
    assert response.status_code == 504 and "Set-Cookie" not in response.headers
    assert time.monotonic() - started < 1.5
    assert redis_client.keys("artdag:session:*") == []


def test_l1_sends_the_token_and_its_own_url_and_accepts_a_good_answer(make_client, stub):
    url, handler = stub
    handler.behaviour = {"body": answer()}
    response = sign_in(make_client(url))
    assert response.status_code == 303 and "l1_session=" in response.headers["Set-Cookie"]
    assert handler.received == [("/auth/verify", {"token": TOKEN, "l1": L1})]


def test_iso_expiry_is_accepted(make_client, stub):
    url, handler = stub
    handler.behaviour = {"body": answer(expires_at="2999-01-01T00:00:00+00:00")}
    assert sign_in(make_client(url)).status_code == 303


def test_redirects_from_l2_are_not_followed(make_client, stub):
    url, handler = stub
    handler.behaviour = {"status": 302, "headers": {"Location": "http://169.254.169.254/latest/meta-data"}}
    response = sign_in(make_client(url))
    assert response.status_code == 502 and "Set-Cookie" not in response.headers
    assert len(handler.received) == 1


@pytest.mark.parametrize("body", [
    answer(l1="http://other-l1.example"), answer(l1=None), answer(username="../../etc"),
    answer(username="a\r\nb"), answer(expires_at=int(time.time()) - 5), answer(expires_at=None),
    answer(valid="yes"), json.dumps({"valid": False, "reason": "revoked"}).encode(),
])
def test_answers_that_do_not_vouch_exactly_for_this_l1_are_401(make_client, stub, redis_client, body):
    url, handler = stub
    handler.behaviour = {"body": body}
    response = sign_in(make_client(url))
    assert response.status_code == 401 and "Set-Cookie" not in response.headers
    assert [k for k in redis_client.keys("*") if not k.startswith("artdag:rate:")] == []


@pytest.mark.parametrize(("behaviour", "status"), [
    ({"body": b"x" * (l2.MAX_ANSWER_BYTES + 10)}, 502), ({"body": b"not json"}, 502),
    ({"status": 500, "body": b"{}"}, 502), ({"status": 401, "body": b"{}"}, 401),
])
def test_unusable_answers_fail_closed(make_client, stub, behaviour, status):
    url, handler = stub
    handler.behaviour = behaviour
    response = sign_in(make_client(url))
    assert response.status_code == status and "Set-Cookie" not in response.headers


def test_a_request_naming_another_l2_is_ignored(make_client, stub):
    url, handler = stub
    handler.behaviour = {"body": answer()}
    client = make_client(url)
    response = client.get("/auth", query_string={"auth_token": TOKEN, "l2": "http://evil.example"})
    assert response.status_code == 303 and len(handler.received) == 1


def test_the_l2_named_by_the_token_issuer_is_asked_only_when_configured():
    servers = ("http://l2-a", "http://l2-b")
    token_b = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJodHRwOi8vbDItYiJ9.sig"  # iss: http://l2-b
    token_evil = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJodHRwOi8vZXZpbCJ9.sig"  # iss: http://evil
    assert l2.pick_l2(token_b, servers) == "http://l2-b"
    assert l2.pick_l2(token_evil, servers) == "http://l2-a"
    assert l2.pick_l2("opaque-token", servers) == "http://l2-a"
