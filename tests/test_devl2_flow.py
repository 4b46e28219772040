"""The whole sign-in flow over real HTTP: dev L2 password form → Attach → L1 → L2 logout."""

import re

import requests

JSON = {"Accept": "application/json"}


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_full_flow_sign_in_on_l2_attach_use_l1_then_log_out_on_l2(live_l1, dev_l2):
    browser = requests.Session()
    # L1 sends an anonymous browser to its login page, which links to L2's Renderers page.
    start = browser.get(f"{live_l1.url}/media", timeout=10)
    assert start.url.startswith(f"{live_l1.url}/login?next=")
    l2_link = re.search(r'href="([^"]+/renderers[^"]*)"', start.text).group(1).replace("&amp;", "&")
    # L2 asks for a password first, then shows the Renderers page.
    login_page = browser.get(l2_link, timeout=10)
    assert "Sign in" in login_page.text and login_page.url.startswith(f"{dev_l2.url}/login")
    renderers = browser.post(f"{dev_l2.url}/login", timeout=10, data={
        "username": "alice", "password": "alice", "csrf_token": csrf(login_page.text),
        "next": re.search(r'name="next" value="([^"]*)"', login_page.text).group(1).replace("&amp;", "&")})
    assert "Renderers" in renderers.text and live_l1.url in renderers.text
    # Attach: L2 → L1 /auth?auth_token=… → 303 to the clean page the user first asked for.
    attach = browser.post(f"{dev_l2.url}/renderers/attach", timeout=10, allow_redirects=False, data={
        "l1": live_l1.url, "next": "/media", "csrf_token": csrf(renderers.text)})
    assert attach.status_code == 303 and attach.headers["Location"].startswith(f"{live_l1.url}/auth?")
    token = attach.headers["Location"].split("auth_token=")[1].split("&")[0]
    landed = browser.get(attach.headers["Location"], timeout=10, allow_redirects=False)
    assert landed.status_code == 303 and landed.headers["Location"] == "/media"
    assert landed.headers["Referrer-Policy"] == "no-referrer"
    assert browser.get(f"{live_l1.url}/auth/whoami", timeout=10).json()["username"] == "alice"
    assert requests.get(f"{live_l1.url}/auth/whoami", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).json()["username"] == "alice"
    # Logging out on L2 makes L2 call L1's /auth/revoke-user: cookie and Bearer both stop working.
    page = browser.get(f"{dev_l2.url}/renderers", timeout=10).text
    bye = browser.post(f"{dev_l2.url}/logout", data={"csrf_token": csrf(page)}, timeout=10)
    assert "1 renderer(s) told" in bye.text
    assert browser.get(f"{live_l1.url}/auth/whoami", headers=JSON, timeout=10).status_code == 401
    assert requests.get(f"{live_l1.url}/auth/whoami", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 401
