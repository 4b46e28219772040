"""The runs JSON API: submit, list, read, cancel, re-run, delete, provenance."""

import io
import threading
import time

import pytest
import rq
from PIL import Image

from l1web.engine.canonical import sha3_json
from l1web.lifecycle import RunEvent
from l1web.runs.model import RunStatus

JSON = {"Accept": "application/json"}


def png(colour=(200, 40, 40), size=(32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def put_image(app, owner="alice", colour=(200, 40, 40)) -> str:
    return app.extensions["l1"].store.put_bytes(png(colour), source="upload", owner=owner, name="red.png").digest


def queued(app, name="runs") -> int:
    return rq.Queue(name, connection=app.extensions["l1"].rq_connection).count


def make_run(state, owner="alice", status=RunStatus.COMPLETED, seed="1", **extra) -> dict:
    run = {"id": sha3_json({"seed": seed, "owner": owner}), "status": status, "created": 1_700_000_000 + int(seed),
           "owner": owner, "recipe_id": "r" * 64, "recipe_name": "invert", "config_id": "",
           "input_hashes": {"input": "a" * 64}, "params": {}, "output_name": "", "attempt": 1, **extra}
    assert state.runs.create(run)
    return state.runs.get(run["id"])


def test_submitting_an_effect_run_creates_it_and_enqueues_its_plan(app, alice_client):
    digest = put_image(app)
    response = alice_client.post("/runs", json={"recipe": "invert", "inputs": [digest], "output_name": "inverted"})
    assert response.status_code == 201
    body = response.json
    assert body["status"] == "pending" and body["owner"] == "alice" and body["recipe_name"] == "invert"
    assert body["input_hashes"] == {"input": digest}
    assert body["steps"] == [] and body["links"]["page"] == f"/run/{body['id']}"
    assert queued(app) == 1


def test_identical_submission_returns_the_existing_run(app, alice_client):
    digest = put_image(app)
    first = alice_client.post("/runs", json={"recipe": "invert", "inputs": [digest]})
    again = alice_client.post("/runs", json={"recipe": "invert", "inputs": {"input": digest}})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["id"] == first.json["id"]
    assert queued(app) == 1


def test_a_new_runs_answer_is_the_stored_run_held_inputs_and_filed_plan(app, alice_client, state):
    digest = put_image(app)
    created = alice_client.post("/runs", json={"recipe": "invert", "inputs": [digest], "priority": -1}).json
    read = alice_client.get(f"/runs/{created['id']}", headers=JSON).json
    assert created == read, "the 201 answer is built from what was written, not read back"
    assert state.cache.refs(digest) == {f"run:{created['id']}"}
    assert created["id"] in {r["id"] for r in state.runs.page(user="alice")[0]}
    user, piece = state.fair.take("plan")
    assert user == "alice" and piece["run"] == created["id"] and piece["inline"] is True


class RoundTrips:
    """Counts what this process sends to Redis (a command or a pipeline: one round trip each)."""

    def __init__(self, monkeypatch):
        from redis.connection import AbstractConnection

        self.count, send = 0, AbstractConnection.send_packed_command

        def counted(connection, command, check_health=True):
            self.count += 1
            return send(connection, command, check_health)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)


@pytest.mark.parametrize("via", ["cookie", "bearer"])
def test_a_submission_costs_four_redis_round_trips(app, alice_client, monkeypatch, via):
    # Issue 19: sign-in (1); the recipe name, the inputs' access and an identical run (1);
    # the rate limit (1); the run written with its inputs held, its plan filed and RQ's token (1).
    headers = {"Authorization": f"Bearer {alice_client.token}"} if via == "bearer" else {}
    alice_client.post("/runs", json={"recipe": "invert", "inputs": [put_image(app, colour=(1, 2, 3))]},
                      headers=headers)  # scripts loaded, connections open
    digest = put_image(app)
    trips = RoundTrips(monkeypatch)
    assert alice_client.post("/runs", json={"recipe": "invert", "inputs": [digest]}, headers=headers).status_code == 201
    assert trips.count <= 4


def test_a_new_runs_plan_token_is_written_with_the_run_and_never_without_it(app, state):
    from l1web.jobs import queues
    from l1web.state.fair import plan_piece

    rq_connection = app.extensions["l1"].rq_connection
    digest = put_image(app)
    run = {"id": "c" * 64, "status": RunStatus.PENDING, "created": 1.0, "owner": "alice", "input_hashes": {}}
    piece = plan_piece(run["id"], 1, render_inline=True)
    jobs_before = set(rq_connection.keys("rq:job:*"))
    gone = "f" * 64
    assert state.submissions.create(run, [gone], piece=piece, then=queues.token_commands(rq_connection, "plan")) == gone
    assert queued(app) == 0 and set(rq_connection.keys("rq:job:*")) == jobs_before  # nothing written
    assert state.runs.get(run["id"]) is None and state.fair.waiting("plan") == 0
    assert state.submissions.create(run, [digest], piece=piece, then=queues.token_commands(rq_connection, "plan")) == 1
    assert queued(app) == 1
    job = queues.queue(rq_connection, queues.TOKEN_QUEUES["plan"]).jobs[0]
    assert job.func_name == "l1web.jobs.runs.take_work" and list(job.args) == ["plan"]
    assert job.id.startswith(queues.token_prefix("plan")) and job.get_status() == rq.job.JobStatus.QUEUED
    again = queues.token_commands(rq_connection, "plan")
    assert state.submissions.create(run, [digest], piece=piece, then=again) == 0  # exists: no second token
    assert queued(app) == 1 and state.fair.waiting("plan") == 1


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"recipe": "no-such-effect", "inputs": ["x"]}, 404, "recipe"),
    ({"recipe": "invert", "inputs": ["f" * 64]}, 404, "inputs.input"),
    ({"recipe": "invert", "inputs": ["not-an-asset"]}, 404, "inputs.input"),
    ({"recipe": "invert", "inputs": []}, 400, "inputs"),
    ({"recipe": "invert", "inputs": 7}, 400, "inputs"),
    ({"recipe": "invert", "inputs": [], "colour": "red"}, 400, "colour"),
    ({"recipe": "invert", "inputs": [], "output_name": "<b>x</b>"}, 400, "output_name"),
    ({"recipe": "invert", "inputs": [], "params": {"strength": "lots"}}, None, None),
])
def test_bad_submissions_are_refused_and_nothing_is_enqueued(app, alice_client, redis_client, body, status, field):
    put_image(app)
    before = set(redis_client.keys("*"))
    response = alice_client.post("/runs", json=body)
    assert response.status_code == (status or response.status_code) and 400 <= response.status_code < 500
    assert response.json["message"]
    if field:
        assert response.json["field"] == field
    assert queued(app) == 0
    assert set(redis_client.keys("*")) == before


