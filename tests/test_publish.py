"""Publishing a completed run to L2: the real dev L2 over HTTP records it, L1 then refuses deletes.

Runs complete in the test's own process (`run_jobs`; a real worker process for the browser test);
the L2 answers come from the session's dev L2 (a real waitress server), a port nobody listens on,
or a real server that answers too slowly.
"""

from __future__ import annotations

import logging
import time

import pytest
import requests
from playwright.sync_api import Page, expect
from test_browser_signin import CHROMIUM_ARGS
from test_ops import completed_run, put_image

from devl2.testing import LiveServer
from l1web.devtools.processes import free_port
from l1web.web import create_app

JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html"}


def published_on_l2(dev_l2, run_id: str) -> list[dict]:
    listing = requests.get(f"{dev_l2.url}/published", headers=JSON, timeout=5).json()["published"]
    return [item for item in listing if item["run_id"] == run_id]


def test_publish_then_deletes_are_refused(app, alice_client, run_jobs, tmp_path, dev_l2, settings, state, caplog):
    run = completed_run(app, alice_client, run_jobs, tmp_path)
    output = run["output_hash"]
    caplog.set_level(logging.INFO)
    answer = alice_client.post(f"/runs/{run['id']}/publish")
    assert answer.status_code == 201, answer.json
    assert answer.json["published"] is True
    assert answer.json["output_hash"] == output
    assert answer.json["l2"] == dev_l2.url

    recorded = published_on_l2(dev_l2, run["id"])
    assert len(recorded) == 1
    assert recorded[0]["username"] == "alice"
    assert recorded[0]["output_hash"] == output
    assert recorded[0]["l1"] == settings.l1_public_url
    full = requests.get(recorded[0]["url"], timeout=5).json()
    assert full["provenance"]["output"]["content_hash"] == output
    assert full["provenance"]["task_id"] == run["id"]
    assert answer.json["l2_url"] == recorded[0]["url"]

    assert alice_client.get(f"/runs/{run['id']}").json["published"] is True
    assert state.cache.is_published(output)
    refused = alice_client.delete(f"/runs/{run['id']}")
    assert refused.status_code == 409
    assert "published" in refused.json["message"]
    refused = alice_client.delete(f"/cache/{output}")
    assert refused.status_code == 409
    assert "published" in refused.json["message"]
    assert state.runs.get(run["id"]) is not None
    assert state.cache.exists(output)
    for forced in (alice_client.post(f"/runs/{run['id']}/rerun"),
                   alice_client.post("/runs", json={"recipe": "invert", "inputs": run["input_hashes"], "force": True})):
        assert forced.status_code == 409 and "published" in forced.json["message"]
    assert alice_client.get(f"/runs/{run['id']}").json["output_hash"] == output

    # Publishing again changes nothing, here or on L2.
    again = alice_client.post(f"/runs/{run['id']}/publish")
    assert again.status_code == 200
    assert len(published_on_l2(dev_l2, run["id"])) == 1
    assert alice_client.token not in caplog.text


def test_publish_over_http_with_a_bearer_token(app, live_l1, alice_client, run_jobs, tmp_path, dev_l2):
    run = completed_run(app, alice_client, run_jobs, tmp_path)
    token = dev_l2.mint("alice", live_l1.url)
    answer = requests.post(f"{live_l1.url}/runs/{run['id']}/publish", headers={"Authorization": f"Bearer {token}"},
                           timeout=30)
    assert answer.status_code == 201, answer.text
    recorded = published_on_l2(dev_l2, run["id"])
    assert [item["l1"] for item in recorded] == [live_l1.url]
    deleted = requests.delete(f"{live_l1.url}/runs/{run['id']}", headers={"Authorization": f"Bearer {token}"},
                              timeout=30)
    assert deleted.status_code == 409
    assert "published" in deleted.json()["message"]


def test_run_page_button_publishes_with_the_form_token(app, alice_client, admin_client, run_jobs, tmp_path,
                                                     dev_l2):
    run = completed_run(app, alice_client, run_jobs, tmp_path)
    page = alice_client.get(f"/run/{run['id']}", headers=HTML).get_data(as_text=True)
    assert f'action="/run/{run["id"]}/publish"' in page
    assert f'name="csrf_token" value="{alice_client.csrf}"' in page
    assert "Only @alice can publish it" in admin_client.get(f"/run/{run['id']}", headers=HTML).get_data(as_text=True)

    csrf, alice_client.csrf = alice_client.csrf, ""  # send it as the form field only, as the page does
    assert alice_client.post(f"/run/{run['id']}/publish", data={}).status_code == 403
    assert published_on_l2(dev_l2, run["id"]) == []
    answer = alice_client.post(f"/run/{run['id']}/publish", data={"csrf_token": csrf})
    alice_client.csrf = csrf
    assert answer.status_code == 303
    page = alice_client.get(answer.headers["Location"], headers=HTML).get_data(as_text=True)
    assert "Published to L2" in page
    assert f'action="/run/{run["id"]}/publish"' not in page
    assert len(published_on_l2(dev_l2, run["id"])) == 1


