"""The web console in a real browser: Debian's Chromium driven by Playwright, against one
`hypereal serve` with its worker, shared by the module.

Each test works on an account of its own. The screens are photographed into docs/screenshots/
(the README shows some), and axe-core, vendored with the console, checks each screen for
serious or critical accessibility violations in the same browser. Skipped, saying why,
without Playwright or without Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_HEADERS, ADMIN_KEY, Server
from tests.e2e.test_docs_examples import NO_UPSTREAM_KEYS

sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need Playwright (the dev extra)")
CHROMIUM = Path(os.environ.get("TEST_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.exists():
    pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

Browser = sync_api.Browser
BrowserContext = sync_api.BrowserContext
Page = sync_api.Page
expect = sync_api.expect

SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 860}
JOB_SECONDS = 120_000  # milliseconds, as Playwright counts


@dataclass
class Console:
    server: Server
    browser: Browser
    problems: list[str] = field(default_factory=list)
    """Script errors and Content-Security-Policy refusals seen on any page."""

    @property
    def url(self) -> str:
        return self.server.url

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api/v1", timeout=60)

    def account(self, name: str = "Browser test", credits: int = 1000) -> tuple[str, str]:
        """A new account and its key, made through the admin API."""
        with self.api() as client:
            account = client.post("/admin/accounts", json={"name": name, "credits": credits}, headers=ADMIN_HEADERS)
            key = client.post(f"/admin/accounts/{account.json()['id']}/keys", json={}, headers=ADMIN_HEADERS)
        return account.json()["id"], key.json()["key"]

    def context(self) -> BrowserContext:
        context = self.browser.new_context(viewport=VIEWPORT, base_url=self.url)
        context.on("page", self._watch)
        return context

    def _watch(self, page: Page) -> None:
        page.on("pageerror", lambda error: self.problems.append(f"{page.url}: {error}"))
        page.on(
            "console",
            lambda message: (
                self.problems.append(f"{page.url}: {message.text}")
                if message.type == "error" and "Content Security Policy" in message.text
                else None
            ),
        )

    def signed_in(self, key: str) -> Page:
        page = self.context().new_page()
        page.goto("/sign-in")
        page.fill("#key", key)
        page.click("form button[type=submit]")
        page.wait_for_load_state()
        return page


@pytest.fixture(scope="module")
def console(start_server: Callable[..., Server]) -> Iterator[Console]:
    server = start_server(env=dict(NO_UPSTREAM_KEYS), worker=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield Console(server, browser)
        finally:
            browser.close()


@pytest.fixture(autouse=True)
def no_script_problems(console: Console) -> Iterator[None]:
    console.problems.clear()
    yield
    assert console.problems == []


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def balance_on(page: Page) -> float:
    page.goto("/")
    return float(page.text_content("[data-testid=balance]").replace(",", ""))  # type: ignore[union-attr]


def test_sign_in_and_out(console: Console) -> None:
    page = console.context().new_page()
    page.goto("/keys")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=/keys$"))
    screenshot(page, "sign-in")
    page.fill("#key", "ck_not-a-key")
    page.click("form button[type=submit]")
    expect(page.locator("[role=alert]")).to_contain_text("not accepted")

    _, key = console.account("Sign in and out")
    page.fill("#key", key)
    page.click("form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/keys$"))
    assert key not in page.content()
    assert all(key not in cookie["value"] for cookie in page.context.cookies())
    session = next(cookie for cookie in page.context.cookies() if cookie["name"] == "hypereal_session")
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    assert page.evaluate("document.cookie") == ""  # nothing readable by scripts

    page.click("text=Sign out")
    expect(page).to_have_url(re.compile(r"/sign-in$"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/sign-in$"))


def test_a_key_made_in_the_console_works_on_the_api_and_its_call_shows_in_usage(console: Console) -> None:
    _, key = console.account("Keys and usage")
    page = console.signed_in(key)
    before = balance_on(page)

    page.goto("/keys")
    page.fill("#name", "made in the browser")
    page.fill("#limit", "50")
    page.click("text=Create key")
    secret = page.text_content("#new-key-value")
    assert secret and secret.startswith("ck_")
    expect(page.locator("[data-copy=new-key-value]")).to_be_visible()
    screenshot(page, "keys")

    with httpx.Client(base_url=console.url, timeout=30) as client:
        answer = client.post(
            "/v1/chat/completions",
            json={"model": "local-echo", "messages": [{"role": "user", "content": "counted in usage"}]},
            headers={"Authorization": f"Bearer {secret}"},
        )
    assert answer.status_code == 200 and answer.headers["x-ratelimit-limit"] == "50"

    page.goto("/keys")
    row = page.locator("tr", has_text="made in the browser")
    expect(row.locator("td.num").nth(1)).to_have_text("1")  # requests this hour

    page.goto("/usage?group_by=key")
    expect(page.locator("[data-testid=usage-groups]")).to_contain_text("made in the browser")
    page.select_option("#key", page.locator("#key option", has_text="made in the browser").get_attribute("value"))
    page.click("text=Apply")
    ledger = page.locator("[data-testid=ledger] tbody tr")
    expect(ledger.first).to_contain_text("local-echo")
    assert ledger.count() == 2  # the charge and its settlement
    export = page.locator("text=Export CSV")
    assert "key=" in (export.get_attribute("href") or "")
    screenshot(page, "usage")
    assert balance_on(page) < before


def test_the_playground_generates_each_kind_and_the_gallery_plays_them(console: Console) -> None:
    _, key = console.account("Playground", credits=500)
    page = console.signed_in(key)
    page.goto("/playground")

    page.fill("#chat-input", "Hello, streaming world")
    page.click("#chat-form button[type=submit]")
    expect(page.locator("[data-role=assistant]").last).to_contain_text("Hello, streaming world")
    expect(page.locator("#chat-curl")).to_contain_text("/api/v1/chat/completions")

    generate(page, "image", "local-image", {"#param-prompt": "a lighthouse on a cliff at dusk"}, "img", "1 credit")
    generate(
        page,
        "video",
        "local-video-t2v",
        {"#param-prompt": "waves, slow pan left", "#param-duration": "2"},
        "video",
        "2 credits",
    )
    generate(page, "audio", "local-tts", {"#param-text": "Hello from the console"}, "audio", "1 credit")
    page.click("#media-tabs [data-category='3d']")
    page.select_option("#media-model", "local-3d-relief")
    page.select_option("#param-image-pick", index=1)  # the image made above
    expect(page.locator("#media-price")).to_have_text("2 credits")
    page.click("#media-submit")
    expect(page.locator("#media-result model-viewer")).to_be_attached(timeout=JOB_SECONDS)
    expect(page.locator("#media-curl")).to_contain_text("/api/v1/3d/generate")
    screenshot(page, "playground")

    page.goto("/generations")
    tiles = page.locator("article.tile")
    expect(tiles).to_have_count(4)
    image = page.locator("img[data-kind=image]").first
    assert image.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    assert image.get_attribute("src", timeout=1000).endswith(".webp")  # the thumbnail, not the original
    video = page.locator("video[data-kind=video]").first
    assert video.get_attribute("poster")
    played = video.evaluate(
        "async v => { await v.play(); await new Promise(r => setTimeout(r, 1200)); return v.currentTime; }"
    )
    assert played > 0
    duration = page.locator("audio[data-kind=audio]").first.evaluate(
        "a => a.duration > 0 ? a.duration : new Promise(r => a.addEventListener('loadedmetadata', () => r(a.duration)))"
    )
    assert duration > 0.3
    viewer = page.locator("model-viewer").first
    viewer.scroll_into_view_if_needed()
    viewer.evaluate(WAIT_FOR_MODEL)
    drawn = viewer.evaluate("m => m.toDataURL('image/png')")
    assert_drawn(drawn)
    screenshot(page, "generations")

    page.goto("/")
    expect(page.locator("canvas[data-chart=stacked]")).to_be_visible()
    page.locator("model-viewer").first.evaluate(WAIT_FOR_MODEL)
    screenshot(page, "overview")
    page.goto("/models?category=video")
    page.screenshot(path=str(SCREENSHOTS / "models.png"))  # the first screenful: the catalog is long
    page.goto("/generations")
    tiles.filter(has=page.locator("video")).locator("a").first.click()
    expect(page.locator("[data-testid=params]")).to_contain_text('"duration": 2')
    expect(page.locator("dl.facts")).to_contain_text("completed")
    screenshot(page, "generation")


WAIT_FOR_MODEL = """async viewer => {
    viewer.scrollIntoView();  // a lazy viewer loads once it is in view
    if (!viewer.loaded) await new Promise((done, fail) => {
        viewer.addEventListener('load', done, {once: true});
        setTimeout(() => fail(new Error('the 3D model did not load')), 30000);
    });
    await new Promise(done => setTimeout(done, 500));  // a few frames drawn
}"""


def generate(page: Page, category: str, model: str, fields: dict[str, str], element: str, price: str) -> None:
    page.click(f"#media-tabs [data-category='{category}']")
    page.select_option("#media-model", model)
    for selector, value in fields.items():
        page.fill(selector, value)
    expect(page.locator("#media-price")).to_have_text(price)
    page.click("#media-submit")
    expect(page.locator(f"#media-result {element}")).to_be_attached(timeout=JOB_SECONDS)


def assert_drawn(data_url: str) -> None:
    """The 3D viewer's canvas holds a picture: opaque pixels of more than one colour."""
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as picture:
        pixels = picture.convert("RGBA").getdata()
        opaque = {pixel[:3] for pixel in pixels if pixel[3] > 200}
    assert len(opaque) > 50, f"the 3D canvas is blank ({len(opaque)} colours)"


