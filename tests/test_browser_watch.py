"""Watching a render in headless Chromium: the run page's DAG nodes fill while a long video step
renders and show the frame ffmpeg last rendered, the steps table shows percent and ETA, the log
panel tails the step, finished nodes show their output's preview and open it on a click, and the
runs list shows each output's thumbnail. Screenshots go to the test's temp dir, or to
`$E2E_SCREENSHOTS` (devtools/screenshots.sh keeps docs/screenshots/run-watch-*.png and
runs-list-thumbs.png current that way)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from l1web.jobs.queues import run_service
from l1web.recipes.parse import parse_recipe
from l1web.runs.service import Submission
from l1web.state import connect
from l1web.store import ContentStore
from tests.test_runs_workers import ALICE, put_video

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
#: Two video steps: a long blur, then a grey version of it.
RECIPE = """
name: watch-me
dag:
  nodes:
    - {id: clip, type: SOURCE, config: {input: true, name: clip}}
    - {id: soft, type: EFFECT, config: {effect: blur, params: {sigma: 3}}, inputs: [clip]}
    - {id: grey, type: EFFECT, config: {effect: grayscale}, inputs: [soft]}
  output: grey
"""


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_ARGS}


def test_the_run_page_fills_nodes_and_tails_the_log(page: Page, screenshots, live_l1, dev_l2, settings, state,
                                                    start_worker, tmp_path):
    store = ContentStore(settings.cache_dir, state.cache)
    service = run_service(state, store, connect(settings.redis_url, decode=False))
    clip = put_video(store, tmp_path, seconds=20, size="640x360")
    recipe = parse_recipe(RECIPE)
    state.recipes.save(recipe.id, name=recipe.name, owner=ALICE.name, yaml_text=RECIPE, recipe=recipe.to_dict())
    page.set_viewport_size({"width": 1200, "height": 1000})
    page.goto(f"{live_l1.url}/auth?auth_token={dev_l2.mint('alice', live_l1.url)}")
    start_worker()
    run, _ = service.submit(Submission(recipe.id, {"clip": clip}), ALICE)
    page.goto(f"{live_l1.url}/run/{run['id']}")
    page.locator("#run-steps summary").click()  # open the steps table (kept open across polls)
    filling = page.locator("g.dag-node.state-running[data-percent]")
    expect(filling).to_have_count(1, timeout=60_000)
    first = float(filling.get_attribute("data-percent") or 0)
    soft_row = page.locator("tr", has_text="soft").locator(".step-progress")
    expect(soft_row).to_contain_text(re.compile(r"\d+ %.*ETA"), timeout=10_000)
    expect(page.locator("#step-log pre.log")).to_contain_text("Stream mapping", timeout=10_000)
    page.wait_for_function(
        f"() => {{ const n = document.querySelector('g.dag-node.state-running[data-percent]');"
        f" return n && parseFloat(n.dataset.percent) > {first} + 10; }}", timeout=60_000)
    fill = page.locator("g.dag-node.state-running rect.dag-fill")
    assert 0 < float(fill.get_attribute("width") or 0) < 168
    # The running ffmpeg step shows the frame it last rendered (refreshed every few seconds).
    last_frame = page.locator("g.dag-node.state-running image.dag-thumb")
    expect(last_frame).to_have_count(1, timeout=30_000)
    assert f"/runs/{run['id']}/steps/soft/preview?at=" in (last_frame.get_attribute("href") or "")
    page.wait_for_function("() => { const i = document.querySelector('g.dag-node.state-running image.dag-thumb');"
                           " return i && i.getBBox().width > 0; }")
    page.screenshot(path=str(screenshots / "run-watch-progress.png"), full_page=True)
    # The first step's preview is on its node while the second one still renders.
    soft_thumb = page.locator("g.dag-node", has=page.locator("text=soft")).locator("image.dag-thumb")
    expect(soft_thumb).to_have_count(1, timeout=120_000)
    grey_node = page.locator("g.dag-node", has=page.locator("text=grey"))
    # ... while the second step has not finished (it renders a 20 s clip for seconds).
    assert "state-completed" not in (grey_node.get_attribute("class") or "")
    expect(page.locator("#run-status p[role=status] .status")).to_have_text("completed", timeout=120_000)
    expect(page.locator("g.dag-node.state-running")).to_have_count(0)
    panel = page.request.get(f"{live_l1.url}/run/{run['id']}/log-panel").text()
    assert "hx-trigger" not in panel, panel[:600]
    expect(page.locator("#step-log")).not_to_have_attribute("hx-trigger", re.compile("every"), timeout=8_000)
    thumbs = page.locator("image.dag-thumb")
    expect(thumbs).to_have_count(3)  # the source and both steps
    output = state.runs.get(run["id"])["output_hash"]
    grey_thumb = grey_node.locator("image.dag-thumb").get_attribute("href")
    assert grey_thumb == f"/media/{output}/thumb"
    picture = page.request.get(f"{live_l1.url}{grey_thumb}")
    assert picture.status == 200 and picture.headers["content-type"] == "image/jpeg"
    page.wait_for_function("() => [...document.querySelectorAll('image.dag-thumb')].every(i => i.getBBox().width > 0)")
    page.screenshot(path=str(screenshots / "run-watch-done.png"), full_page=True)
    # A click on a node opens its output.
    grey_node.locator("a.dag-link").click()
    expect(page).to_have_url(f"{live_l1.url}/media/{output}")
    expect(page.locator("video")).to_have_count(1)
    # The runs list shows the output's thumbnail.
    page.goto(f"{live_l1.url}/runs")
    listed = page.locator(f"img[src='/media/{output}/thumb']")
    expect(listed).to_have_count(1)
    page.wait_for_function(f"() => document.querySelector(\"img[src='/media/{output}/thumb']\").naturalWidth > 0")
    page.screenshot(path=str(screenshots / "runs-list-thumbs.png"), full_page=True)
