"""End to end in headless Chromium: a live L1 (waitress), real RQ workers, the dev L2 over HTTP.

One mouse-driven journey covers sign-in through L2, uploads, a recipe run watched live, playback
and seeking, provenance download, the delete rules, phone-width layout and sign-out; a second
does the main flows with the keyboard alone. Every page visited passes a screen-reader check
(names, headings, alt text), itself tested on a page built to fail it. Set
`E2E_SCREENSHOTS=<dir>` to keep the screenshots the tests take (docs/ui.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

#: Chromium flags for a headless container (no sandbox, no GPU, no background traffic).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
#: Milliseconds a test waits for a run to finish in the page (two short ffmpeg steps).
RUN_TIMEOUT_MS = 60_000
#: Milliseconds a key is held down when a press must look like a person's.
KEY_HOLD_MS = 50
#: Most Tab presses a keyboard-only helper makes while looking for a control.
MAX_TABS = 60

#: Viewports: a desktop window and a phone held upright (CSS pixels).
DESKTOP = {"width": 1200, "height": 900}
PHONE = {"width": 390, "height": 844}

#: A recipe with one variable input: the clip, inverted, then grey.
RECIPE = """\
name: e2e-negative
version: "1.0"
description: Invert a clip, then drop its colour
dag:
  nodes:
    - {id: clip, type: SOURCE, config: {input: true, name: clip}}
    - {id: inverted, type: EFFECT, config: {effect: invert}, inputs: [clip]}
    - {id: grey, type: EFFECT, config: {effect: grayscale}, inputs: [inverted]}
  output: grey
