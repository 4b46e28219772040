"""/docs in a real browser (headless Debian Chromium): Swagger UI renders the document, and
"Try it out" works with the browser's session, CSRF token included."""

import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from l1web.store import ContentStore

pytestmark = pytest.mark.browser

#: Chromium flags for a headless container (no sandbox, no GPU, no background traffic).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_ARGS}


def test_docs_render_and_try_it_out_uses_the_session(page: Page, live_l1, dev_l2, settings, state, tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "cat.png")
    state.cache.set_asset("cat", ContentStore(settings.cache_dir, state.cache).put_file(tmp_path / "cat.png",
                                                                                        source="test"))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    outside: list[str] = []
    page.on("request", lambda req: None if req.url.startswith(live_l1.url) else outside.append(req.url))

    page.goto(f"{live_l1.url}/auth?auth_token={dev_l2.mint('alice', live_l1.url)}")
    page.goto(f"{live_l1.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("L1 rendering server")
    expect(page.locator("#operations-runs-submitRun")).to_be_visible()
    expect(page.locator("#operations-cache-uploadToCache")).to_be_visible()

    operation = page.locator("#operations-runs-submitRun")
    operation.locator(".opblock-summary").first.click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    expect(status).to_have_text(re.compile(r"^\s*201"))
    page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
    assert state.runs.page(user="alice")[1] == 1
    operation.get_by_role("button", name="Execute").click()  # again: the same run, 200
    expect(status).to_have_text(re.compile(r"^\s*200"))

    missing = page.locator("#operations-effects-getEffect")
    missing.locator(".opblock-summary").first.click()
    missing.get_by_role("button", name="Try it out").click()
    missing.locator("input[placeholder='ref']").fill("no-such-effect")
    missing.get_by_role("button", name="Execute").click()
    expect(missing.locator(".live-responses-table tbody .response-col_status").first).to_have_text(
        re.compile(r"^\s*404"))
    expect(missing.locator(".live-responses-table .microlight").first).to_contain_text('"error": "not_found"')
    assert errors == [] and outside == []
