"""Sign-in in a real browser (headless Debian Chromium): L2 password, Attach, L1, L2 logout."""

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

#: Chromium flags for a headless container (no sandbox, no GPU, no background traffic).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_ARGS}


def test_sign_in_on_l2_attach_then_log_out_on_l2(page: Page, live_l1, dev_l2, tmp_path):
    page.goto(f"{live_l1.url}/media")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fmedia$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.screenshot(path=str(tmp_path / "l1-login.png"), full_page=True)

    page.get_by_role("link", name=re.compile("Sign in with L2")).click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(dev_l2.url)}/login"))
    page.screenshot(path=str(tmp_path / "l2-login.png"), full_page=True)
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill("alice")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name="Renderers")).to_be_visible()
    page.screenshot(path=str(tmp_path / "l2-renderers.png"), full_page=True)
    page.locator(".card.wanted").get_by_role("button", name="Attach").click()

    expect(page).to_have_url(f"{live_l1.url}/media")
    expect(page.locator(".who")).to_contain_text("@alice")
    page.screenshot(path=str(tmp_path / "l1-signed-in.png"), full_page=True)

    page.goto(f"{dev_l2.url}/renderers")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("status")).to_contain_text("1 renderer(s) told")

    page.goto(f"{live_l1.url}/")
    expect(page.locator(".who")).to_contain_text("Sign in")
    expect(page.locator(".who")).not_to_contain_text("@alice")
    page.goto(f"{live_l1.url}/media")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fmedia$"))