"""


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_ARGS}


@pytest.fixture(scope="module")
def media_files(tmp_path_factory) -> dict[str, Path]:
    """An image (Pillow) and a 2-second H.264 clip with sound (ffmpeg) to upload."""
    folder = tmp_path_factory.mktemp("e2e-media")
    image = folder / "gradient.png"
    Image.radial_gradient("L").convert("RGB").resize((96, 64)).save(image)
    video = folder / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=duration=2:size=192x144:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "-movflags", "+faststart",
         str(video)], check=True)
    return {"image": image, "video": video}


@pytest.fixture()
def shots() -> Path | None:
    """Where screenshots go: `$E2E_SCREENSHOTS` if set (to look at them); unset, none are taken."""
    if not os.environ.get("E2E_SCREENSHOTS"):
        return None
    folder = Path(os.environ["E2E_SCREENSHOTS"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def snap(page: Page, folder: Path | None, name: str) -> None:
    if folder is not None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def media_card(page: Page, name: str):
    return page.locator("article.media-card").filter(has=page.get_by_role("link", name=name, exact=True))


# Screen-reader checks -----------------------------------------------------------------------------
#: Runs in the page: form controls without an accessible name, and heading-outline problems.
A11Y_SCRIPT = """() => {
    const problems = [];
    const visible = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
    const text = el => (el.textContent || '').trim();
    const byIds = ids => ids.split(/\\s+/).map(id => document.getElementById(id)).filter(Boolean).map(text).join(' ');
    const named = el => (el.getAttribute('aria-label') || '').trim()
        || (el.getAttribute('aria-labelledby') && byIds(el.getAttribute('aria-labelledby')))
        || (el.labels && [...el.labels].map(text).join(' ').trim())
        || (el.getAttribute('title') || '').trim()
        || (el.matches('button') && text(el))
        || (el.matches('input[type=submit], input[type=button]') && el.value);
    for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea, button')) {
        if (!named(el)) problems.push('unnamed control: ' + el.outerHTML.slice(0, 120));
    }
    for (const el of document.querySelectorAll('img, [role=img]')) {
        if (el.getAttribute('alt') === null && !named(el))
            problems.push('image without a text alternative: ' + el.outerHTML.slice(0, 120));
    }
    for (const el of document.querySelectorAll('video[controls], audio[controls]')) {
        if (!named(el)) problems.push('player without a name: ' + el.outerHTML.slice(0, 120));
    }
    const headings = [...document.querySelectorAll('h1, h2, h3, h4, h5, h6')].filter(visible);
    const levels = headings.map(h => Number(h.tagName[1]));
    if (levels.filter(l => l === 1).length !== 1)
        problems.push('expected one h1, found ' + levels.filter(l => l === 1).length + ': '
                      + headings.map(text).join(' | '));
    if (levels.length && levels[0] !== 1) problems.push('the first heading is h' + levels[0] + ', not h1');
    levels.forEach((level, i) => { if (i && level > levels[i - 1] + 1)
        problems.push('heading jumps from h' + levels[i - 1] + ' to h' + level + ': ' + text(headings[i])); });
    for (const h of headings) if (!text(h)) problems.push('empty heading ' + h.tagName);
    const targets = {};
    for (const a of document.querySelectorAll('a[href]')) {
        const copy = a.cloneNode(true);  // roughly its accessible name: alt text in, aria-hidden out
        copy.querySelectorAll('[aria-hidden=true]').forEach(n => n.remove());
        copy.querySelectorAll('img[alt]').forEach(n => n.replaceWith(n.alt));
        const name = (a.getAttribute('aria-label') || text(copy)).replace(/\\s+/g, ' ').toLowerCase();
        (targets[name] = targets[name] || new Set()).add(a.href);
    }
    for (const [name, hrefs] of Object.entries(targets))
        if (hrefs.size > 1) problems.push('links named "' + name + '" go to ' + hrefs.size + ' different places');
    if (!document.documentElement.lang) problems.push('no lang on <html>');
    if (!document.title.trim()) problems.push('no <title>');
    if (!document.querySelector('main')) problems.push('no <main> landmark');
    return problems;
}"""
#: Images on the page that failed to load (or have not yet).
BROKEN_IMAGES = "() => [...document.images].filter(i => !i.naturalWidth).map(i => i.src)"
#: Roles that need an accessible name, as Chromium's accessibility tree prints them unnamed.
UNNAMED_ROLE = re.compile(r"^\s*- (button|textbox|combobox|checkbox|radio|slider|spinbutton|link|img)\s*(?::|$)", re.M)


def accessibility_problems(page: Page) -> list[str]:
    """What a screen-reader user would trip over on this page (empty when it is fine)."""
    problems = page.evaluate(A11Y_SCRIPT)
    tree = page.locator("body").aria_snapshot()
    problems += [f"unnamed {m.group(1)} in the accessibility tree" for m in UNNAMED_ROLE.finditer(tree)]
    return problems


def check_page(page: Page, folder: Path | None = None, name: str = "") -> None:
    """Assert the page is readable by a screen reader; screenshot it into `folder` as `name`."""
    problems = accessibility_problems(page)
    assert problems == [], f"{page.url}: {problems}"
    if folder and name:
        snap(page, folder, name)


# Mouse-driven journey ---------------------------------------------------------------------------
def sign_in(page: Page, live_l1, dev_l2, user: str = "alice", shots: Path | None = None) -> None:
    page.goto(f"{live_l1.url}/")
    check_page(page, shots, "home-signed-out")
    page.goto(f"{live_l1.url}/media")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fmedia$"))
    check_page(page, shots, "sign-in")
    page.get_by_role("link", name=re.compile("Sign in with L2")).click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(dev_l2.url)}/login"))
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(user)
    page.get_by_role("button", name="Sign in").click()
    page.locator(".card.wanted").get_by_role("button", name="Attach").click()
    expect(page).to_have_url(f"{live_l1.url}/media")
    expect(page.locator(".who")).to_contain_text(f"@{user}")
    check_page(page)


def upload(page: Page, path: Path) -> None:
    page.get_by_label("Add a file").set_input_files(str(path))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#media-status")).to_contain_text(f"Uploaded {path.name}")
    expect(media_card(page, path.name)).to_be_visible()
    expect(page.get_by_label("Add a file")).to_have_value("")  # ready for the next file


def watch_run_live(page: Page, start_worker, shots: Path | None) -> dict:
    """Start the workers only now, so the page sees the steps change; returns what it observed.

    A window variable set before any worker starts must survive (no navigation, no reload), the
    node states must change inside the same document, and they must arrive through the fragment.
    First only the planner runs, so the planned steps wait in the queue while the test opens the
    Steps table and checks that the polling does not close it again; then a step worker finishes.
    """
    fragments: list[str] = []
    navigations: list[str] = []
    page.on("request", lambda r: fragments.append(r.url) if r.url.endswith("/fragment") else None)
    page.on("framenavigated", lambda f: navigations.append(f.url) if f == page.main_frame else None)
    page.evaluate("""() => {
        window.__e2eMarker = 'same-document';
        window.__e2eSeen = new Set();
        const look = () => document.querySelectorAll('#run-status .dag-node').forEach(
            n => window.__e2eSeen.add([...n.classList].find(c => c.startsWith('state-'))));
        look();
        window.__e2eTimer = setInterval(look, 50);
    }""")
    start_worker("runs", name="planner")
    steps = page.locator("#run-status details.steps")
    expect(page.locator("#run-status .dag-node.state-queued")).not_to_have_count(0, timeout=RUN_TIMEOUT_MS)
    steps.locator("summary").click()
    for _ in range(2):
        with page.expect_response(lambda r: r.url.endswith("/fragment")):
            pass
    page.wait_for_timeout(100)  # let htmx settle the swap
    expect(steps).to_have_attribute("open", "")
    expect(steps.get_by_role("table")).to_be_visible()
    check_page(page, shots, "run-queued")

    start_worker("steps", name="renderer")
    expect(page.locator("#run-status [role=status] .status")).to_have_text("completed", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#run-status .dag-node.state-completed")).to_have_count(2)
    # A screen reader hears the change: one lasting polite live region carries the new status line.
    expect(page.locator("#live-announcer[aria-live=polite]")).to_contain_text("completed 3 of 3 steps done")
    seen = page.evaluate("() => { clearInterval(window.__e2eTimer); return [...window.__e2eSeen]; }")
    return {"marker": page.evaluate("() => window.__e2eMarker"), "seen": set(seen),
            "fragments": fragments, "navigations": navigations, "steps_open": steps.get_attribute("open")}


def play_and_seek(page: Page) -> dict:
    video = page.locator("#run-status .output video")
    expect(video).to_be_visible()
    return video.evaluate("""async (v) => {
        v.muted = true;
        await v.play();
        await new Promise(r => setTimeout(r, 300));
        v.pause();
        const seeked = new Promise((resolve, reject) => {
            v.addEventListener('seeked', () => resolve(true), {once: true});
            v.addEventListener('error', () => reject(new Error('media error ' + (v.error && v.error.code))),
                               {once: true});
        });
        v.currentTime = 1.5;
        await seeked;
        return {currentTime: v.currentTime, readyState: v.readyState, duration: v.duration,
                width: v.videoWidth, played: v.played.length};
    }""")


def test_sign_in_upload_run_watch_play_download_delete_sign_out(page: Page, live_l1, dev_l2, start_worker,
                                                                 media_files, shots, tmp_path):
    page.set_viewport_size(DESKTOP)
    inline_media: list[int] = []  # statuses of the player's requests for the output's bytes
    page.on("response", lambda r: inline_media.append(r.status) if "inline=1" in r.url else None)
    sign_in(page, live_l1, dev_l2, shots=shots)

    upload(page, media_files["image"])
    upload(page, media_files["video"])
    page.wait_for_load_state("networkidle")
    check_page(page, shots, "media")
    page.get_by_role("link", name="clip.mp4", exact=True).first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("clip.mp4")
    check_page(page, shots, "media-item")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Recipes").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Recipes")
    check_page(page, shots, "recipes-empty")
    page.get_by_label("…or paste the YAML").fill("name: broken\ndag: [unclosed\n")
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("alert")).to_contain_text("The recipe was not saved.")
    expect(page.get_by_label("…or paste the YAML")).to_have_attribute("aria-invalid", "true")
    check_page(page, shots, "recipes-error")
    page.get_by_label("…or paste the YAML").fill(RECIPE)
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("e2e-negative")
    expect(page.get_by_role("status").first).to_contain_text("Recipe e2e-negative uploaded.")
    check_page(page, shots, "recipe")

    chooser = page.get_by_label("Input clip")
    chooser.select_option(chooser.locator("option", has_text="clip.mp4 · video").get_attribute("value"))
    page.get_by_label("Output name (optional)", exact=True).fill("negative clip")  # the batch form has its own
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page).to_have_url(re.compile(r"/run/[0-9a-f]{64}$"))
    expect(page.locator("#run-status [role=status] .status")).to_have_text(re.compile("pending|queued"))
    check_page(page, shots, "run-pending")

    # A keyboard user on "Cancel run" keeps the focus while the status block is re-polled.
    cancel = page.get_by_role("button", name="Cancel run")
    tab_to(page, cancel)
    for _ in range(2):
        with page.expect_response(lambda r: r.url.endswith("/fragment")):
            pass
    page.wait_for_timeout(100)  # let htmx settle the swap
    expect(cancel).to_be_focused()

    seen = watch_run_live(page, start_worker, shots)
    assert seen["marker"] == "same-document", "the run page reloaded while the run progressed"
    assert seen["navigations"] == []
    assert seen["fragments"], "the page never polled its status fragment"
    assert {"state-pending", "state-queued", "state-completed"} <= seen["seen"], seen["seen"]
    assert seen["steps_open"] == "", "the Steps table closed itself when the run finished"
    expect(page.get_by_role("button", name="Publish to L2")).to_be_visible()  # also without a reload
    check_page(page)

    played = play_and_seek(page)
    assert played["readyState"] >= 2 and abs(played["currentTime"] - 1.5) < 0.1, played
    assert played["width"] == 192 and played["duration"] == pytest.approx(2, abs=0.2)
    assert 206 in inline_media, f"the player never got a byte range: {inline_media}"
    snap(page, shots, "run-done")

    output_hash = page.locator("#run-status .output a.hash").inner_text()
    with page.expect_download() as download_info:
        page.locator("#run-status").get_by_role("link", name="download JSON").click()
    saved = tmp_path / "provenance.json"
    download_info.value.save_as(saved)
    assert download_info.value.suggested_filename.startswith("provenance-")
    provenance = json.loads(saved.read_text())
    assert output_hash in json.dumps(provenance)
    run_url = page.url
    assert pages_fit_a_phone(page, live_l1.url, shots) == {}

    # An input a run still needs cannot be deleted from /media: the page says why.
    page.goto(f"{live_l1.url}/media")
    page.on("dialog", lambda dialog: dialog.accept())
    clip = media_card(page, "clip.mp4")
    clip.get_by_role("button", name="Delete").click()
    expect(page.locator("#media-status")).to_contain_text("cannot be deleted")
    expect(page.locator("#media-status")).to_contain_text("run:")
    expect(clip).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert page.evaluate(BROKEN_IMAGES) == [], "every preview, the rendered outputs' posters too, loads"
    check_page(page, shots, "media-delete-refused")
    # An item nothing needs goes at once, and the refusal above gives way to the news.
    media_card(page, "gradient.png").get_by_role("button", name="Delete").click()
    expect(media_card(page, "gradient.png")).to_have_count(0)
    expect(page.locator("#media-status")).to_have_text("Deleted gradient.png.")
    expect(page.locator("#media-grid")).to_contain_text("3 items in the cache.")

    # The run's delete button works; afterwards nothing holds the clip and it can go.
    page.goto(run_url)
    page.get_by_role("button", name="Delete run").click()
    expect(page).to_have_url(f"{live_l1.url}/runs")
    expect(page.get_by_role("status").first).to_contain_text("deleted")
    check_page(page, shots, "runs")
    page.goto(f"{live_l1.url}/recipes")
    check_page(page, shots, "recipes")
    page.goto(f"{live_l1.url}/run/{'0' * 64}")
    expect(page.get_by_role("alert")).to_contain_text("404")
    check_page(page, shots, "not-found")
    page.goto(f"{live_l1.url}/media")
    media_card(page, "clip.mp4").get_by_role("button", name="Delete").click()
    expect(media_card(page, "clip.mp4")).to_have_count(0)
    expect(page.locator("#media-status")).to_have_text("Deleted clip.mp4.")

    page.goto(f"{live_l1.url}/logout")
    check_page(page, shots, "sign-out")
    page.locator(".who").get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live_l1.url}/")
    expect(page.get_by_role("status").first).to_contain_text("signed out")
    expect(page.locator(".who")).to_contain_text("Sign in")
    check_page(page)
    page.goto(f"{live_l1.url}/media")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fmedia$"))


# Keyboard only ----------------------------------------------------------------------------------
#: Reports every real pointer press to the test, on every page the tab loads.
POINTER_SPY = """window.addEventListener('pointerdown', e => { if (e.isTrusted) window.__e2ePointer(e.type); }, true);
window.addEventListener('mousedown', e => { if (e.isTrusted) window.__e2ePointer(e.type); }, true);"""


def tab_to(page: Page, target) -> None:
    """Press Tab until `target` has the focus, and check the focus can be seen (an outline)."""
    visited = []
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            outline = target.evaluate("el => [getComputedStyle(el).outlineStyle, getComputedStyle(el).outlineWidth]")
            assert outline[0] != "none" and outline[1] != "0px", f"no visible focus on {target}: {outline}"
            return
        visited.append(page.evaluate("() => document.activeElement.outerHTML.slice(0, 80)"))
    raise AssertionError(f"Tab never reached {target}; focus went through: {visited}")


def pages_fit_a_phone(page: Page, base: str, shots: Path | None) -> dict[str, int]:
    """Visit the main pages at a phone's width; the ones wider than the screen, with their width."""
    run_page = page.url
    recipe = page.locator("a[href^='/recipe/']").first.get_attribute("href")
    media_item = page.locator(".inputs a.hash").first.get_attribute("href")
    page.set_viewport_size(PHONE)
    too_wide = {}
    for name, path in [("run", run_page), ("recipe", recipe), ("media-item", media_item), ("media", "/media"),
                       ("recipes", "/recipes"), ("runs", "/runs"), ("home", "/"),
                       ("not-found", f"/media/{'0' * 64}")]:
        page.goto(path if path.startswith("http") else base + path)
        if shots is not None:
            page.wait_for_load_state("networkidle")  # lazy previews, for the screenshot
        width = page.evaluate("() => document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            too_wide[name] = width
        snap(page, shots, f"phone-{name}")
    page.goto(run_page)
    page.set_viewport_size(DESKTOP)
    return too_wide


def test_keyboard_only_sign_in_upload_recipe_and_run(page: Page, live_l1, dev_l2, media_files):
    pointer: list[str] = []
    page.expose_function("__e2ePointer", lambda kind: pointer.append(kind))  # noqa: PLW0108 (needs a Python callable)
    page.add_init_script(POINTER_SPY)
    page.goto(f"{live_l1.url}/")

    # The first Tab shows the skip link, and it leads past the header into the page's content.
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    assert skip.bounding_box()["x"] >= 0, "the focused skip link stays off screen"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("() => !!document.activeElement.closest('main')"), "Tab after the skip link left <main>"

    # Sign in: header link, the L2 button, L2's form (Enter submits), Attach.
    tab_to(page, page.locator(".who").get_by_role("link", name="Sign in"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    tab_to(page, page.get_by_role("link", name=re.compile("Sign in with L2")))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"^{re.escape(dev_l2.url)}/login"))
    tab_to(page, page.get_by_label("User name"))
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type("alice")
    page.keyboard.press("Enter")
    tab_to(page, page.locator(".card.wanted").get_by_role("button", name="Attach"))
    page.keyboard.press("Enter")
    expect(page.locator(".who")).to_contain_text("@alice")

    # Upload: the nav link, the file input (Space opens the chooser), the button.
    tab_to(page, page.get_by_role("navigation", name="Main").get_by_role("link", name="Media"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Media")
    tab_to(page, page.get_by_label("Add a file"))
    with page.expect_file_chooser() as chooser:
        # A held key (not an instant down/up) opens Chromium's chooser reliably.
        page.keyboard.press("Space", delay=KEY_HOLD_MS)
    chooser.value.set_files(str(media_files["video"]))
    tab_to(page, page.get_by_role("button", name="Upload"))
    page.keyboard.press("Enter")
    expect(page.locator("#media-status")).to_contain_text("Uploaded clip.mp4")

    # Recipe: typed into the text area, then the form's Upload button.
    tab_to(page, page.get_by_role("navigation", name="Main").get_by_role("link", name="Recipes"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Recipes")
    tab_to(page, page.get_by_label("…or paste the YAML"))
    page.keyboard.type(RECIPE)
    page.keyboard.press("Tab")  # leaves the text area: Tab moves focus, it does not indent
    expect(page.get_by_role("button", name="Upload")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("e2e-negative")

    # Run: arrow keys choose the input, Enter on Run submits.
    chooser_box = page.get_by_label("Input clip")
    tab_to(page, chooser_box)
    for _ in range(5):
        if "clip.mp4" in chooser_box.evaluate("el => el.selectedOptions[0].textContent"):
            break
        page.keyboard.press("ArrowDown")
    expect(chooser_box.locator("option:checked")).to_contain_text("clip.mp4")
    tab_to(page, page.get_by_role("button", name="Run", exact=True))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/run/[0-9a-f]{64}$"))
    # No worker here: the journey above renders; this run stays live, so its page keeps polling.
    expect(page.locator("#run-status [role=status] .status")).to_have_text("pending")
    run_path = page.url.removeprefix(live_l1.url)

    # The runs list polls while the run is live; a focused run link keeps the focus, Enter opens it.
    tab_to(page, page.get_by_role("navigation", name="Main").get_by_role("link", name="Runs"))
    page.keyboard.press("Enter")
    run_link = page.locator(f"#runs-list a[href='{run_path}']")
    tab_to(page, run_link)
    for _ in range(2):
        with page.expect_response(lambda r: "/runs/fragment" in r.url):
            pass
    page.wait_for_timeout(100)  # let htmx settle the swap
    expect(run_link).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(live_l1.url + run_path)

    # Sign out from the header, still by keyboard, while the page polls.
    tab_to(page, page.locator(".who").get_by_role("button", name="Sign out"))
    page.keyboard.press("Enter")
    expect(page.locator(".who")).to_contain_text("Sign in")
    assert pointer == [], "the keyboard-only flow used the mouse"


def test_the_screen_reader_check_finds_each_kind_of_problem(page: Page):
    """The page check used above is not hollow: a page with each fault gets one finding per fault."""
    page.set_content("""<html lang="en"><head><title>bad</title></head><body><main>
        <h1>One</h1><h3>Skipped a level</h3><h1>Two</h1>
        <input name="nameless"><select><option>a</option></select><button></button>
        <label for="ok">Fine</label><input id="ok"><img src="data:,"><video controls></video>
        <a href="/a">download</a> <a href="/b">Download</a> <a href="/c"><img src="data:," alt="same"></a>
        <a href="/c">same</a>
        </main></body></html>""")
    found = "\n".join(accessibility_problems(page))
    for fault in ("expected one h1, found 2", "heading jumps from h1 to h3", "unnamed control: <input name",
                  "unnamed control: <select", "unnamed control: <button", "image without a text alternative",
                  "player without a name", "unnamed combobox in the accessibility tree",
                  'links named "download" go to 2 different places'):
        assert fault in found, fault
    assert "id=\"ok\"" not in found and '"same"' not in found
