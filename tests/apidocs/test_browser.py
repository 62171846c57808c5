"""/docs and /redoc in a real browser: they render from this service alone, with the network closed,
under a strict CSP; Authorize + "Try it out" work through the OAuth2 password flow."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.browser import PageLog, close_network
from tests.fixtures.helpers import API, PASSWORD, unique_email

PAGES = ("/docs", "/redoc")


async def operations(live_server: str) -> set[str]:
    """Every operation of the served spec, as "METHOD /path"."""
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        spec = (await http.get("/openapi.json")).json()
    return {f"{method.upper()} {path}" for path, item in spec["paths"].items() for method in item}


async def assert_rendered(page: Page, path: str, live_server: str) -> None:
    expected = await operations(live_server)
    if path == "/docs":
        # Swagger UI lists every operation of the spec.
        await expect(page.locator(".info .title")).to_contain_text("userapi")
        await expect(page.locator(".opblock-summary-path").first).to_be_visible()
        shown = await page.eval_on_selector_all(
            ".opblock-summary",
            """blocks => blocks.map(b => b.querySelector(".opblock-summary-method").textContent + " "
                                    + b.querySelector(".opblock-summary-path").dataset.path)""",
        )
    else:
        # ReDoc's panels: the title, then a section per operation with its method and path.
        await expect(page.locator(".api-info h1")).to_contain_text("userapi")
        await expect(page.locator("[data-section-id^='operation/']").first).to_be_visible()
        shown = await page.eval_on_selector_all(
            "[data-section-id^='operation/']",
            """sections => sections.map(s => s.querySelector(".http-verb").textContent.toUpperCase() + " "
                                       + s.querySelector(".http-verb").nextElementSibling.textContent)""",
        )
    assert set(shown) == expected


@pytest.mark.parametrize("path", PAGES)
async def test_page_renders_and_nothing_leaves_the_machine(
    page: Page, page_log: PageLog, live_server: str, path: str
) -> None:
    await page.goto(path)
    await assert_rendered(page, path, live_server)
    assert any(url.endswith(".js") for url in page_log.requests)  # the log saw the assets
    assert page_log.outside() == []
    assert page_log.problems == []


@pytest.mark.parametrize("path", PAGES)
async def test_page_renders_with_the_network_closed(
    browser_context: BrowserContext, page_log: PageLog, live_server: str, path: str
) -> None:
    await close_network(browser_context)
    page = await browser_context.new_page()
    await page.goto(path)
    await assert_rendered(page, path, live_server)
    assert page_log.outside() == []
    assert page_log.problems == []


async def test_the_page_log_sees_a_third_party_asset(browser: Browser, live_server: str) -> None:
    """The check above can fail: a page that asks a CDN for its script is caught, offline or not."""
    log = PageLog()
    context = await browser.new_context(base_url=live_server)
    try:
        log.watch(context)
        await close_network(context)
        page = await context.new_page()
        cdn = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"
        await page.set_content(f'<script src="{cdn}"></script>')
        assert log.outside() == [cdn]
    finally:
        await context.close()


@pytest.fixture
async def registered(live_server: str, engine: AsyncEngine) -> AsyncIterator[dict[str, Any]]:
    """A user registered through the live server (committed); deleted afterwards."""
    email = unique_email("docs")
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        response = await http.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    user = dict(response.json())
    yield user
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": uuid.UUID(user["id"])})


async def test_authorize_then_try_it_out_on_users_me(
    browser_context: BrowserContext, page_log: PageLog, registered: dict[str, Any]
) -> None:
    await close_network(browser_context)
    page = await browser_context.new_page()
    await page.goto("/docs")

    # Authorize: the OAuth2 password flow posts the form to POST /api/v1/auth/token.
    await page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".dialog-ux")
    await dialog.locator("#oauth_username").fill(registered["email"])
    await dialog.locator("#oauth_password").fill(PASSWORD)
    async with page.expect_response(f"**{API}/auth/token") as token_response:
        await dialog.locator(".auth-btn-wrapper button.authorize").click()
    assert (await token_response.value).status == 200
    await expect(dialog.get_by_role("heading", name="Authorized")).to_be_visible()
    await dialog.get_by_role("button", name="Close").click()

    # Try it out + Execute on GET /api/v1/users/me.
    operation = page.locator(".opblock-get", has=page.locator(f'[data-path="{API}/users/me"]'))
    await operation.locator(".opblock-summary").click()
    await operation.locator("button.try-out__btn").click()
    async with page.expect_response(f"**{API}/users/me") as me_response:
        await operation.locator("button.execute").click()
    response = await me_response.value
    assert response.status == 200
    assert (await response.request.all_headers())["authorization"].startswith("Bearer ")
    live = operation.locator(".live-responses-table tr.response")  # the server's answer, as shown
    await expect(live.locator(".response-col_status")).to_have_text("200")
    await expect(live.locator(".response-col_description")).to_contain_text(registered["email"])
    assert page_log.outside() == []