def test_an_operators_top_up_reaches_the_users_console(console: Console) -> None:
    account_id, key = console.account("Topped up by the operator", credits=100)
    user = console.signed_in(key)
    assert balance_on(user) == 100

    operator = console.signed_in(ADMIN_KEY)
    expect(operator).to_have_url(re.compile(r"/admin$"))
    operator.fill("#q", "Topped up")
    operator.click("text=Search")
    operator.click("text=Topped up by the operator")
    expect(operator).to_have_url(re.compile(f"/admin/accounts/{account_id}$"))
    operator.fill("#amount", "150")
    operator.click("text=Add credits")  # the browser holds the form back: the minimum is 200
    assert operator.locator("#amount").evaluate("input => input.validity.rangeUnderflow")
    expect(operator.locator("[data-testid=balance]")).to_have_text("100")
    operator.fill("#amount", "250")
    operator.click("text=Add credits")
    expect(operator.locator("[data-testid=balance]")).to_have_text("350")
    screenshot(operator, "admin-account")
    operator.goto("/admin")
    screenshot(operator, "admin-accounts")
    operator.goto("/admin/system")
    expect(operator.locator("[data-testid=providers]")).to_contain_text("local")
    screenshot(operator, "admin-system")

    assert balance_on(user) == 350


def test_a_revoked_keys_session_ends(console: Console) -> None:
    _, key = console.account("Revoked")
    page = console.signed_in(key)
    expect(page.locator("h1")).to_have_text("Revoked")
    with console.api() as client:
        keys = client.get("/account/keys", headers={"Authorization": f"Bearer {key}"}).json()["data"]
        assert client.delete(f"/admin/keys/{keys[0]['id']}", headers=ADMIN_HEADERS).status_code == 204
    page.reload()
    expect(page).to_have_url(re.compile(r"/sign-in$"))


