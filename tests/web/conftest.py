"""Fixtures of the web page tests: the live server on a database of their own, accounts committed
through it (forgotten after each test), and a page for flows whose refusals are expected."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, Page
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.browser import EXPECT_TIMEOUT_MS, LiveServer, PageLog
from tests.fixtures.database import scratch_database
from tests.fixtures.helpers import make_settings
from tests.web.helpers import Accounts
from userapi.core.config import to_async_url
from userapi.db import migrate
from userapi.db.session import build_engine


@pytest.fixture(scope="session")
async def web_database_url(server_url: str) -> AsyncIterator[str]:
    """A migrated database for the browser tests alone: they commit, empty tables and count admins
    (the last-admin rule), which must not meet other test workers' committed rows."""
    async with scratch_database(server_url, "userapi_web") as url:
        await asyncio.to_thread(migrate.upgrade, to_async_url(url))
        yield url


@pytest.fixture(scope="session")
async def web_engine(web_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = build_engine(make_settings(web_database_url), pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def live_server(web_database_url: str) -> AsyncIterator[str]:
    """tests.fixtures.browser's live server, here on the web tests' own database."""
    settings = make_settings(web_database_url, access_log=False, db_pool_size=4, db_read_pool_size=2)
    async with LiveServer(settings) as url:
        yield url


@pytest.fixture
async def accounts(live_server: str, web_engine: AsyncEngine) -> AsyncIterator[Accounts]:
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        yield Accounts(http, web_engine)
    await forget_accounts(web_engine)


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