def test_a_body_that_is_not_a_json_object_is_refused(app, alice_client):
    response = alice_client.post("/runs", data="recipe=invert", headers={**JSON, "Content-Type": "text/plain"})
    assert response.status_code == 400
    assert response.json["error"] == "bad_request"
    assert queued(app) == 0


def test_anonymous_submission_is_unauthorized(app):
    response = app.test_client().post("/runs", json={"recipe": "invert", "inputs": []})
    assert response.status_code == 401
    assert queued(app) == 0


def test_listing_shows_only_the_users_own_runs_newest_first(alice_client, state):
    older = make_run(state, seed="1")
    newer = make_run(state, seed="2", status=RunStatus.FAILED)
    make_run(state, owner="bob", seed="3")
    response = alice_client.get("/runs", headers=JSON)
    assert response.status_code == 200
    assert [r["id"] for r in response.json["runs"]] == [newer["id"], older["id"]]
    assert response.json["total"] == 2
    assert response.json["runs"][0]["created"] == 1_700_000_002.0


def test_listings_leave_out_the_large_fields_that_the_run_itself_carries(alice_client, state):
    record = {"task_id": "x", "output": {"name": "out", "content_hash": "b" * 64}}
    run = make_run(state, output_hash="b" * 64, provenance=record, recipe={"name": "invert"},
                   error="quoted \"text\" and ünïcode")
    listed = alice_client.get("/runs", headers=JSON).json["runs"]
    assert len(listed) == 1 and "provenance" not in listed[0] and "recipe" not in listed[0]
    assert listed[0]["output_hash"] == "b" * 64 and listed[0]["input_hashes"] == {"input": "a" * 64}
    assert listed[0]["error"] == run["error"]
    assert alice_client.get(f"/runs/{run['id']}", headers=JSON).json["provenance"] == record


