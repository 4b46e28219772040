"""Run-end notifications with real workers and a real receiver on loopback (allowed here by the
operator setting NOTIFY_ALLOW_PRIVATE, which the tests turn on): one signed delivery per run end,
retries with backoff when the receiver fails, deliveries shown on the run page; refusals."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from l1web import notify
from tests.test_runs_workers import put_image, put_video

SECRET = "a-webhook-secret-of-alice-0123456789"
WORKER_ENV = {"NOTIFY_ALLOW_PRIVATE": "1", "NOTIFY_RETRY_INTERVALS": "1,1"}


@pytest.fixture()
def settings(settings):
    return settings.with_changes(notify_allow_private=True)


class Receiver:
    """An HTTP server on loopback recording every POST; answers the queued statuses, then 200."""

    def __init__(self) -> None:
        self.got: list[tuple[dict, bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.got.append(({k: v for k, v in self.headers.items()}, body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?from=l1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.got) >= count, self.got

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver():
    server = Receiver()
    yield server
    server.stop()


def submit(client, digest: str, url: str) -> dict:
    answer = client.post("/runs", json={"recipe": "invert", "inputs": [digest], "notify_url": url})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def wait_run(client, run_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/runs/{run_id}", headers={"Accept": "application/json"}).get_json()
        if run["status"] not in ("pending", "running"):
            return run
        time.sleep(0.1)
    raise AssertionError("run did not end")


def test_one_signed_delivery_per_run_end(alice_client, app, receiver, start_worker, tmp_path):
    made = alice_client.put("/notify", json={"secret": SECRET})
    assert made.status_code == 200 and made.get_json()["secret_set"]
    digest = put_image(app.extensions["l1"].store, tmp_path)
    start_worker(env=WORKER_ENV)
    run = wait_run(alice_client, submit(alice_client, digest, receiver.url)["id"])
    assert run["status"] == "completed"
    receiver.wait(1)
    time.sleep(3)  # longer than the retry backoff: nothing more arrives
    assert len(receiver.got) == 1
    headers, body = receiver.got[0]
    assert headers["Content-Type"] == "application/json"
    assert notify.verify(SECRET, headers[notify.TIMESTAMP_HEADER], body, headers[notify.SIGNATURE_HEADER])
    sent = json.loads(body)
    assert sent == {"event": "run.finished", "run_id": run["id"], "status": "completed", "recipe": "invert",
                    "output_hash": run["output_hash"], "error": None, "attempt": 1, "finished": run["finished"]}
    assert headers[notify.DELIVERY_HEADER] == f"{run['id']}.1"
    # Tampering fails verification: the body, the signature, or a replayed old timestamp.
    assert not notify.verify(SECRET, headers[notify.TIMESTAMP_HEADER], body.replace(b"completed", b"failed"),
                             headers[notify.SIGNATURE_HEADER])
    forged = headers[notify.SIGNATURE_HEADER][:-4] + "0000"
    assert not notify.verify(SECRET, headers[notify.TIMESTAMP_HEADER], body, forged)
    assert not notify.verify("another-secret-entirely-123", headers[notify.TIMESTAMP_HEADER], body,
                             headers[notify.SIGNATURE_HEADER])
    late = int(headers[notify.TIMESTAMP_HEADER]) + notify.REPLAY_WINDOW + 1
    assert not notify.verify(SECRET, headers[notify.TIMESTAMP_HEADER], body, headers[notify.SIGNATURE_HEADER],
                             now=late)
    page = alice_client.get(f"/run/{run['id']}", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "Notification" in page and "delivered</span> 200" in page


def test_a_failing_receiver_is_retried_with_backoff_and_a_default_url_is_used(alice_client, app, receiver,
                                                                               start_worker, tmp_path):
    assert alice_client.put("/notify", json={"secret": SECRET, "url": receiver.url}).status_code == 200
    receiver.statuses = [503]
    digest = put_image(app.extensions["l1"].store, tmp_path, seed=7)
    start_worker(env=WORKER_ENV)
    answer = alice_client.post("/runs", json={"recipe": "invert", "inputs": [digest]})  # the default URL
    run = wait_run(alice_client, answer.get_json()["id"])
    receiver.wait(2, timeout=60)
    time.sleep(2.5)
    assert len(receiver.got) == 2
    first, second = receiver.got
    assert first[0][notify.DELIVERY_HEADER] == second[0][notify.DELIVERY_HEADER] == f"{run['id']}.1"
    assert notify.verify(SECRET, second[0][notify.TIMESTAMP_HEADER], second[1], second[0][notify.SIGNATURE_HEADER])
    deliveries = app.extensions["l1"].state.notify.deliveries(run["id"])
    assert [(d["try"], d["ok"]) for d in deliveries] == [(1, False), (2, True)]
    assert deliveries[0]["error"] == "the receiver answered 503"
    page = alice_client.get(f"/run/{run['id']}", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "the receiver answered 503" in page and "delivered</span> 200" in page


def test_bad_targets_are_refused_with_nothing_written(alice_client, bob_client, app, tmp_path):
    digest = put_image(app.extensions["l1"].store, tmp_path, seed=3)
    no_secret = bob_client.post("/runs", json={"recipe": "invert", "inputs": [digest],
                                               "notify_url": "http://127.0.0.1:9/x"})
    assert no_secret.status_code in (400, 404)  # bob may not even use alice's upload: 404 first, or 400
    assert alice_client.put("/notify", json={"secret": "short"}).status_code == 400
    assert alice_client.get("/notify").get_json() == {"url": None, "secret_set": False}
    answer = alice_client.put("/notify", json={})  # no secret given: one is made and shown once
    assert answer.status_code == 200 and len(answer.get_json()["secret"]) >= notify.MIN_SECRET
    assert "secret" not in alice_client.get("/notify").get_json()
    for url, words in [("ftp://example.org/x", "http"), ("http:///nohost", "host"),
                       ("http://user:pw@example.org/", "password"), ("x" * 3000, "2048")]:
        refused = alice_client.post("/runs", json={"recipe": "invert", "inputs": [digest], "notify_url": url})
        assert refused.status_code == 400 and words in refused.get_json()["message"], (url, refused.get_json())
        assert refused.get_json()["field"] == "notify_url"
    assert app.extensions["l1"].state.runs.page()[1] == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "[::1]", "0.0.0.0",
                                  "localhost"])
def test_loopback_and_private_targets_are_refused_unless_allowed(host):
    with pytest.raises(notify.TargetRefused, match="private"):
        notify.resolve(f"http://{host}/hook", allow_private=False)
    assert notify.resolve(f"http://{host}/hook", allow_private=True)


def test_every_way_a_run_ends_sends_exactly_one_delivery(alice_client, app, receiver, start_worker, tmp_path):
    """Cancelled (paused, and mid-render), failed, completed after a rerun: one signed delivery per
    end, with that end's status; deleting a live run is refused, so it is no way to end one."""
    assert alice_client.put("/notify", json={"secret": SECRET, "url": receiver.url}).status_code == 200
    store = app.extensions["l1"].store
    start_worker(env=WORKER_ENV)

    def sent(run_id: str) -> list[dict]:
        out = []
        for headers, body in receiver.got:
            assert notify.verify(SECRET, headers[notify.TIMESTAMP_HEADER], body, headers[notify.SIGNATURE_HEADER])
            if json.loads(body)["run_id"] == run_id:
                out.append({**json.loads(body), "delivery": headers[notify.DELIVERY_HEADER]})
        return out

    # A paused run: deleting it is refused (it is live), cancelling it ends it.
    paused = alice_client.post("/runs", json={"recipe": "invert", "inputs": [put_image(store, tmp_path, seed=11)],
                                              "paused": True}).get_json()
    assert alice_client.delete(f"/runs/{paused['id']}").status_code == 409
    assert alice_client.post(f"/runs/{paused['id']}/cancel").status_code == 200
    assert alice_client.post(f"/runs/{paused['id']}/cancel").status_code == 409  # ended once
    receiver.wait(1)
    [cancelled] = sent(paused["id"])
    assert cancelled["status"] == "cancelled" and cancelled["error"] == "cancelled by the user"
    assert cancelled["delivery"] == f"{paused['id']}.1" and cancelled["output_hash"] is None
    # Run again, it completes: its second end is delivered too, as attempt 2.
    assert alice_client.post(f"/runs/{paused['id']}/rerun").status_code == 200
    done = wait_run(alice_client, paused["id"])
    assert done["status"] == "completed"
    receiver.wait(2)
    # A video run cancelled while its step renders (the stopped step must not end it again).
    clip = put_video(store, tmp_path, seconds=20, size="640x360")
    rendering = alice_client.post("/runs", json={"recipe": "blur", "inputs": [clip],
                                                 "params": {"sigma": 4}}).get_json()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        run = alice_client.get(f"/runs/{rendering['id']}", headers={"Accept": "application/json"}).get_json()
        if any(s["status"] == "running" and s["type"] != "SOURCE" for s in run["steps"]):
            break
        time.sleep(0.1)
    assert alice_client.post(f"/runs/{rendering['id']}/cancel").status_code == 200
    # A run that fails (its input is no picture).
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not a picture at all" * 40)
    failing = submit(alice_client, store.put_file(junk, source="test"), receiver.url)
    assert wait_run(alice_client, failing["id"])["status"] == "failed"
    receiver.wait(4)
    time.sleep(4)  # longer than a retry's backoff and a stopped step's end: nothing more arrives
    assert [(s["status"], s["delivery"]) for s in sent(paused["id"])] == [
        ("cancelled", f"{paused['id']}.1"), ("completed", f"{paused['id']}.2")]
    assert sent(paused["id"])[1]["output_hash"] == done["output_hash"]
    assert [s["status"] for s in sent(rendering["id"])] == ["cancelled"]
    [failed] = sent(failing["id"])
    assert failed["status"] == "failed" and failed["error"]
    assert len(receiver.got) == 4
