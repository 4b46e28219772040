"""The workers page (admins): real worker processes, drain and resume, and who may see it."""

from __future__ import annotations

import time

from l1web.devtools.processes import stop_process
from l1web.runs.model import RunStatus, StepStatus
from tests.test_runs_faults import DOG_THEN_GREY
from tests.test_runs_pause import wait_step
from tests.test_runs_retries import wait_running
from tests.test_runs_workers import put_video, submit_recipe, wait_for_run

JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html"}
NAME = "drain-me"


def wait_worker(client, name: str, check, what: str, timeout: float = 60) -> dict:
    """The worker's row from GET /workers once `check(row)` holds."""
    deadline = time.monotonic() + timeout
    row = None
    while time.monotonic() < deadline:
        rows = client.get("/workers", headers=JSON).json["workers"]
        row = next((r for r in rows if r["name"] == name), None)
        if row is not None and check(row):
            return row
        time.sleep(0.1)
    raise AssertionError(f"worker {name}: {what}; last seen {row}")


def test_workers_page_and_actions_are_for_admins_only(app, admin_client, alice_client, start_worker):
    start_worker(name=NAME)
    wait_worker(admin_client, NAME, lambda r: r["state"] == "idle", "registered and idle")
    assert admin_client.get("/workers", headers=HTML).status_code == 200
    assert admin_client.get("/workers/fragment", headers=HTML).status_code == 200
    for path in ("/workers", "/workers/fragment"):
        refused = alice_client.get(path, headers=JSON)
        assert refused.status_code == 403 and refused.json["error"] == "forbidden"
        assert app.test_client().get(path, headers=JSON).status_code == 401
    refused = alice_client.post(f"/workers/{NAME}/drain", headers=JSON)
    assert refused.status_code == 403
    assert not app.extensions["l1"].state.workers.is_drained(NAME)  # nothing changed
    unknown = admin_client.post("/workers/no-such-worker/drain", headers=JSON)
    assert unknown.status_code == 404 and "no worker named" in unknown.json["message"]
    bad = admin_client.post(f"/workers/{NAME}/explode", headers=JSON)
    assert bad.status_code == 400 and "drain or resume" in bad.json["message"]
    # Without JavaScript: a plain form POST, then back to the page with a message.
    answer = admin_client.post(f"/workers/{NAME}/drain", headers=HTML)
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/workers")
    page = admin_client.get("/workers", headers=HTML).get_data(as_text=True)
    assert "is draining" in page and f"/workers/{NAME}/resume" in page
    assert admin_client.post(f"/workers/{NAME}/resume", headers=JSON).json["drained"] is False


def test_drain_finishes_the_current_step_takes_no_more_survives_a_restart_and_resume_goes_on(
        app, admin_client, service, state, store, start_worker, tmp_path):
    clip = put_video(store, tmp_path, seconds=10, size="640x360")
    worker = start_worker(name=NAME)
    idle = wait_worker(admin_client, NAME, lambda r: r["state"] == "idle", "registered and idle")
    assert idle["pid"] == worker.pid and idle["hostname"] and "steps" in idle["queues"]
    run = submit_recipe(service, state, DOG_THEN_GREY, {"clip": clip})
    wait_running(state, run["id"], "dog")
    busy = wait_worker(admin_client, NAME, lambda r: (r["current"] or {}).get("step") == "dog", "rendering dog")
    assert busy["current"]["run"] == run["id"] and busy["state"] == "busy"
    assert admin_client.post(f"/workers/{NAME}/drain", headers=JSON).json["state"] == "draining"
    dog = wait_step(state, run["id"], "dog", {StepStatus.COMPLETED})  # the current step finishes
    drained = wait_worker(admin_client, NAME, lambda r: r["state"] == "drained", "drained after its step")
    assert drained["steps_done"] >= 1 and drained["current"] is None
    time.sleep(3)  # an idle worker would have taken grey by now
    grey = state.runs.step_states(run["id"])["grey"]
    assert grey["status"] == StepStatus.QUEUED and "started" not in grey, grey
    # Stopped and started again under the same name, it is still drained.
    stop_process(worker)
    worker = start_worker(name=NAME)
    wait_worker(admin_client, NAME, lambda r: r["pid"] == worker.pid and r["state"] == "drained", "back, drained")
    time.sleep(2)
    assert "started" not in state.runs.step_states(run["id"])["grey"]
    assert state.runs.get(run["id"])["status"] == RunStatus.RUNNING
    # Resumed, it takes the waiting step.
    assert admin_client.post(f"/workers/{NAME}/resume", headers=JSON).json["drained"] is False
    run = wait_for_run(state, run["id"])
    assert run["status"] == RunStatus.COMPLETED, run.get("error")
    grey = state.runs.step_states(run["id"])["grey"]
    assert grey["worker"] == NAME and grey["started"] >= dog["finished"]
    done = wait_worker(admin_client, NAME, lambda r: r["steps_done"] >= 2, "counted both steps")
    assert done["steps_failed"] == 0
