"""Fixtures of the web page tests: accounts committed through the live server, forgotten afterwards."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, Page
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.browser import EXPECT_TIMEOUT_MS, PageLog
from tests.web.helpers import Accounts


@pytest.fixture
async def accounts(live_server: str, engine: AsyncEngine) -> AsyncIterator[Accounts]:
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        yield Accounts(http, engine)
    await forget_accounts(engine)


async def forget_accounts(engine: AsyncEngine) -> None:
    """Empty what these tests commit through the live server (accounts, sessions, events, custom
    roles); the signing keys stay, as the live server holds them for the whole run."""
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE users, refresh_tokens, auth_events CASCADE"))
        await conn.execute(text("DELETE FROM roles WHERE NOT built_in"))


# Chromium reports every 4xx page it loads on the console; a page that answers a refused form with
# its proper status (401 wrong code, 403, 422) makes one such report, and nothing else may appear.
_REFUSAL_REPORT = re.compile(
    r"console: Failed to load resource: the server responded with a status of 4\d\d "
)


@pytest.fixture
async def refusing_page(browser: Browser, live_server: str) -> AsyncIterator[Page]:
    """A page for flows whose refusals are part of the test: it fails the test on any request leaving
    the machine, any page error or CSP report, and any console report but a refused form's status."""
    log = PageLog()
    context = await browser.new_context(base_url=live_server, service_workers="block")
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    log.watch(context)
    yield await context.new_page()
    await context.close()
    assert log.outside() == [], "requests left the machine"
    assert [p for p in log.problems if not _REFUSAL_REPORT.match(p)] == [], "the page reported errors"