def test_only_the_owner_publishes_only_completed_runs(app, alice_client, bob_client, admin_client, run_jobs,
                                                      tmp_path, dev_l2):
    pending = alice_client.post("/runs", json={"recipe": "invert", "inputs": [put_image(app, tmp_path)]}).json
    answer = alice_client.post(f"/runs/{pending['id']}/publish")
    assert answer.status_code == 409
    assert "only a completed run" in answer.json["message"]
    assert bob_client.post(f"/runs/{pending['id']}/publish").status_code == 404
    run_jobs()
    deadline = time.monotonic() + 120
    while alice_client.get(f"/runs/{pending['id']}").json["status"] != "completed":
        assert time.monotonic() < deadline, "the run did not complete"
        time.sleep(0.1)
    refused = admin_client.post(f"/runs/{pending['id']}/publish")
    assert refused.status_code == 403
    assert "owner" in refused.json["message"]
    assert published_on_l2(dev_l2, pending["id"]) == []


def _l1_with_l2(settings, state, l2_url: str, **changes):
    return create_app(settings.with_changes(l2_servers=(l2_url,), **changes), state=state)


def test_l2_down_gives_503_and_marks_nothing(app, alice_client, run_jobs, tmp_path, settings, state):
    run = completed_run(app, alice_client, run_jobs, tmp_path)
    # Same Redis: alice's token was verified at sign-in and is remembered, so only publishing needs L2.
    down = _l1_with_l2(settings, state, f"http://127.0.0.1:{free_port()}").test_client()
    answer = down.post(f"/runs/{run['id']}/publish", headers={"Authorization": f"Bearer {alice_client.token}"})
    assert answer.status_code == 503
    assert "unreachable" in answer.json["message"] and "not published" in answer.json["message"]
    assert state.runs.get(run["id"]).get("published") != "1"
    assert not state.cache.is_published(run["output_hash"])


def test_slow_l2_gives_504_and_marks_nothing(app, alice_client, run_jobs, tmp_path, settings, state):
    run = completed_run(app, alice_client, run_jobs, tmp_path)

    def slow(environ, start_response):
        time.sleep(2)
        start_response("201 Created", [("Content-Type", "application/json")])
        return [b'{"id": 1}']

    server = LiveServer(slow)
    try:
        client = _l1_with_l2(settings, state, server.url, l2_publish_timeout=0.5).test_client()
        answer = client.post(f"/runs/{run['id']}/publish", headers={"Authorization": f"Bearer {alice_client.token}"})
    finally:
        server.stop()
    assert answer.status_code == 504
    assert "did not answer within 0.5 s" in answer.json["message"]
    assert state.runs.get(run["id"]).get("published") != "1"
    assert alice_client.delete(f"/runs/{run['id']}").status_code == 200


def test_l2_dripping_its_publication_answer_is_cut_off_at_the_deadline(app, alice_client, run_jobs, tmp_path,
                                                                       settings, state):
    """Each byte arrives well within a read timeout, so only a whole-exchange deadline stops it."""
    run = completed_run(app, alice_client, run_jobs, tmp_path)

    def drip(environ, start_response):
        start_response("201 Created", [("Content-Type", "application/json"), ("Content-Length", "1000")])

        def body():
            for _ in range(1000):
                time.sleep(0.2)
                yield b" "

        return body()

    server = LiveServer(drip)
    try:
        client = _l1_with_l2(settings, state, server.url, l2_publish_timeout=1.0).test_client()
        started = time.monotonic()
        answer = client.post(f"/runs/{run['id']}/publish", headers={"Authorization": f"Bearer {alice_client.token}"})
        took = time.monotonic() - started
    finally:
        server.stop()
    assert answer.status_code == 504, answer.json
    assert "did not answer within 1 s" in answer.json["message"]
    assert took < 4, took  # the deadline, not 1000 bytes × 0.2 s
    assert state.runs.get(run["id"]).get("published") != "1"
    assert not state.cache.is_published(run["output_hash"])