def test_a_user_cannot_list_someone_elses_runs(alice_client, state):
    make_run(state, owner="bob")
    response = alice_client.get("/runs?user=bob", headers=JSON)
    assert response.json["runs"] == [] and response.json["total"] == 0


def test_admins_list_everyone_and_may_filter_by_user(admin_client, state):
    make_run(state, owner="alice", seed="1")
    bobs = make_run(state, owner="bob", seed="2")
    assert admin_client.get("/runs", headers=JSON).json["total"] == 2
    assert [r["id"] for r in admin_client.get("/runs?user=bob", headers=JSON).json["runs"]] == [bobs["id"]]


def test_listing_filters_by_status_and_pages(alice_client, state):
    for seed in range(5):
        make_run(state, seed=str(seed), status=RunStatus.FAILED if seed % 2 else RunStatus.COMPLETED)
    failed = alice_client.get("/runs?status=failed", headers=JSON).json
    assert failed["total"] == 2 and {r["status"] for r in failed["runs"]} == {"failed"}
    first = alice_client.get("/runs?limit=2", headers=JSON).json
    assert len(first["runs"]) == 2 and first["next"] == "/runs?limit=2&offset=2"
    last = alice_client.get("/runs?limit=2&offset=4", headers=JSON).json
    assert len(last["runs"]) == 1 and last["next"] is None


@pytest.mark.parametrize("query", ["status=done", "limit=0", "limit=100000", "offset=-1", "limit=ten"])
def test_bad_listing_queries_are_refused(alice_client, query):
    response = alice_client.get(f"/runs?{query}", headers=JSON)
    assert response.status_code == 400 and response.json["message"]


def test_reading_a_run_includes_its_steps(alice_client, state):
    run = make_run(state)
    state.runs.init_steps(run["id"], [{"step_id": "input", "type": "SOURCE", "inputs": [], "level": 0}],
                          {"input": {"status": "cached"}})
    body = alice_client.get(f"/runs/{run['id']}", headers=JSON).json
    assert body["id"] == run["id"]
    assert body["steps"][0]["status"] == "cached"


def test_someone_elses_run_is_not_found(alice_client, state):
    bobs = make_run(state, owner="bob")
    for method, path in [("get", ""), ("delete", ""), ("post", "/cancel"), ("post", "/rerun"),
                         ("get", "/provenance")]:
        response = getattr(alice_client, method)(f"/runs/{bobs['id']}{path}", headers=JSON)
        assert response.status_code == 404, (method, path)
    assert state.runs.get(bobs["id"])["status"] == "completed"


def test_admins_can_read_anyones_run(admin_client, state):
    bobs = make_run(state, owner="bob")
    assert admin_client.get(f"/runs/{bobs['id']}", headers=JSON).status_code == 200


def test_browsers_are_sent_from_the_api_url_to_the_run_page(alice_client, state):
    run = make_run(state)
    response = alice_client.get(f"/runs/{run['id']}", headers={"Accept": "text/html"})
    assert response.status_code == 302 and response.location == f"/run/{run['id']}"


def test_failed_runs_can_be_deleted(alice_client, state):
    run = make_run(state, status=RunStatus.FAILED)
    response = alice_client.delete(f"/runs/{run['id']}", headers=JSON)
    assert response.status_code == 200 and response.json["deleted"] is True
    assert state.runs.get(run["id"]) is None


