"""Batches and bulk actions, and the run page's priority form: real Redis, real worker processes."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from l1web.runs.model import RunStatus, StepStatus
from tests.helpers import put_fresh_image as put_image
from tests.helpers import wait_until
from tests.test_runs_workers import put_video

JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html"}
HTMX = {"Accept": "text/html", "HX-Request": "true"}


def distinct_videos(app, tmp_path: Path, count: int, owner: str = "alice") -> list[str]:
    """`count` videos with the same 10 s of picture and different bytes (a title each, streams copied)."""
    store = app.extensions["l1"].store
    source = store.path_for(put_video(store, tmp_path, seconds=10, size="640x360"))
    out = []
    for index in range(count):
        path = tmp_path / f"clip-{index}.mp4"
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source), "-c", "copy",
                        "-metadata", f"title=clip {index}", str(path)], check=True)
        out.append(store.put_file(path, source="test", owner=owner))
    return out


def nothing_created(state) -> bool:
    return state.runs.page()[1] == 0 and state.batches.page("alice")[1] == 0


# A batch over real workers, and bulk cancel ---------------------------------------------------------
def test_a_batch_of_ten_makes_ten_runs_and_bulk_cancel_stops_them_all(app, alice_client, start_worker, tmp_path):
    state = app.extensions["l1"].state
    clips = distinct_videos(app, tmp_path, 10)
    answer = alice_client.post("/batches", json={"recipe": "dog", "inputs": clips})
    assert answer.status_code == 201, answer.json
    batch = answer.json
    assert batch["count"] == 10 and len(set(batch["run_ids"])) == 10
    assert [r["input_hashes"]["input"] for r in batch["runs"]] == clips  # one run per input, in order
    assert alice_client.get(f"/batches/{batch['id']}", headers=JSON).json["counts"]["pending"] == 10
    start_worker()
    running = wait_until(lambda: next((r for r in batch["run_ids"] if any(
        s.get("status") == StepStatus.RUNNING for s in state.runs.step_states(r).values())), None), "a run rendering")
    stopped = alice_client.post("/runs/bulk", json={"action": "cancel", "runs": batch["run_ids"]})
    assert stopped.status_code == 200, stopped.json
    assert stopped.json["done"] == 10 and stopped.json["refused"] == 0, stopped.json
    runs = [state.runs.get(r) for r in batch["run_ids"]]
    assert {r["status"] for r in runs} == {RunStatus.CANCELLED}
    # The rendering step is stopped too, and the worker starts none of the others.
    wait_until(lambda: state.runs.step_states(running).get("dog", {}).get("status") != StepStatus.RUNNING,
               "the rendering step to stop")
    time.sleep(3)
    for run_id in batch["run_ids"]:
        assert state.runs.get(run_id)["status"] == RunStatus.CANCELLED
        steps = state.runs.step_states(run_id)
        assert not any(s.get("status") in (StepStatus.RUNNING, StepStatus.COMPLETED)
                       for sid, s in steps.items() if sid == "dog"), (run_id == running, steps)
    counts = alice_client.get(f"/batches/{batch['id']}", headers=JSON).json["counts"]
    assert counts["cancelled"] == 10
    # Delete them all through the batch: runs and batch go.
    deleted = alice_client.post(f"/batches/{batch['id']}/delete", headers=JSON).json
    assert deleted["batch_deleted"] and all(r["ok"] for r in deleted["results"].values())
    assert state.runs.page()[1] == 0
    assert alice_client.get(f"/batches/{batch['id']}", headers=JSON).status_code == 404


# Bad input: 4xx with a message, nothing created ----------------------------------------------------
def test_bad_batches_are_refused_with_a_message_and_create_nothing(app, alice_client, tmp_path):
    state = app.extensions["l1"].state
    mine = put_image(app, tmp_path, "alice")
    bobs = put_image(app, tmp_path, "bob")
    cases = [
        ({"recipe": "no-such-recipe", "inputs": [mine]}, 404, "no effect or recipe named"),
        ({"recipe": "invert", "inputs": [mine, bobs]}, 404, "inputs[1]: input"),  # bob's private image
        ({"recipe": "invert", "inputs": [mine, "ab" * 32]}, 404, "inputs[1]: input"),
        ({"recipe": "invert", "inputs": [mine, "no-such-asset"]}, 404, "inputs[1]: input 'no-such-asset'"),
        ({"recipe": "invert", "inputs": []}, 400, "non-empty list"),
        ({"recipe": "invert", "inputs": [mine] * 101}, 400, "at most 100 runs"),
        ({"recipe": "invert", "inputs": [mine, 7]}, 400, "inputs[1] must be"),
        ({"recipe": "invert", "inputs": [[mine, mine]]}, 400, "inputs[0]: invert takes 1 input"),
        ({"recipe": "invert", "inputs": [mine], "priority": 5}, 403, "above your ceiling"),
        ({"recipe": "invert", "inputs": [mine], "colour": "red"}, 400, "unknown field 'colour'"),
    ]
    for body, status, message in cases:
        answer = alice_client.post("/batches", json=body)
        assert answer.status_code == status, (body, answer.json)
        assert message in answer.json["message"], (body, answer.json)
        assert nothing_created(state), body
    # Bob's image answers exactly like an unknown hash.
    theirs = alice_client.post("/batches", json={"recipe": "invert", "inputs": [bobs]}).json
    unknown = alice_client.post("/batches", json={"recipe": "invert", "inputs": ["cd" * 32]}).json
    assert theirs["message"].replace(bobs[:12], "X") == unknown["message"].replace("cd" * 6, "X")


def test_bulk_actions_act_only_on_your_own_runs(app, alice_client, bob_client, admin_client, tmp_path):
    state = app.extensions["l1"].state
    batch = alice_client.post("/batches", json={"recipe": "invert", "inputs": [put_image(app, tmp_path)],
                                               "paused": True}).json
    run_id = batch["run_ids"][0]
    assert state.runs.get(run_id)["status"] == RunStatus.PAUSED
    # Bob: alice's batch and run answer exactly as unknown ones, and nothing changes.
    assert bob_client.get(f"/batches/{batch['id']}", headers=JSON).status_code == 404
    assert bob_client.post(f"/batches/{batch['id']}/cancel", headers=JSON).status_code == 404
    results = bob_client.post("/runs/bulk", json={"action": "cancel", "runs": [run_id, "e" * 64]}).json["results"]
    assert results[run_id]["status"] == results["e" * 64]["status"] == 404
    assert results[run_id]["error"].replace(run_id, "X") == results["e" * 64]["error"].replace("e" * 64, "X")
    assert state.runs.get(run_id)["status"] == RunStatus.PAUSED
    # Bad requests.
    assert bob_client.post("/runs/bulk", json={"action": "explode", "runs": [run_id]}).status_code == 400
    assert bob_client.post("/runs/bulk", json={"action": "cancel", "runs": []}).status_code == 400
    assert bob_client.post("/runs/bulk", json={"action": "cancel", "runs": ["x"] * 101}).status_code == 400
    # The owner and an admin may; a refusal is reported per run.
    assert alice_client.post("/runs/bulk", json={"action": "resume", "runs": [run_id]}).json["done"] == 1
    again = alice_client.post("/runs/bulk", json={"action": "resume", "runs": [run_id]}).json
    assert again["refused"] == 1 and "only paused runs" in again["results"][run_id]["error"]
    assert admin_client.post(f"/batches/{batch['id']}/cancel", headers=JSON).json["results"][run_id]["ok"]
    assert state.runs.get(run_id)["status"] == RunStatus.CANCELLED


# Forms, without JavaScript and with htmx ------------------------------------------------------------
RECIPE = """\
name: invert-many
dag:
  nodes:
    - {id: picture, type: SOURCE, config: {input: true, name: picture}}
    - {id: flip, type: EFFECT, config: {effect: invert}, inputs: [picture]}
  output: flip
