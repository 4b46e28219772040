"""Steering the queue in headless Chromium: the workers page (drain), the runs list's bulk actions
(ticks survive polls; htmx in place), a batch's page and the run page's priority form. Screenshots
go to docs/screenshots/ with `E2E_SCREENSHOTS` (devtools/screenshots.sh): workers.png,
runs-bulk.png, batch.png, recipe-batch.png, run-priority.png."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from l1web.jobs.queues import run_service
from l1web.recipes.parse import parse_recipe
from l1web.runs.batches import BatchService, BatchSubmission
from l1web.runs.service import Submission
from l1web.state import connect
from l1web.status import RunStatus, StepStatus
from l1web.store import ContentStore
from tests.test_browser_watch import CHROMIUM_ARGS
from tests.test_runs_faults import DOG_THEN_GREY
from tests.test_runs_pause import wait_step
from tests.test_runs_workers import ALICE, put_video

pytestmark = pytest.mark.browser

RECIPE = """\
name: sketch-many
description: An ink sketch of each picture
dag:
  nodes:
    - {id: picture, type: SOURCE, config: {input: true, name: picture}}
    - {id: sketch, type: EFFECT, config: {effect: dog}, inputs: [picture]}
  output: sketch
"""


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_ARGS}


def pictures(store: ContentStore, tmp_path, count: int) -> list[str]:
    out = []
    rng = np.random.default_rng(7)
    for index in range(count):
        y, x = np.mgrid[0:180, 0:320]
        base = (np.sin(x / (9 + index)) + np.cos(y / (7 + 2 * index))) * 60 + 128
        pixels = np.stack([base, np.roll(base, 40 * index, axis=1), 255 - base], axis=-1)
        pixels = np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8)
        path = tmp_path / f"picture-{index}.png"
        Image.fromarray(pixels).save(path)
        out.append(store.put_file(path, source="test", owner=ALICE.name))
    return out


def test_the_admin_drains_a_worker_from_the_workers_page(page: Page, screenshots, live_l1, dev_l2, settings, state,
                                                         start_worker, tmp_path):
    store = ContentStore(settings.cache_dir, state.cache)
    service = run_service(state, store, connect(settings.redis_url, decode=False))
    # Long enough that the dog step still renders after the clicks below on a quiet machine (a 10 s
    # 640x360 clip was done before the drained worker showed); under 30 s, so it is one step.
    clip = put_video(store, tmp_path, seconds=25, size="1280x720")
    recipe = parse_recipe(DOG_THEN_GREY)
    state.recipes.save(recipe.id, name=recipe.name, owner=ALICE.name, yaml_text=DOG_THEN_GREY,
                       recipe=recipe.to_dict())
    start_worker(name="render-1")
    start_worker(name="render-2")
    page.set_viewport_size({"width": 1280, "height": 700})
    page.goto(f"{live_l1.url}/auth?auth_token={dev_l2.mint('admin', live_l1.url)}")
    page.goto(f"{live_l1.url}/workers")
    rows = page.locator("#workers-list tbody tr")
    expect(rows).to_have_count(2, timeout=30_000)
    run, _ = service.submit(Submission(recipe.id, {"clip": clip}), ALICE)
    rendering = wait_step(state, run["id"], "dog", {StepStatus.RUNNING})
    idle = "render-2" if rendering.get("worker") == "render-1" else "render-1"
    busy_row = page.locator("#workers-list tr", has_text=rendering["worker"])
    expect(busy_row).to_contain_text("dog", timeout=10_000)  # the page polls: its current step shows
    expect(busy_row.locator(".status")).to_have_text("busy")
    page.locator("#workers-list tr", has_text=idle).get_by_role("button", name="Drain").click()
    expect(page.locator("p.flash")).to_contain_text(f"Worker {idle} is draining")
    expect(page.locator("#workers-list tr", has_text=idle).locator(".status")).to_have_text("drained",
                                                                                           timeout=10_000)
    expect(busy_row.locator("progress")).to_be_visible()
    page.screenshot(path=str(screenshots / "workers.png"), full_page=True)
    page.locator("#workers-list tr", has_text=idle).get_by_role("button", name="Resume").click()
    expect(page.locator("#workers-list tr", has_text=idle).locator(".status")).not_to_have_text("drained",
                                                                                               timeout=10_000)
    service.cancel(run["id"], ALICE)


def test_batches_bulk_actions_and_the_priority_form(page: Page, screenshots, live_l1, dev_l2, settings, state,
                                                    start_worker, tmp_path):
    store = ContentStore(settings.cache_dir, state.cache)
    service = run_service(state, store, connect(settings.redis_url, decode=False))
    images = pictures(store, tmp_path, 6)
    recipe = parse_recipe(RECIPE)
    state.recipes.save(recipe.id, name=recipe.name, owner=ALICE.name, yaml_text=RECIPE, recipe=recipe.to_dict())
    page.set_viewport_size({"width": 1200, "height": 900})
    page.goto(f"{live_l1.url}/auth?auth_token={dev_l2.mint('alice', live_l1.url)}")
    # The recipe page's form: tick four pictures, start a batch (no JavaScript needed: a plain POST).
    page.goto(f"{live_l1.url}/recipe/{recipe.id}")
    form = page.locator("section.batch-form")
    for digest in images[:4]:
        form.locator(f"input[value='{digest}']").check()
    form.screenshot(path=str(screenshots / "recipe-batch.png"))
    form.get_by_role("button", name="Start a batch").click()
    expect(page.locator("p.flash")).to_contain_text("Batch started: 4 runs.")
    expect(page.locator("#batch-status .counts")).to_contain_text("pending 4")
    start_worker()
    expect(page.locator("#batch-status .counts")).to_contain_text("completed 4", timeout=120_000)
    page.screenshot(path=str(screenshots / "batch.png"), full_page=True)
    # Two more runs, held paused; the runs list polls while they are live, and ticks survive it.
    held = BatchService(service).create(BatchSubmission("dog", [[d] for d in images[4:]], paused=True), ALICE)
    page.goto(f"{live_l1.url}/runs")
    for run_id in held["runs"]:
        page.locator(f"#pick-{run_id[:16]}").check()
    with page.expect_response(lambda r: "/runs/fragment" in r.url):
        pass  # one poll swapped the list
    for run_id in held["runs"]:
        expect(page.locator(f"#pick-{run_id[:16]}")).to_be_checked()
    page.screenshot(path=str(screenshots / "runs-bulk.png"), full_page=True)
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#runs-list p.flash")).to_have_text("2 runs resumed.")
    expect(page.locator(f"#pick-{held['runs'][0][:16]}")).not_to_be_checked()
    for run_id in held["runs"]:
        assert state.runs.get(run_id)["status"] != RunStatus.PAUSED
    # The run page: the owner lowers a live run's priority within their ceiling.
    waiting = BatchService(service).create(BatchSubmission("blur", [[images[1]]], paused=True), ALICE)["runs"][0]
    page.goto(f"{live_l1.url}/run/{waiting}")
    field = page.get_by_label("Priority")
    expect(field).to_have_attribute("max", "0")
    field.fill("-4")
    page.get_by_role("button", name="Set priority").click()
    expect(page.locator("p.flash")).to_have_text("Priority changed.")
    expect(page.get_by_label("Priority")).to_have_value("-4")
    assert int(state.runs.get(waiting)["priority"]) == -4
    page.screenshot(path=str(screenshots / "run-priority.png"), full_page=True)