def test_live_and_published_runs_cannot_be_deleted(alice_client, state):
    running = make_run(state, status=RunStatus.RUNNING, seed="1")
    published = make_run(state, seed="2", published="1")
    for run in (running, published):
        response = alice_client.delete(f"/runs/{run['id']}", headers=JSON)
        assert response.status_code == 409 and response.json["message"]
        assert state.runs.get(run["id"]) is not None


def test_cancelling_a_pending_run_cancels_it_once(alice_client, state):
    run = make_run(state, status=RunStatus.PENDING)
    response = alice_client.post(f"/runs/{run['id']}/cancel", headers=JSON)
    assert response.status_code == 200 and response.json["status"] == "cancelled"
    assert alice_client.post(f"/runs/{run['id']}/cancel", headers=JSON).status_code == 409


def test_rerunning_a_failed_run_enqueues_a_new_attempt(app, alice_client, state):
    run = make_run(state, status=RunStatus.FAILED, error="boom")
    response = alice_client.post(f"/runs/{run['id']}/rerun", headers=JSON)
    assert response.status_code == 200
    assert response.json["status"] == "pending" and response.json["attempt"] == 2
    assert queued(app) == 1


def test_completed_runs_cannot_be_rerun_without_force(app, alice_client, state):
    run = make_run(state)
    assert alice_client.post(f"/runs/{run['id']}/rerun", headers=JSON).status_code == 409
    assert queued(app) == 0


def test_provenance_is_served_as_json_and_as_a_download(alice_client, state):
    record = {"task_id": "x", "output": {"name": "out", "content_hash": "b" * 64}}
    run = make_run(state, output_hash="b" * 64, provenance=record)
    assert alice_client.get(f"/runs/{run['id']}/provenance", headers=JSON).json == record
    download = alice_client.get(f"/runs/{run['id']}/provenance?download=1", headers=JSON)
    assert download.headers["Content-Disposition"].startswith("attachment; filename=\"provenance-")


def test_provenance_of_an_unfinished_run_is_a_conflict(alice_client, state):
    run = make_run(state, status=RunStatus.RUNNING)
    response = alice_client.get(f"/runs/{run['id']}/provenance", headers=JSON)
    assert response.status_code == 409 and "running" in response.json["message"]


def test_run_submission_is_rate_limited_per_user_and_changes_nothing_when_refused(app, alice_client):
    app.extensions["l1"].settings = app.extensions["l1"].settings.with_changes(run_rate_limit=1, run_rate_burst=1)
    first, second = put_image(app), put_image(app, colour=(10, 200, 10))
    assert alice_client.post("/runs", json={"recipe": "invert", "inputs": [first]}).status_code == 201
    refused = alice_client.post("/runs", json={"recipe": "invert", "inputs": [second]})
    assert refused.status_code == 429
    assert "Too many requests" in refused.json["message"]
    assert int(refused.headers["Retry-After"]) >= 1  # issue 13: the header, not only the JSON field
    assert queued(app) == 1
    assert app.extensions["l1"].state.runs.page()[1] == 1
    # Asking for a run that already exists enqueues nothing, so it is never refused.
    again = alice_client.post("/runs", json={"recipe": "invert", "inputs": [first]})
    assert again.status_code == 200


# Waiting for a run's end: GET /runs/<id>?wait= ------------------------------------------------------
def submitted(app, alice_client) -> dict:
    response = alice_client.post("/runs", json={"recipe": "invert", "inputs": [put_image(app)]})
    assert response.status_code == 201
    return response.json


def test_a_wait_answers_as_soon_as_the_run_ends(app, alice_client, state):
    run = submitted(app, alice_client)
    assert state.runs.transition(run["id"], RunEvent.START)

    def finish_soon() -> None:
        time.sleep(0.5)
        state.runs.transition(run["id"], RunEvent.COMPLETE, output_hash="b" * 64)

    finisher = threading.Thread(target=finish_soon)
    started = time.monotonic()
    finisher.start()
    response = alice_client.get(f"/runs/{run['id']}?wait=30", headers=JSON)
    finisher.join()
    assert response.status_code == 200 and response.headers["L1-Waited"] == "1"
    assert response.json["status"] == "completed" and response.json["output_hash"] == "b" * 64
    assert time.monotonic() - started < 20  # woken by the end, not by the 30 s limit


