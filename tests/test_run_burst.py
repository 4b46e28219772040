"""Run submission's token bucket (issue 19): a batch's burst passes, hammering is still refused.

Over real HTTP (the app served on a port) with the real Redis; no workers, so accepted runs
simply wait in the queue.
"""

from __future__ import annotations

import io
import time

import pytest
import requests
from PIL import Image

from devl2.testing import LiveServer
from l1web.devtools.processes import free_port
from l1web.settings import DEFAULT_RUN_RATE_BURST, DEFAULT_RUN_RATE_LIMIT
from l1web.state import keys
from l1web.web import create_app


@pytest.fixture()
def serve(settings, state, dev_l2):
    """`serve(**settings_changes)`: L1 over real HTTP (waitress) with those settings."""
    servers = []

    def start(**changes) -> LiveServer:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = LiveServer(create_app(settings.with_changes(l1_public_url=url, **changes), state=state), port)
        dev_l2.allow(url)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture()
def signed_in(dev_l2):
    sessions = []

    def make(server: LiveServer) -> requests.Session:
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {dev_l2.mint('alice', server.url)}",
                                "Accept": "application/json"})
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


def upload(live_l1, session: requests.Session) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (30, 60, 90)).save(buf, "PNG")
    response = session.post(f"{live_l1.url}/cache/upload", data=buf.getvalue(),
                            headers={"Content-Type": "application/octet-stream"}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["digest"]


def submit(live_l1, session: requests.Session, digest: str, amount: float) -> requests.Response:
    """A new run each time: brightness with another amount is another recipe, so another run."""
    return session.post(f"{live_l1.url}/runs", timeout=10,
                        json={"recipe": "brightness", "inputs": [digest], "params": {"amount": amount}})


def runs_stored(state) -> int:
    return state.runs.page()[1]


def test_a_batch_of_the_default_burst_passes_and_the_next_one_is_told_when_to_retry(serve, signed_in, state):
    assert DEFAULT_RUN_RATE_BURST >= 200
    live_l1 = serve()  # the default limits
    alice = signed_in(live_l1)
    digest = upload(live_l1, alice)
    started = time.monotonic()
    statuses = [submit(live_l1, alice, digest, n / 1000).status_code for n in range(DEFAULT_RUN_RATE_BURST)]
    assert statuses == [201] * DEFAULT_RUN_RATE_BURST
    # Tokens came back while the batch was sent (RUN_RATE_LIMIT a minute): once they are used, 429.
    extra = 0
    while (refused := submit(live_l1, alice, digest, 0.5 + extra / 1000)).status_code == 201:
        extra += 1
        assert extra <= (time.monotonic() - started) * DEFAULT_RUN_RATE_LIMIT / 60 + 1
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited" and "try again in" in refused.json()["message"]
    retry_after = int(refused.headers["Retry-After"])
    # One token comes back every 60 / RUN_RATE_LIMIT seconds.
    assert 1 <= retry_after <= max(1, -(-60 // DEFAULT_RUN_RATE_LIMIT))
    assert refused.json()["retry_after"] == retry_after
    assert runs_stored(state) == DEFAULT_RUN_RATE_BURST + extra  # the refused one wrote nothing
    # Asking for a run that exists is free, even with the bucket empty.
    again = submit(live_l1, alice, digest, 0.0)
    assert again.status_code == 200
    # After Retry-After, a token is back.
    time.sleep(retry_after)
    assert submit(live_l1, alice, digest, 0.999).status_code == 201
    assert runs_stored(state) == DEFAULT_RUN_RATE_BURST + extra + 1


def test_hammering_is_still_refused_at_the_refill_rate(serve, signed_in, state):
    live_l1 = serve(run_rate_burst=5, run_rate_limit=60)
    alice = signed_in(live_l1)
    digest = upload(live_l1, alice)
    started = time.monotonic()
    statuses = [submit(live_l1, alice, digest, n / 1000).status_code for n in range(60)]
    elapsed = time.monotonic() - started
    accepted = statuses.count(201)
    # The burst, then one a second at most: however fast the client asks.
    assert statuses[:5] == [201] * 5
    assert 5 <= accepted <= 5 + int(elapsed) + 1
    assert statuses.count(429) == 60 - accepted
    assert runs_stored(state) == accepted


def test_a_refused_submission_takes_no_token_from_either_bucket(serve, signed_in, state, redis_client):
    """User and address buckets are taken together: a refusal by one costs the other nothing."""
    live_l1 = serve(run_rate_burst=3, run_rate_limit=1)
    alice = signed_in(live_l1)
    digest = upload(live_l1, alice)
    # The address bucket is nearly empty (other clients behind the same address used it).
    assert state.tokens.take_tokens(["runs:addr:127.0.0.1"], 3, 1) == 0
    assert state.tokens.take_tokens(["runs:addr:127.0.0.1"], 3, 1) == 0
    assert submit(live_l1, alice, digest, 0.001).status_code == 201
    user_bucket = keys.rate("bucket:runs:user:alice")
    before = float(redis_client.hget(user_bucket, "tokens"))
    assert submit(live_l1, alice, digest, 0.002).status_code == 429
    assert float(redis_client.hget(user_bucket, "tokens")) == pytest.approx(before, abs=0.01)


def test_buckets_refill_continuously(state):
    tokens = state.tokens
    assert [tokens.take_tokens(["t"], 2, 600) for _ in range(2)] == [0, 0]  # 10 tokens a second
    wait = tokens.take_tokens(["t"], 2, 600)
    assert 0 < wait <= 0.1
    time.sleep(wait + 0.02)
    assert tokens.take_tokens(["t"], 2, 600) == 0
