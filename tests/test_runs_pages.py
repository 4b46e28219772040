"""The /runs and /run/<id> pages and their live fragments (run records made directly, no workers)."""

import io
import re
import subprocess

import pytest
from PIL import Image

from l1web.engine.canonical import sha3_json
from l1web.runs.model import RunStatus, StepStatus

HTML = {"Accept": "text/html"}
POLL = re.compile(r'hx-trigger="every \d+s"')


STEPS = [
    {"step_id": "input", "type": "SOURCE", "inputs": [], "level": 0, "cache_id": "a" * 64},
    {"step_id": "blurred", "type": "EFFECT", "inputs": ["input"], "level": 1, "cache_id": "b" * 64},
    {"step_id": "inverted", "type": "EFFECT", "inputs": ["input"], "level": 1, "cache_id": "c" * 64},
    {"step_id": "joined", "type": "SEQUENCE", "inputs": ["blurred", "inverted"], "level": 2, "cache_id": "d" * 64},
]


def make_run(state, status=RunStatus.RUNNING, owner="alice", seed="1", step_states=None, **extra) -> dict:
    run = {"id": sha3_json({"seed": seed, "owner": owner}), "status": status, "created": 1_700_000_000 + int(seed),
           "owner": owner, "recipe_id": "r" * 64, "recipe_name": "two-branches", "config_id": "",
           "input_hashes": {"input": "a" * 64}, "params": {}, "output_name": "", "attempt": 1,
           "steps_total": len(STEPS), **extra}
    assert state.runs.create(run)
    states = step_states or ["cached", "completed", "running", "pending"]
    state.runs.init_steps(run["id"], STEPS, {s["step_id"]: {"status": st} for s, st in zip(STEPS, states)})
    return state.runs.get(run["id"])


def put(app, data: bytes, name: str) -> str:
    return app.extensions["l1"].store.put_bytes(data, source="render", owner="alice", name=name).digest


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (240, 120, 20)).save(buffer, "PNG")
    return buffer.getvalue()


def mp4(tmp_path) -> bytes:
    out = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "1",
                    "-pix_fmt", "yuv420p", "-y", str(out)], check=True, timeout=60)
    return out.read_bytes()


def text(response) -> str:
    return response.get_data(as_text=True)


# /run/<id> ------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", list(RunStatus))
def test_the_run_page_renders_for_every_status(alice_client, state, status):
    run = make_run(state, status=status, error="it broke" if status == RunStatus.FAILED else "")
    response = alice_client.get(f"/run/{run['id']}", headers=HTML)
    assert response.status_code == 200
    page = text(response)
    assert f'<span class="status {status}">{status}</span>' in page
    assert 'id="run-status"' in page and "<svg" in page
    assert f'href="/media/{"a" * 64}"' in page


@pytest.mark.parametrize("status", [RunStatus.PENDING, RunStatus.RUNNING])
def test_a_live_runs_fragment_polls_every_second(alice_client, state, status):
    run = make_run(state, status=status)
    fragment = text(alice_client.get(f"/run/{run['id']}/fragment", headers=HTML))
    assert f'hx-get="/run/{run["id"]}/fragment"' in fragment
    assert 'hx-trigger="every 1s"' in fragment and 'hx-swap="outerHTML"' in fragment
    assert "<html" not in fragment


@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED])
def test_a_finished_runs_fragment_does_not_poll(alice_client, state, status):
    run = make_run(state, status=status, step_states=["cached", "completed", "completed", "completed"])
    fragment = text(alice_client.get(f"/run/{run['id']}/fragment", headers=HTML))
    page = text(alice_client.get(f"/run/{run['id']}", headers=HTML))
    for html in (fragment, page):
        assert "hx-trigger" not in html and "hx-get" not in html


def test_the_page_includes_the_same_fragment_the_fragment_route_returns(alice_client, state):
    run = make_run(state)
    fragment = text(alice_client.get(f"/run/{run['id']}/fragment", headers=HTML)).strip()
    assert fragment in text(alice_client.get(f"/run/{run['id']}", headers=HTML))


