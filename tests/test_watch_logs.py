"""Step logs, with real RQ workers and ffmpeg: GET /runs/{id}/steps/{step}/log while a step
renders and after, the run page's log panel, who may read a log, the log excerpt in a failed
step's error, and no secrets in logs."""

from __future__ import annotations

import time

from l1web.recipes.parse import parse_recipe
from l1web.runs.model import RunStatus
from l1web.runs.service import Submission
from tests.helpers import put_image
from tests.test_runs_workers import ALICE, put_video, wait_for_run

JSON = {"Accept": "application/json"}


def wait_running(state, run_id: str, step_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state.runs.step_states(run_id).get(step_id, {}).get("status") == "running":
            return
        time.sleep(0.05)
    raise AssertionError(f"step {step_id} never ran: {state.runs.step_states(run_id)}")


def test_the_log_shows_ffmpeg_while_running_and_after(alice_client, service, state, store, settings,
                                                       start_worker, tmp_path):
    clip = put_video(store, tmp_path, seconds=20, size="640x360")
    start_worker()
    run, _ = service.submit(Submission("blur", [clip], params={"sigma": 3}), ALICE)
    wait_running(state, run["id"], "blur")
    url = f"/runs/{run['id']}/steps/blur/log"
    during = ""
    deadline = time.monotonic() + 60
    while "Stream mapping" not in during and time.monotonic() < deadline:
        answer = alice_client.get(url)
        assert answer.status_code == 200 and answer.mimetype == "text/plain"
        during = answer.get_data(as_text=True)
        time.sleep(0.1)
    assert answer.headers["X-Step-Status"] == "running", "the log must be readable while the step renders"
    assert "step blur (EFFECT) started" in during  # the worker's own line
    assert "$ ffmpeg " in during and "-i <cache>/" in during  # the command, local paths shortened
    assert "Stream mapping" in during  # ffmpeg's own output
    # The log panel follows the step while it runs.
    panel = alice_client.get(f"/run/{run['id']}/log-panel").get_data(as_text=True)
    assert 'hx-trigger="every 2s, refresh"' in panel and "Stream mapping" in panel
    final = wait_for_run(state, run["id"])
    assert final["status"] == RunStatus.COMPLETED, final.get("error")
    after = alice_client.get(url).get_data(as_text=True)
    assert after.startswith(during[:200]) and f"step blur completed: output {final['output_hash']}" in after
    assert str(settings.cache_dir) not in after
    tail = alice_client.get(url, query_string={"tail": 2}).get_data(as_text=True)
    assert tail == "".join(after.splitlines(keepends=True)[-2:])
    page = alice_client.get(f"/run/{run['id']}", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert 'id="step-log"' in page and "Stream mapping" in page
    assert 'hx-get="/run/' + run["id"] + '/log-panel' not in page  # the run ended: no more polling


def test_logs_are_the_owners_and_admins_only(alice_client, bob_client, admin_client, service, state, store,
                                             start_worker, tmp_path):
    digest = put_image(store, tmp_path)
    start_worker()
    run, _ = service.submit(Submission("invert", [digest]), ALICE)
    wait_for_run(state, run["id"])
    url = f"/runs/{run['id']}/steps/invert/log"
    assert "step invert completed" in alice_client.get(url).get_data(as_text=True)
    assert "step invert completed" in admin_client.get(url).get_data(as_text=True)
    theirs = bob_client.get(url, headers=JSON)
    unknown = bob_client.get(f"/runs/{'f' * 64}/steps/invert/log", headers=JSON)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.get_json()["error"] == unknown.get_json()["error"]
    assert bob_client.get(f"/run/{run['id']}/log-panel").status_code == 404
    no_step = alice_client.get(f"/runs/{run['id']}/steps/nope/log", headers=JSON)
    assert no_step.status_code == 404 and "nope" in no_step.get_json()["message"]
    for bad in ("0", "-1", "x", "100001"):
        answer = alice_client.get(url, query_string={"tail": bad}, headers=JSON)
        assert answer.status_code == 400 and "tail" in answer.get_json()["message"], bad


def test_a_failing_step_error_carries_its_log_excerpt(alice_client, service, state, store, start_worker, tmp_path):
    # ffmpeg is killed mid-render: bare ffmpeg blurs this clip in ~5.5 s on a quiet 2-core machine
    # (a 20 s 640x360 one took 1.7 s and sometimes finished within the timeout).
    clip = put_video(store, tmp_path, seconds=25, size="1280x720")
    start_worker(env={"STEP_TIMEOUT": "2"})
    run, _ = service.submit(Submission("blur", [clip], params={"sigma": 3}), ALICE)
    final = wait_for_run(state, run["id"])
    assert final["status"] == RunStatus.FAILED
    assert "timed out" in final["error"], final["error"]
    assert "--- log (last lines) ---" in final["error"], final["error"]
    assert "Output #0, mp4, to '<work>/" in final["error"], final["error"]  # ffmpeg's lines, paths shortened
    step = next(s for s in alice_client.get(f"/runs/{run['id']}", headers=JSON).get_json()["steps"]
                if s["step_id"] == "blur")
    assert "Output #0, mp4" in step["error"]
    log = alice_client.get(f"/runs/{run['id']}/steps/blur/log").get_data(as_text=True)
    assert "step blur failed: ffmpeg timed out" in log


SECRET = "Sup3rSecretKeyValue-42"
SECRET_RECIPE = f"""
name: secret-step
dag:
  nodes:
    - {{id: image, type: SOURCE, config: {{input: true, name: image}}}}
    - {{id: {SECRET}, type: EFFECT, config: {{effect: invert}}, inputs: [image]}}
  output: {SECRET}
"""


def test_secrets_never_reach_a_log(alice_client, service, state, store, start_worker, tmp_path):
    digest = put_image(store, tmp_path)
    # The worker's secret key is also (by a hostile or clumsy recipe) a step id, which the worker logs.
    start_worker(env={"SECRET_KEY": SECRET})
    recipe = parse_recipe(SECRET_RECIPE)
    state.recipes.save(recipe.id, name=recipe.name, owner=ALICE.name, yaml_text=SECRET_RECIPE, recipe=recipe.to_dict())
    run, _ = service.submit(Submission(recipe.id, {"image": digest}), ALICE)
    final = wait_for_run(state, run["id"])
    assert final["status"] == RunStatus.COMPLETED, final.get("error")
    log = alice_client.get(f"/runs/{run['id']}/steps/{SECRET}/log").get_data(as_text=True)
    assert "step [redacted] (EFFECT) started" in log
    assert SECRET not in log and alice_client.token not in log
