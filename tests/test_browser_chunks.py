"""A chunked step on the run page, in headless Chromium: one DAG node counting its chunks while
two real workers render them; screenshot kept in docs/screenshots/run-chunked.png
(with `E2E_SCREENSHOTS`, see devtools/screenshots.sh)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from l1web.jobs.queues import run_service
from l1web.runs.service import Submission
from l1web.state import connect
from l1web.store import ContentStore
from tests.test_browser_watch import CHROMIUM_ARGS
from tests.test_runs_workers import ALICE, put_video

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_ARGS}


@pytest.fixture()
def worker_env(worker_env):
    return {**worker_env, "CHUNK_SECONDS": "5", "CHUNK_MIN_SECONDS": "10"}


def test_a_chunked_step_is_one_node_counting_its_chunks(page: Page, screenshots, live_l1, dev_l2, settings, state,
                                                        start_worker, tmp_path):
    store = ContentStore(settings.cache_dir, state.cache)
    service = run_service(state, store, connect(settings.redis_url, decode=False))
    clip = put_video(store, tmp_path, seconds=20, size="640x360")
    page.set_viewport_size({"width": 1000, "height": 700})
    page.goto(f"{live_l1.url}/auth?auth_token={dev_l2.mint('alice', live_l1.url)}")
    start_worker(name="w-one")
    start_worker(name="w-two")
    run, _ = service.submit(Submission("dog", [clip]), ALICE)
    page.goto(f"{live_l1.url}/run/{run['id']}")
    node = page.locator("g.dag-node", has_text="EFFECT")
    expect(node).to_have_count(1, timeout=60_000)  # one node for the step, not one per chunk
    expect(node).to_contain_text(re.compile(r"EFFECT · [0-3]/4 chunks"), timeout=60_000)
    expect(page.locator("g.dag-node.state-running")).to_have_count(1, timeout=60_000)
    page.screenshot(path=str(screenshots / "run-chunked.png"), full_page=True)
    expect(page.locator("#run-status p[role=status] .status")).to_have_text("completed", timeout=180_000)
    expect(node).to_contain_text("EFFECT · 4/4 chunks")
    expect(page.locator("g.dag-node")).to_have_count(2)  # the source and the chunked step
