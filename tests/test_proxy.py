"""TRUSTED_PROXY: X-Forwarded-For names the client only when the peer is the trusted proxy.

Served by real waitress with the options `python app.py` uses (`l1web/web/serving.py`).
"""

import logging
import threading

import pytest
import requests
from waitress import create_server

from l1web.web import create_app
from l1web.web.serving import waitress_options

FORWARDED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


@pytest.fixture()
def serve(settings, state):
    servers = []

    def start(**changes) -> str:
        configured = settings.with_changes(host="127.0.0.1", port=0, **changes)
        server = create_server(create_app(configured, state=state), **{**waitress_options(configured), "threads": 2})
        threading.Thread(target=server.run, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.effective_port}"

    yield start
    for server in servers:
        server.close()


def auth_rate_buckets(redis_client) -> set[str]:
    return {key.split(":")[-2] for key in redis_client.keys("artdag:rate:auth:addr:*")}


def test_a_trusted_proxy_names_the_client_for_rate_limits_and_logs(serve, redis_client, caplog):
    url = serve(trusted_proxy="127.0.0.1")
    with caplog.at_level(logging.INFO, logger="l1web.access"):
        requests.get(f"{url}/auth", params={"auth_token": "a.b.c"}, headers=FORWARDED, timeout=10)
    assert auth_rate_buckets(redis_client) == {"203.0.113.7"}
    assert any("addr=203.0.113.7" in r.getMessage() for r in caplog.records if r.name == "l1web.access")


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(serve, redis_client, caplog):
    url = serve(trusted_proxy="127.0.0.2")  # not the peer these requests come from
    with caplog.at_level(logging.INFO, logger="l1web.access"):
        requests.get(f"{url}/auth", params={"auth_token": "a.b.c"}, headers=FORWARDED, timeout=10)
    assert auth_rate_buckets(redis_client) == {"127.0.0.1"}
    lines = [r.getMessage() for r in caplog.records if r.name == "l1web.access"]
    assert lines and all("addr=127.0.0.1" in line and "203.0.113.7" not in line for line in lines)


def test_without_the_setting_the_peer_is_the_client(serve, redis_client):
    url = serve()
    requests.get(f"{url}/auth", params={"auth_token": "a.b.c"}, headers=FORWARDED, timeout=10)
    assert auth_rate_buckets(redis_client) == {"127.0.0.1"}


def test_a_client_cannot_dodge_the_address_limit_by_forging_the_header(serve, redis_client):
    url = serve(auth_rate_limit=2)
    answers = [requests.get(f"{url}/auth", params={"auth_token": "a.b.c"}, timeout=10,
                            headers={"X-Forwarded-For": f"198.51.100.{i}"}) for i in range(4)]
    assert answers[-1].status_code == 429
    assert int(answers[-1].headers["Retry-After"]) > 0
