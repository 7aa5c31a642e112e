"""``/docs`` works without internet (issue 13, defect 4): Swagger UI renders in a real browser
that can reach nothing but the gateway, logs in through the gateway and runs a request.

The browser is Debian's Chromium (``apt-get install chromium``) driven by Playwright for
Python; Playwright's own browser downloads are never used. Without either the test skips,
unless ``MODELGATE_BROWSER_REQUIRED=1`` (CI), when it fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from modelgate_shared.stack import Stack

from ..conftest import sign_up

CHROMIUM = "/usr/bin/chromium"
# The gateway under a name that is not localhost, as deployed: Swagger UI treats localhost
# specially (it never calls its online validator there).
DOCS_HOST = "modelgate-docs.test"
PREDICT_PATH = "/v1/models/{name}/predict"


def _browser_missing() -> str | None:
    missing = []
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("Playwright for Python (pip install playwright; never `playwright install`)")
    if shutil.which(CHROMIUM) is None:
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    return " and ".join(missing) or None


@pytest.fixture
async def browser_page(stack: Stack) -> AsyncIterator[tuple[Any, str, list[str], list[str]]]:
    """A page in a fresh browser context that reaches the gateway only: every other request
    is aborted and listed. Yields (page, the gateway's origin, requests that tried to leave,
    page errors and CSP violations)."""
    missing = _browser_missing()
    if missing:
        reason = f"no browser for the docs test: {missing} is missing"
        if os.environ.get("MODELGATE_BROWSER_REQUIRED") == "1":
            pytest.fail(reason + " (MODELGATE_BROWSER_REQUIRED=1)")
        pytest.skip(reason)
    from playwright.async_api import Route, async_playwright

    port = urlsplit(stack.gateway_url).port
    origin = f"http://{DOCS_HOST}:{port}"
    left: list[str] = []
    problems: list[str] = []

    async def only_the_gateway(route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("http", "https") and (url.hostname, url.port) != (DOCS_HOST, port):
            left.append(route.request.url)
            await route.abort("internetdisconnected")
        else:
            await route.continue_()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            # The name resolves to the gateway; no proxy from the environment is used.
            args=[f"--host-resolver-rules=MAP {DOCS_HOST} 127.0.0.1", "--no-proxy-server"],
        )
        try:
            context = await browser.new_context()
            await context.route("**/*", only_the_gateway)
            page = await context.new_page()
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on(
                "response",
                lambda answer: (
                    problems.append(f"{answer.status} from {answer.request.method} {answer.url}")
                    if answer.status >= 400
                    else None
                ),
            )
            page.on(
                "console",
                lambda message: (
                    problems.append(f"console: {message.text}")
                    if message.type == "error" or "Content Security Policy" in message.text
                    else None
                ),
            )
            yield page, origin, left, problems
        finally:
            await browser.close()


async def test_docs_render_offline_and_log_in_through_the_gateway(
    browser_page: tuple[Any, str, list[str], list[str]], gateway: httpx.AsyncClient
) -> None:
    page, origin, left, problems = browser_page
    username, password, _ = await sign_up(gateway)
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    async def shown(locator: Any, what: str) -> Any:
        try:
            await locator.wait_for(timeout=30_000)
        except PlaywrightTimeout:
            pytest.fail(f"{what} not shown; requests that tried to leave: {left}; problems: {problems}")
        return locator

    response = await page.goto(f"{origin}/docs")
    assert response is not None and response.status == 200

    # Swagger UI rendered the merged spec: the operations and the Authorize button.
    await shown(page.locator(f'.opblock-post [data-path="{PREDICT_PATH}"]'), "the predict operation")
    assert await page.locator('[data-path="/v2/models/{name}/infer"]').count() >= 1
    authorize = await shown(page.locator("button.authorize").first, "the Authorize button")

    # Log in with the password flow, as a person would: the token request goes to the gateway.
    await authorize.click()
    await page.fill("#oauth_username", username)
    await page.fill("#oauth_password", password)
    await page.locator(".auth-container button.authorize").first.click()
    await shown(page.locator(".auth-container button", has_text="Logout").first, "the logged-in state (Logout)")
    await page.locator(".auth-container button.btn-done").first.click()

    # "Try it out" on the model list, with the token the page holds.
    models = page.locator('.opblock-get:has([data-path="/v1/models"])').first
    await models.locator(".opblock-summary").click()
    await models.locator("button.try-out__btn").click()
    await models.locator("button.execute").click()
    status = await shown(models.locator(".live-responses-table tr.response .response-col_status").first, "the response")
    assert (await status.inner_text()).strip() == "200"

    assert left == [], f"requests that tried to leave the gateway: {left}"
    # Nothing was refused by the page's CSP (it would be a console error) or failed otherwise.
    assert problems == []
    assert "default-src 'none'" in response.headers["content-security-policy"]