def test_the_dag_shows_each_steps_state_and_progress(alice_client, state):
    run = make_run(state)
    page = text(alice_client.get(f"/run/{run['id']}", headers=HTML))
    for step_id, status in [("input", "cached"), ("blurred", "completed"), ("inverted", "running"),
                            ("joined", "pending")]:
        assert f"<title>{step_id} (" in page and f"): {status}</title>" in page
    assert 'class="dag-node state-running"' in page
    assert 'role="img"' in page and "4 nodes (1 cached, 1 completed, 1 pending, 1 running)" in page
    # Weighted, not steps done: three rendered steps of equal weight, one done, one at 0 %.
    assert '<progress id="run-progress" max="100" value="33.3"' in page and "2 of 4 steps done · 33 %" in page


def test_a_run_not_yet_planned_draws_its_recipes_dag_as_pending(alice_client, state):
    recipe = {"dag": {"nodes": [{"id": "src", "type": "SOURCE", "inputs": []},
                                {"id": "fx", "type": "EFFECT", "inputs": ["src"]}], "output": "fx"}}
    run = {"id": "e" * 64, "status": RunStatus.PENDING, "created": 1.0, "owner": "alice", "recipe_name": "r",
           "recipe": recipe, "input_hashes": {}}
    state.runs.create(run)
    page = text(alice_client.get(f"/run/{'e' * 64}", headers=HTML))
    assert "<title>fx (EFFECT): pending</title>" in page and "planning" in page


def test_markup_in_names_and_errors_is_escaped(alice_client, state):
    run = make_run(state, status=RunStatus.FAILED, recipe_name="<script>alert(1)</script>",
                   output_name="<b>bold</b>", error='<img src=x onerror="alert(2)">',
                   step_states=["cached", "failed", "skipped", "skipped"])
    state.runs.update_step(run["id"], "blurred", error="<i>bad</i>")
    page = text(alice_client.get(f"/run/{run['id']}", headers=HTML))
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert "<b>bold" not in page and '<img src=x' not in page and "<i>bad" not in page
    assert "&lt;i&gt;bad&lt;/i&gt;" in page


def test_a_completed_image_run_previews_its_output(app, alice_client, state):
    digest = put(app, png(), "out.png")
    record = {"task_id": "x"}
    run = make_run(state, status=RunStatus.COMPLETED, output_hash=digest, provenance=record,
                   step_states=["cached", "completed", "completed", "completed"])
    page = text(alice_client.get(f"/run/{run['id']}", headers=HTML))
    assert f'<img src="/cache/{digest}?inline=1"' in page and 'width="64" height="48"' in page
    assert f'href="/runs/{run["id"]}/provenance"' in page
    assert f'href="/runs/{run["id"]}/provenance?download=1"' in page


def test_a_completed_video_run_shows_a_player(app, alice_client, state, tmp_path):
    digest = put(app, mp4(tmp_path), "out.mp4")
    run = make_run(state, status=RunStatus.COMPLETED, output_hash=digest,
                   step_states=["cached", "completed", "completed", "completed"])
    page = text(alice_client.get(f"/run/{run['id']}", headers=HTML))
    assert f'<video controls preload="metadata" src="/cache/{digest}?inline=1"' in page


@pytest.mark.parametrize(("status", "extra", "actions"), [
    (RunStatus.RUNNING, {}, ["priority", "pause", "cancel"]),
    (RunStatus.PENDING, {}, ["priority", "pause", "cancel"]),
    (RunStatus.PAUSED, {}, ["priority", "resume", "cancel"]),
    (RunStatus.FAILED, {}, ["requeue", "rerun", "delete"]),
    (RunStatus.CANCELLED, {}, ["requeue", "rerun", "delete"]),
    (RunStatus.COMPLETED, {}, ["delete"]),
    (RunStatus.COMPLETED, {"published": "1"}, []),
])
def test_the_actions_offered_fit_the_status(alice_client, state, status, extra, actions):
    run = make_run(state, status=status, **extra)
    page = text(alice_client.get(f"/run/{run['id']}", headers=HTML))
    offered = re.findall(rf'action="/run/{run["id"]}/(\w+)"', page)
    assert offered == actions


def test_cancel_button_posts_then_redirects_back(alice_client, state):
    run = make_run(state)
    response = alice_client.post(f"/run/{run['id']}/cancel", headers=HTML)
    assert response.status_code == 303 and response.location == f"/run/{run['id']}"
    assert state.runs.get(run["id"])["status"] == RunStatus.CANCELLED
    assert state.runs.step_states(run["id"])["joined"]["status"] == StepStatus.SKIPPED
    assert "Run cancelled." in text(alice_client.get(response.location, headers=HTML))