def test_a_wait_on_a_live_run_that_does_not_change_answers_after_its_seconds(app, alice_client):
    run = submitted(app, alice_client)
    response = alice_client.get(f"/runs/{run['id']}?wait=0.3", headers=JSON)
    assert response.status_code == 200 and response.headers["L1-Waited"] == "1"
    assert response.json["status"] == "pending"


def test_a_wait_on_a_finished_run_answers_at_once(app, alice_client, state):
    run = make_run(state, seed="7")
    response = alice_client.get(f"/runs/{run['id']}?wait=30", headers=JSON)
    assert response.status_code == 200 and response.json["status"] == "completed"
    assert "L1-Waited" not in response.headers


def test_when_every_wait_slot_is_taken_the_answer_comes_at_once_saying_so(app, alice_client):
    from l1web.blueprints import runs as runs_blueprint

    run = submitted(app, alice_client)
    taken = 0
    while runs_blueprint.WAITERS.acquire(blocking=False):
        taken += 1
    try:
        response = alice_client.get(f"/runs/{run['id']}?wait=30", headers=JSON)
    finally:
        for _ in range(taken):
            runs_blueprint.WAITERS.release()
    assert taken == 4
    assert response.status_code == 200 and response.headers["L1-Waited"] == "0"
    assert response.json["status"] == "pending"


def test_a_wait_keeps_its_connection_for_the_next_one(state, monkeypatch):
    # Issue 19: a closed subscriber used to leave a dropped connection in the pool, and the next
    # request paid a new connection (TCP, HELLO, CLIENT SETINFO, SELECT). Now it is kept.
    run = make_run(state, status=RunStatus.RUNNING)
    finisher = threading.Timer(0.3, state.runs.transition, (run["id"], RunEvent.COMPLETE))
    finisher.start()
    started = time.monotonic()
    state.runs.wait_for_change(run["id"], ("pending", "running"), 10)
    assert time.monotonic() - started < 5
    finisher.join()
    trips = RoundTrips(monkeypatch)
    state.runs.wait_for_change(run["id"], ("pending", "running"), 10)  # already over: answers at once
    assert trips.count == 3, "subscribe, read the status, unsubscribe: no new connection"
    state.runs.get(run["id"])
    assert trips.count == 4


def test_a_wait_ends_without_waiting_for_its_unsubscribe_and_the_next_hears_only_its_own_run(state):
    # Issue 19: the subscriber is kept with its unsubscribe sent, not confirmed (that held every
    # waited answer for a round trip after the run ended). What is still on its way for the
    # first run, its confirmation and a late message, is read and passed over by the next wait.
    from l1web.state import keys

    first, second = (make_run(state, seed=seed, status=RunStatus.RUNNING) for seed in ("11", "12"))
    finisher = threading.Timer(0.2, state.runs.transition, (first["id"], RunEvent.COMPLETE))
    finisher.start()
    state.runs.wait_for_change(first["id"], ("pending", "running"), 10)
    finisher.join()
    (kept,) = state.runs._idle_pubsubs  # noqa: SLF001
    assert kept.pending_unsubscribe_channels == {keys.run_changes(first["id"])}, "the confirmation was not waited for"
    # A late message of the first run on its way to the kept subscriber (made certain: subscribed
    # again, confirmed, the message published to it, then let go as a wait lets it go).
    assert state.runs._take_pubsub() is kept  # noqa: SLF001
    kept.subscribe(keys.run_changes(first["id"]))
    deadline = time.monotonic() + 5
    while state.redis.pubsub_numsub(keys.run_changes(first["id"]))[0][1] != 1:
        assert time.monotonic() < deadline
        kept.get_message(timeout=0.05)
    assert state.redis.publish(keys.run_changes(first["id"]), "failed") == 1
    state.runs._keep_pubsub(kept)  # noqa: SLF001
    started = time.monotonic()
    state.runs.wait_for_change(second["id"], ("pending", "running"), 0.5)
    assert time.monotonic() - started >= 0.45, "woken by another run's message"
    assert state.runs._idle_pubsubs == [kept]  # noqa: SLF001
    assert keys.run_changes(first["id"]) not in kept.channels  # its confirmation was read on the way
    assert kept.pending_unsubscribe_channels == {keys.run_changes(second["id"])}
    finisher = threading.Timer(0.2, state.runs.transition, (second["id"], RunEvent.COMPLETE))
    finisher.start()
    started = time.monotonic()
    state.runs.wait_for_change(second["id"], ("pending", "running"), 10)
    finisher.join()
    assert time.monotonic() - started < 5 and state.runs.get(second["id"])["status"] == "completed"