def test_a_script_in_a_prompt_is_shown_as_text(console: Console) -> None:
    _, key = console.account('<script>window.pwned = "name"</script>')
    prompt = '<script>window.pwned = "prompt"</script><img src=x onerror="window.pwned = 1">'
    with console.api() as client:
        made = client.post(
            "/images/generate",
            json={"model": "local-image", "prompt": prompt},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert made.status_code == 200
    page = console.signed_in(key)
    for path in ("/", "/generations", f"/generations/{made.json()['jobId']}"):
        page.goto(path)
        expect(page.locator("main")).to_contain_text('<script>window.pwned = "prompt"</script>')
        assert page.evaluate("window.pwned") is None
    page.goto("/")
    expect(page.locator("h1")).to_have_text('<script>window.pwned = "name"</script>')


def test_a_form_post_without_the_csrf_token_is_refused(console: Console) -> None:
    _, key = console.account("Forged forms")
    page = console.signed_in(key)
    forged = page.request.post("/keys", form={"name": "forged"})
    assert forged.status == 403
    wrong = page.request.post("/keys", form={"name": "forged", "csrf": "guessed"})
    assert wrong.status == 403
    # A script of another origin could send the form but not the header the API asks for.
    api = page.request.post("/api/v1/account/keys", data={"name": "forged"})
    assert api.status == 403
    page.goto("/keys")
    expect(page.locator("tbody tr")).to_have_count(1)


SCREENS = ["/", "/keys", "/usage", "/generations", "/playground", "/models?category=video", "/webhooks"]
OPERATOR_SCREENS = ["/admin", "/admin/system"]


def test_no_serious_accessibility_violations(console: Console) -> None:
    account_id, key = console.account("Accessibility")
    with console.api() as client:
        job = client.post(
            "/images/generate",
            json={"model": "local-image", "prompt": "a quiet harbour"},
            headers={"Authorization": f"Bearer {key}"},
        ).json()["jobId"]
    user = console.signed_in(key)
    operator = console.signed_in(ADMIN_KEY)
    signed_out = console.context().new_page()
    pages: list[tuple[Page, str]] = [(signed_out, "/sign-in")]
    pages += [(user, path) for path in [*SCREENS, f"/generations/{job}"]]
    pages += [(operator, path) for path in [*OPERATOR_SCREENS, f"/admin/accounts/{account_id}"]]
    found: dict[str, list[str]] = {}
    for page, path in pages:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        if path == "/webhooks":
            page.click("text=Reveal")
            screenshot(page, "webhooks")
        serious = axe_violations(page)
        if serious:
            found[path] = serious
    assert found == {}


def axe_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page, as `rule: target` lines."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(url="/static/vendor/axe.min.js")
    results: dict[str, Any] = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{violation['id']} ({violation['impact']}): {node['target']}"
        for violation in results["violations"]
        if violation["impact"] in ("serious", "critical")
        for node in violation["nodes"]
    ]