def test_delete_button_goes_back_to_the_list(alice_client, state):
    run = make_run(state, status=RunStatus.FAILED)
    response = alice_client.post(f"/run/{run['id']}/delete", headers=HTML)
    assert response.status_code == 303 and response.location == "/runs"
    assert state.runs.get(run["id"]) is None


def test_a_refused_action_is_shown_as_a_message_on_the_run_page(alice_client, state):
    run = make_run(state, status=RunStatus.COMPLETED)
    response = alice_client.post(f"/run/{run['id']}/rerun", headers=HTML, follow_redirects=True)
    assert response.status_code == 200
    assert "only failed or cancelled runs can be re-run" in text(response)


def test_unknown_actions_are_refused(alice_client, state):
    run = make_run(state, status=RunStatus.FAILED)
    assert alice_client.post(f"/run/{run['id']}/explode", headers=HTML).status_code == 400


def test_someone_elses_run_page_is_not_found(alice_client, state):
    run = make_run(state, owner="bob")
    for path in ("", "/fragment"):
        assert alice_client.get(f"/run/{run['id']}{path}", headers=HTML).status_code == 404
    assert alice_client.post(f"/run/{run['id']}/delete", headers=HTML).status_code == 404
    assert state.runs.get(run["id"]) is not None


# /runs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", list(RunStatus))
def test_the_runs_page_lists_runs_of_every_status(alice_client, state, status):
    run = make_run(state, status=status)
    page = text(alice_client.get("/runs", headers=HTML))
    assert f'href="/run/{run["id"]}"' in page and f'<span class="status {status}">' in page


def test_the_runs_list_polls_only_while_a_listed_run_is_live(alice_client, state):
    make_run(state, status=RunStatus.COMPLETED, seed="1")
    assert not POLL.search(text(alice_client.get("/runs/fragment", headers=HTML)))
    assert not POLL.search(text(alice_client.get("/runs", headers=HTML)))
    make_run(state, status=RunStatus.RUNNING, seed="2")
    fragment = text(alice_client.get("/runs/fragment", headers=HTML))
    assert 'hx-get="/runs/fragment"' in fragment and 'hx-trigger="every 2s"' in fragment
    assert 'hx-trigger="every 2s"' in text(alice_client.get("/runs", headers=HTML))


def test_the_runs_list_filters_by_status_and_the_fragment_keeps_the_filter(alice_client, state):
    failed = make_run(state, status=RunStatus.FAILED, seed="1")
    running = make_run(state, status=RunStatus.RUNNING, seed="2")
    page = text(alice_client.get("/runs?status=failed", headers=HTML))
    assert failed["id"] in page and running["id"] not in page
    page = text(alice_client.get("/runs?status=running", headers=HTML))
    assert 'hx-get="/runs/fragment?status=running"' in page
    assert '<option value="running" selected>' in page


def test_the_runs_list_pages_newest_first(alice_client, state):
    runs = [make_run(state, status=RunStatus.COMPLETED, seed=str(i)) for i in range(5)]
    page = text(alice_client.get("/runs?limit=2", headers=HTML))
    assert page.index(runs[4]["id"]) < page.index(runs[3]["id"]) and runs[2]["id"] not in page
    assert 'href="/runs?limit=2&amp;offset=2" rel="next"' in page
    page = text(alice_client.get("/runs?limit=2&offset=2", headers=HTML))
    assert 'href="/runs?limit=2" rel="prev"' in page


def test_the_runs_page_shows_only_the_users_runs(alice_client, state):
    bobs = make_run(state, owner="bob")
    page = text(alice_client.get("/runs", headers=HTML))
    assert bobs["id"] not in page and "No runs" in page


def test_the_runs_page_sends_anonymous_browsers_to_sign_in(app):
    response = app.test_client().get("/runs", headers=HTML)
    assert response.status_code == 302 and response.location.startswith("/login")


def test_the_run_pages_action_forms_carry_the_csrf_token(alice_client, state):
    run = make_run(state, status=RunStatus.FAILED)
    page = text(alice_client.get(f"/run/{run['id']}", headers=HTML))
    forms = re.findall(rf'action="/run/{run["id"]}/\w+"[^>]*>\s*<input type="hidden" name="csrf_token" '
                       rf'value="{alice_client.csrf}">', page)
    assert len(forms) == 3  # requeue, re-run and delete
    alice_client.csrf = ""
    assert alice_client.post(f"/run/{run['id']}/delete", headers=HTML).status_code == 403
    assert state.runs.get(run["id"]) is not None