def test_a_change_the_channel_did_not_carry_is_caught_by_reading_the_status_again(state, monkeypatch):
    # The subscription and the status read go on two connections, which Redis may take in either
    # order: a change between them is not heard on the channel. As if it had happened: the status
    # changes without its message. The wait reads the status again every RECHECK seconds.
    from l1web.state import keys

    run = make_run(state, seed="13", status=RunStatus.RUNNING)
    monkeypatch.setattr(state.runs, "RECHECK", 0.2)
    finisher = threading.Timer(0.3, state.redis.hset, (keys.run(run["id"]), "status", RunStatus.COMPLETED))
    started = time.monotonic()
    finisher.start()
    state.runs.wait_for_change(run["id"], ("pending", "running"), 10)
    finisher.join()
    assert 0.3 <= time.monotonic() - started < 3, "not caught by the next read of the status"


@pytest.mark.parametrize("value", ["soon", "-1", "31", "nan", "inf"])
def test_a_bad_wait_is_refused_with_a_message(app, alice_client, value):
    run = submitted(app, alice_client)
    response = alice_client.get(f"/runs/{run['id']}?wait={value}", headers=JSON)
    assert response.status_code == 400
    assert "'wait' must be a number of seconds from 0 to 30" in response.json["message"]


# Submitting and waiting in one request: POST /runs with `Prefer: wait=N` (RFC 7240) -----------------
def finish_the_new_run_soon(state, delay: float = 0.4) -> threading.Thread:
    """A stand-in worker: once a run exists, start it and, `delay` s later, complete it."""
    def finish() -> None:
        deadline = time.monotonic() + 10
        while not (runs := state.runs.page()[0]) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runs, "no run was created"
        state.runs.transition(runs[0]["id"], RunEvent.START)
        time.sleep(delay)
        state.runs.transition(runs[0]["id"], RunEvent.COMPLETE, output_hash="b" * 64)

    finisher = threading.Thread(target=finish)
    finisher.start()
    return finisher


def test_a_submission_that_prefers_to_wait_answers_when_the_run_has_ended(app, alice_client, state):
    finisher = finish_the_new_run_soon(state)
    started = time.monotonic()
    response = alice_client.post("/runs", json={"recipe": "invert", "inputs": [put_image(app)]},
                                 headers={**JSON, "Prefer": "respond-async, wait=20"})
    finisher.join()
    assert time.monotonic() - started < 15  # woken by the end, not by the 20 s limit
    assert response.status_code == 201
    assert response.json["status"] == "completed" and response.json["output_hash"] == "b" * 64
    assert response.headers["Preference-Applied"] == "wait=20" and response.headers["L1-Waited"] == "1"
    assert "Prefer" in response.headers["Vary"]  # a cache must not hand one answer for the other
    # An identical submission of the ended run answers at once, without waiting.
    again = alice_client.post("/runs", json={"recipe": "invert", "inputs": [response.json["input_hashes"]["input"]]},
                              headers={**JSON, "Prefer": "wait=20"})
    assert again.status_code == 200 and again.json["id"] == response.json["id"]
    assert again.json["status"] == "completed" and "Preference-Applied" not in again.headers