def _answering(status: str, body: bytes, content_type: str = "application/json", extra=()):
    def app(environ, start_response):
        start_response(status, [("Content-Type", content_type), *extra])
        return [body]

    return app


def test_unusable_l2_answers_give_502_and_mark_nothing(app, alice_client, run_jobs, tmp_path, settings, state):
    run = completed_run(app, alice_client, run_jobs, tmp_path)
    bearer = {"Authorization": f"Bearer {alice_client.token}"}
    cases = [
        (_answering("500 Internal Server Error", b"<h1>oops</h1>", "text/html"), "answered 500"),
        (_answering("302 Found", b"", extra=[("Location", "http://elsewhere/publish")]), "answered 302"),
        (_answering("200 OK", b'{"ok": true}'), "no usable publication record"),
        (_answering("200 OK", b'{"id": "' + b"x" * 20000 + b'"}'), "no usable publication record"),
        (_answering("400 Bad Request", b'{"error": "bad_request", "message": "provenance too odd"}'),
         "provenance too odd"),
    ]
    for wsgi, expected in cases:
        server = LiveServer(wsgi)
        try:
            answer = _l1_with_l2(settings, state, server.url).test_client().post(
                f"/runs/{run['id']}/publish", headers=bearer)
        finally:
            server.stop()
        assert answer.status_code == 502, (expected, answer.json)
        assert expected in answer.json["message"]
    assert state.runs.get(run["id"]).get("published") != "1"
    assert not state.cache.is_published(run["output_hash"])


def test_l2_refusing_the_token_marks_nothing(app, bob_client, state, dev_l2, run_jobs, tmp_path):
    run = completed_run(app, bob_client, run_jobs, tmp_path, owner="bob")  # bob may use only his own
    dev_l2.revoke_user("bob")  # L1 still trusts its recent verification; L2 does not
    answer = bob_client.post(f"/runs/{run['id']}/publish")
    assert answer.status_code == 403
    assert "L2 refused the publication" in answer.json["message"]
    assert state.runs.get(run["id"]).get("published") != "1"


def test_dev_l2_checks_what_it_records(dev_l2):
    token = dev_l2.mint("alice", "http://127.0.0.1:8100")
    body = {"l1": "http://127.0.0.1:8100", "run_id": "a" * 64, "output_hash": "b" * 64,
            "provenance": {"output": {"content_hash": "b" * 64}}}
    assert requests.post(f"{dev_l2.url}/publish", json=body, timeout=5).status_code == 401
    wrong_l1 = requests.post(f"{dev_l2.url}/publish", json={**body, "l1": "http://elsewhere"},
                             headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert wrong_l1.status_code == 401
    assert "wrong_l1" in wrong_l1.json()["message"]
    mismatch = requests.post(f"{dev_l2.url}/publish", json={**body, "output_hash": "c" * 64},
                             headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert mismatch.status_code == 400
    assert "another output" in mismatch.json()["message"]
    bad = requests.post(f"{dev_l2.url}/publish", json={**body, "run_id": "../x"},
                        headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert bad.status_code == 400
    assert published_on_l2(dev_l2, "a" * 64) == []
    ok = requests.post(f"{dev_l2.url}/publish", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert ok.status_code == 201
    page = requests.get(f"{dev_l2.url}/published", headers=HTML, timeout=5).text
    assert "b" * 16 in page and "@alice" in page


# In a browser --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_ARGS}


@pytest.mark.browser
def test_publish_button_in_chromium(page: Page, app, live_l1, dev_l2, start_worker, tmp_path):
    token = dev_l2.mint("alice", live_l1.url)
    start_worker()
    digest = put_image(app, tmp_path)
    run = requests.post(f"{live_l1.url}/runs", json={"recipe": "invert", "inputs": [digest]},
                        headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    deadline = time.monotonic() + 120
    while requests.get(f"{live_l1.url}/runs/{run['id']}", headers={"Authorization": f"Bearer {token}"},
                       timeout=30).json()["status"] != "completed":
        assert time.monotonic() < deadline, "the run did not complete"
        time.sleep(0.2)
    page.goto(f"{live_l1.url}/auth?auth_token={dev_l2.mint('alice', live_l1.url)}&next=/run/{run['id']}")
    page.get_by_role("button", name="Publish to L2").click()
    expect(page.get_by_role("status").filter(has_text="Published to L2")).to_be_visible()
    expect(page.get_by_role("button", name="Publish to L2")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete run")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "run-published.png"), full_page=True)
    assert [item["l1"] for item in published_on_l2(dev_l2, run["id"])] == [live_l1.url]
