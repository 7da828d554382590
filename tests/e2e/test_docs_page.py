"""/docs in a real browser, with nothing reachable but the server: Swagger UI loads and lists every operation.

Debian's Chromium (/usr/bin/chromium, `apt-get install -y chromium`; .ci/run installs it)
driven by Playwright; the test skips, saying so, where it is missing. Every request the
page makes outside the server is refused and recorded, so the page must work offline.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason=f"needs Chromium at {CHROMIUM} (apt-get install -y chromium)"
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (dev extra)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def test_the_docs_page_lists_every_operation_offline(start_server: Callable[..., Server], browser: Any) -> None:
    server = start_server()
    document = httpx.get(f"{server.url}/openapi.json").json()
    operations = sum(len(path_item) for path_item in document["paths"].values())
    page = browser.new_page()
    outside: list[str] = []

    def only_the_server(route: Any) -> None:
        if route.request.url.startswith(server.url + "/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_server)
    page.goto(f"{server.url}/docs")
    video = page.locator('.opblock-summary-path[data-path="/api/v1/videos/generate"]')
    video.wait_for(state="visible", timeout=30_000)
    assert page.locator(".opblock-post .opblock-summary-path", has_text="/api/v1/videos/generate").is_visible()
    assert page.locator(".opblock").count() == operations
    assert page.locator(".errors-wrapper").count() == 0  # Swagger UI found nothing wrong in the document
    assert outside == []
    page.close()
