"""The typed, frozen runtime of one process (settings, engine, pools, hasher, token codec, throttle).

Built once by the app factory and reached by routes through one dependency, `RuntimeDep`; tests
replace it with `app.dependency_overrides[get_runtime]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from userapi.core.client import IPNetwork
from userapi.core.config import Settings
from userapi.core.security import PasswordHasher, TokenCodec
from userapi.core.throttle import Throttle
from userapi.db.reads import ReadPool


@dataclass(frozen=True, slots=True)
class Runtime:
    """What a process builds once and every request shares; nothing in it is per-request."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # Bound to its asyncpg pool by the app's lifespan (tests bind it to their own connection).
    reads: ReadPool
    hasher: PasswordHasher
    tokens: TokenCodec
    throttle: Throttle
    trusted_proxies: tuple[IPNetwork, ...]


async def get_runtime(request: Request) -> Runtime:
    """The process's runtime (`async def`: FastAPI would run a plain `def` in a worker thread)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
