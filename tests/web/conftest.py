"""Fixtures of the web page tests: accounts committed through the live server, forgotten afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

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
