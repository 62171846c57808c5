"""Liveness and readiness: ready only when the database answers and is at the head revision."""

from __future__ import annotations

import httpx

from tests.fixtures.app import build_test_app
from tests.fixtures.helpers import REVISIONS, free_port, make_settings
from userapi.core.config import Settings
from userapi.db.session import build_engine


async def test_live(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_at_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text


async def _ready(settings: Settings) -> httpx.Response:
    engine = build_engine(settings)
    try:
        app = build_test_app(settings, engine, None)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/health/ready")
    finally:
        await engine.dispose()


async def test_not_ready_when_database_is_behind_head(empty_database_url: str) -> None:
    response = await _ready(make_settings(empty_database_url))
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "0001" in response.json()["detail"]
    assert REVISIONS[-1] in response.json()["detail"]


async def test_not_ready_when_database_is_unreachable() -> None:
    url = f"postgresql://nobody:pw@127.0.0.1:{free_port()}/nothing"
    response = await _ready(make_settings(url, db_pool_timeout=2))
    assert response.status_code == 503
    assert "unreachable" in response.json()["detail"]