def test_a_wait_longer_than_30_seconds_is_cut_to_30(app, alice_client, state):
    finisher = finish_the_new_run_soon(state)
    response = alice_client.post("/runs", json={"recipe": "invert", "inputs": [put_image(app)]},
                                 headers=[("Accept", "application/json"), ("Prefer", "handling=strict"),
                                          ("Prefer", "wait=86400")])  # two header lines: both read
    finisher.join()
    assert response.status_code == 201 and response.json["status"] == "completed"
    assert response.headers["Preference-Applied"] == "wait=30"


def test_a_submission_whose_run_does_not_end_in_time_answers_after_its_seconds(app, alice_client):
    started = time.monotonic()
    response = alice_client.post("/runs", json={"recipe": "invert", "inputs": [put_image(app)]},
                                 headers={**JSON, "Prefer": "wait=1"})
    assert 0.9 < time.monotonic() - started < 10
    assert response.status_code == 201 and response.json["status"] == "pending"
    assert response.headers["Preference-Applied"] == "wait=1"
    assert queued(app) == 1  # queued once, as without the preference


@pytest.mark.parametrize("prefer", ["wait=soon", "wait=-1", "wait=1.5", "wait=", "respond-async", "wait=0",
                                    "handling=lenient", ",,;=", "wait" * 500, "wait=\u00b2", "wait=1\u00b9"])
def test_other_or_malformed_preferences_are_ignored_not_refused(app, alice_client, prefer):
    started = time.monotonic()
    response = alice_client.post("/runs", json={"recipe": "invert", "inputs": [put_image(app)]},
                                 headers={**JSON, "Prefer": prefer})
    assert time.monotonic() - started < 0.9  # answered at once
    assert response.status_code == 201 and response.json["status"] == "pending"
    assert "Preference-Applied" not in response.headers and "L1-Waited" not in response.headers


def test_a_submission_refused_for_its_body_is_refused_at_once_whatever_it_prefers(app, alice_client, state):
    response = alice_client.post("/runs", json={"recipe": "invert", "inputs": ["0" * 64]},
                                 headers={**JSON, "Prefer": "wait=30"})
    assert response.status_code == 404 and "Preference-Applied" not in response.headers
    assert state.runs.page()[1] == 0 and queued(app) == 0


def test_when_every_wait_slot_is_taken_a_submission_answers_at_once_saying_so(app, alice_client):
    from l1web.blueprints import runs as runs_blueprint

    taken = 0
    while runs_blueprint.WAITERS.acquire(blocking=False):
        taken += 1
    try:
        response = alice_client.post("/runs", json={"recipe": "invert", "inputs": [put_image(app)]},
                                     headers={**JSON, "Prefer": "wait=30"})
    finally:
        for _ in range(taken):
            runs_blueprint.WAITERS.release()
    assert response.status_code == 201 and response.json["status"] == "pending"
    assert response.headers["L1-Waited"] == "0" and "Preference-Applied" not in response.headers


def test_a_submission_reads_its_inputs_access_in_one_script_and_survives_a_redis_restart(app, alice_client,
                                                                                           bob_client, redis_client):
    """`POST /runs` reads the inputs' ownership facts through the access script in its one prefetch
    round trip; after a Redis restart (scripts gone, NOSCRIPT) it loads the script and answers the same."""
    mine, bobs, unknown = put_image(app), put_image(app, owner="bob", colour=(1, 2, 3)), "f" * 64
    for restarted, created in ((False, 201), (True, 200)):
        if restarted:
            redis_client.script_flush()
        hidden = alice_client.post("/runs", json={"recipe": "invert", "inputs": [bobs]})
        if restarted:
            redis_client.script_flush()
        absent = alice_client.post("/runs", json={"recipe": "invert", "inputs": [unknown]})
        assert hidden.status_code == absent.status_code == 404  # bob's private item answers like an unknown one
        assert hidden.json["error"].replace(bobs, unknown) == absent.json["error"]
        if restarted:
            redis_client.script_flush()
        made = alice_client.post("/runs", json={"recipe": "invert", "inputs": [mine]})
        assert made.status_code == created, made.json  # the second time: the same run, found by the same read
    assert queued(app) == 1
    assert bob_client.post("/runs", json={"recipe": "invert", "inputs": [bobs]}).status_code == 201
