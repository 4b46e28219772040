"""Pausing and resuming a run from its page in headless Chromium; the screenshot is kept in
docs/screenshots/run-paused.png (with `E2E_SCREENSHOTS`, see devtools/screenshots.sh)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from l1web.jobs.queues import run_service
from l1web.recipes.parse import parse_recipe
from l1web.runs.service import Submission
from l1web.state import connect
from l1web.status import StepStatus
from l1web.store import ContentStore
from tests.test_browser_watch import CHROMIUM_ARGS
from tests.test_runs_faults import DOG_THEN_GREY
from tests.test_runs_pause import wait_step
from tests.test_runs_workers import ALICE, put_video

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_ARGS}


def test_pause_and_resume_from_the_run_page(page: Page, screenshots, live_l1, dev_l2, settings, state, start_worker,
                                            tmp_path):
    store = ContentStore(settings.cache_dir, state.cache)
    service = run_service(state, store, connect(settings.redis_url, decode=False))
    clip = put_video(store, tmp_path, seconds=10, size="640x360")
    recipe = parse_recipe(DOG_THEN_GREY)
    state.recipes.save(recipe.id, name=recipe.name, owner=ALICE.name, yaml_text=DOG_THEN_GREY,
                       recipe=recipe.to_dict())
    page.set_viewport_size({"width": 1200, "height": 900})
    page.goto(f"{live_l1.url}/auth?auth_token={dev_l2.mint('alice', live_l1.url)}")
    start_worker()
    run, _ = service.submit(Submission(recipe.id, {"clip": clip}), ALICE)
    page.goto(f"{live_l1.url}/run/{run['id']}")
    wait_step(state, run["id"], "dog", {StepStatus.RUNNING})
    page.get_by_role("button", name="Pause").click()
    status = page.locator("#run-status p[role=status] .status")
    expect(status).to_have_text("paused", timeout=10_000)
    wait_step(state, run["id"], "dog", {StepStatus.COMPLETED})
    page.locator("#run-steps summary").click()
    expect(page.locator("tr", has_text="grey")).to_contain_text("pending", timeout=10_000)
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    page.screenshot(path=str(screenshots / "run-paused.png"), full_page=True)
    page.get_by_role("button", name="Resume").click()
    expect(status).to_have_text("completed", timeout=120_000)
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