"""


def test_the_recipe_page_starts_a_batch_over_ticked_media(app, alice_client, tmp_path):
    state = app.extensions["l1"].state
    images = [put_image(app, tmp_path) for _ in range(3)]
    config = alice_client.post("/configs/upload", data=RECIPE.encode(),
                               headers={"Content-Type": "application/x-yaml"}).json
    page = alice_client.get(f"/recipe/{config['id']}", headers=HTML).get_data(as_text=True)
    assert "Run over many media" in page and all(f'value="{d}"' in page for d in images)
    assert re.search(r'action="/batches".*?name="csrf_token"', page, re.S)
    empty = alice_client.post("/batches", data={"recipe": config["id"]}, headers=HTML)
    assert empty.status_code == 303 and empty.headers["Location"].endswith(f"/recipe/{config['id']}")
    assert nothing_created(state)
    answer = alice_client.post("/batches", data={"recipe": config["id"], "media": images[:2]}, headers=HTML)
    assert answer.status_code == 303
    batch_id = answer.headers["Location"].rsplit("/", 1)[1]
    batch = state.batches.get(batch_id)
    assert batch["count"] == 2 and batch["config_id"] == config["id"]
    shown = alice_client.get(f"/batches/{batch_id}", headers=HTML).get_data(as_text=True)
    assert "pending 2" in shown and f"/batches/{batch_id}/cancel" in shown
    assert alice_client.get("/batches", headers=HTML).get_data(as_text=True).count(f'href="/batches/{batch_id}"') == 1
    # Without a CSRF token the form is refused and nothing is created.
    alice_client.csrf = ""
    refused = alice_client.post("/batches", data={"recipe": config["id"], "media": images[2:]}, headers=HTML)
    assert refused.status_code == 403 and state.batches.page("alice")[1] == 1


def test_the_runs_list_ticks_runs_for_a_bulk_action_with_and_without_htmx(app, alice_client, tmp_path):
    state = app.extensions["l1"].state
    images = [put_image(app, tmp_path) for _ in range(3)]
    ids = alice_client.post("/batches", json={"recipe": "invert", "inputs": images, "paused": True}).json["run_ids"]
    listing = alice_client.get("/runs", headers=HTML).get_data(as_text=True)
    assert all(f'name="run" value="{r}" form="bulk-runs"' in listing for r in ids)
    assert 'id="bulk-runs"' in listing and 'hx-post="/runs/bulk"' in listing
    plain = alice_client.post("/runs/bulk", data={"action": "cancel", "run": ids[:2]}, headers=HTML)
    assert plain.status_code == 303 and plain.headers["Location"].endswith("/runs")
    assert [state.runs.get(r)["status"] for r in ids] == [RunStatus.CANCELLED] * 2 + [RunStatus.PAUSED]
    fragment = alice_client.post("/runs/bulk", data={"action": "delete", "run": ids[:2]}, headers=HTMX)
    assert fragment.status_code == 200
    html = fragment.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="runs-list"') and "2 runs deleted." in html
    assert state.runs.get(ids[0]) is None and state.runs.get(ids[2]) is not None
    nothing = alice_client.post("/runs/bulk", data={"action": "cancel"}, headers=HTMX).get_data(as_text=True)
    assert "choose at least one run" in nothing


def test_the_run_page_sets_the_priority_within_the_ceiling(app, alice_client, bob_client, admin_client, tmp_path):
    state = app.extensions["l1"].state
    run_id = alice_client.post("/runs", json={"recipe": "invert", "inputs": [put_image(app, tmp_path)],
                                              "paused": True}).json["id"]
    page = alice_client.get(f"/run/{run_id}", headers=HTML).get_data(as_text=True)
    assert 'name="priority"' in page and 'max="0"' in page and 'min="-10"' in page  # USER_MAX_PRIORITY 0
    assert alice_client.post(f"/run/{run_id}/priority", data={"priority": "-3"}, headers=HTML).status_code == 303
    assert int(state.runs.get(run_id)["priority"]) == -3
    for bad, message in (("5", "above your ceiling"), ("x", "whole number"), ("-11", "from -10 to 10")):
        answer = alice_client.post(f"/run/{run_id}/priority", data={"priority": bad}, headers=HTML)
        assert answer.status_code == 303
        assert message in alice_client.get(f"/run/{run_id}", headers=HTML).get_data(as_text=True)
        assert int(state.runs.get(run_id)["priority"]) == -3
    assert bob_client.post(f"/run/{run_id}/priority", data={"priority": "-1"}, headers=HTML).status_code == 404
    assert 'max="10"' in admin_client.get(f"/run/{run_id}", headers=HTML).get_data(as_text=True)
    assert admin_client.post(f"/run/{run_id}/priority", data={"priority": "7"}, headers=HTML).status_code == 303
    assert int(state.runs.get(run_id)["priority"]) == 7
