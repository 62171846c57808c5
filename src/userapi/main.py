"""App factory: builds the process runtime (engine, pools, security helpers) and mounts the routes."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from userapi import __version__
from userapi.api import OPENAPI_TAGS, include_routes
from userapi.apidocs.router import install_docs
from userapi.core.client import TrustedProxyHeaders
from userapi.core.config import Settings, get_settings
from userapi.core.exception_handlers import install_exception_handlers
from userapi.core.http import HttpConventions
from userapi.core.keyring import KeyRing
from userapi.core.logging import configure_logging
from userapi.core.metrics import track_pool
from userapi.core.middleware import BodySizeLimit, RequestContext
from userapi.core.openapi import install_openapi
from userapi.core.runtime import Runtime
from userapi.core.security import PasswordHasher, TokenCodec, hmac_key_entry
from userapi.core.throttle import Throttle
from userapi.db.reads import ReadPool, bind_to_pool, create_pool, read_dsn
from userapi.db.session import build_engine, build_sessionmaker
from userapi.keys.service import key_loader
from userapi.mail.transport import build_transport
from userapi.mail.worker import DeliveryWorker
from userapi.web.pages import error_page
from userapi.web.router import install_web

# Net container allocations between young-generation collections (CPython's default is 700).
GC_GEN0_THRESHOLD = 10_000


def build_token_codec(settings: Settings, engine: AsyncEngine) -> TokenCodec:
    """The access-token codec over a key ring that loads from `engine` (tests pass their own)."""
    keyring = KeyRing(
        # Its own short transactions on the engine (never a request's): keys are shared state.
        loader=key_loader(lambda: build_sessionmaker(engine), settings),
        refresh_seconds=settings.keys_refresh_seconds,
        fixed_signer=hmac_key_entry(settings.jwt_secret) if settings.jwt_algorithm == "HS256" else None,
    )
    return TokenCodec(settings, keyring)


def build_runtime(settings: Settings) -> Runtime:
    """The process runtime for `settings`; no connection is opened until a request needs one.

    Built once per process: per-request construction would cost on every call.
    """
    engine = build_engine(settings)
    return Runtime(
        settings=settings,
        engine=engine,
        sessionmaker=build_sessionmaker(engine),
        reads=ReadPool(),  # bound to its pool by the lifespan (or to a test's connection)
        hasher=PasswordHasher(settings.bcrypt_rounds),
        tokens=build_token_codec(settings, engine),
        throttle=Throttle(settings),
        trusted_proxies=tuple(ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app; its runtime is `app.state.runtime`, read by routes only through `RuntimeDep`."""
    settings = settings or get_settings()
    # Mail settings are checked before anything starts (ConfigError names the setting).
    transport = build_transport(settings)
    runtime = build_runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        track_pool(runtime.engine)
        read_pool = await create_pool(settings)
        bind_to_pool(runtime.reads, read_pool, settings.db_pool_timeout)
        # Start-up loads the key set (creating the first key if none can sign): a key that does
        # not open with KEY_ENCRYPTION_SECRET stops the process here, not a request later.
        await runtime.tokens.keys.load()
        warm_up = asyncio.create_task(runtime.hasher.warm_up())
        # One delivery worker per process; SKIP LOCKED lets any number share the outbox.
        delivery: tuple[DeliveryWorker, asyncio.Task[None]] | None = None
        if transport is not None:
            worker = DeliveryWorker(runtime.sessionmaker, transport, settings, read_dsn(settings))
            delivery = (worker, asyncio.create_task(worker.run()))
        # What start-up made lives as long as the process: move it out of the collector's way,
        # so full collections stop walking it (they stalled requests ~75 ms under load).
        gc.collect()
        gc.freeze()
        # Young-generation collections every 10,000 net allocations, not 700: under load each one
        # walked the objects of every request in flight, ~130 times a second, and promoted them to
        # where full collections walk them again (GC ~4 % of a worker's CPU, gen2 every ~1 s at
        # 5-16 ms). Measured with 64 requests in flight: gen0 collections 3,237 -> 26 in a run, GC
        # CPU about a quarter, pauses at most ~10 ms (bench/README.md, issue 17).
        gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
        try:
            yield
        finally:
            if delivery is not None:
                await delivery[0].stop(delivery[1])
            warm_up.cancel()
            await runtime.tokens.keys.aclose()
            await read_pool.close()
            await runtime.engine.dispose()

    app = FastAPI(
        title="userapi",
        version=__version__,
        summary="Users, authentication and role-based access control.",
        description="Errors are RFC 9457 problem documents (`application/problem+json`) with a stable "
        "`code`. Sign in with **Authorize** (an email and password) to try the protected operations.",
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
        # No redirect is ever built from the request's Host header (Starlette's trailing-slash
        # redirect echoes it: `Host: evil.example` got `Location: http://evil.example/...`).
        # Paths have no trailing slash; with one they are an ordinary 404 problem document.
        redirect_slashes=False,
        # FastAPI's own pages load Swagger UI, ReDoc and fonts from CDNs: install_docs serves ours.
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_exception_handlers(app, error_page=error_page)
    install_openapi(app)
    include_routes(app)
    install_docs(app)
    install_web(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, error_page=error_page)
    # Outside the body limit, so HEAD and 204 rules hold for its 413s too.
    app.add_middleware(HttpConventions)
    # Decides the client (and scheme) once, in place: routes, audit, throttles and the access log agree.
    app.add_middleware(TrustedProxyHeaders, trusted=runtime.trusted_proxies)
    # Added last, so outermost: it sees every response, the 413s included.
    app.add_middleware(RequestContext, access_log=settings.access_log)
    return app


def app_from_env() -> FastAPI:
    """Entry point for `uvicorn --factory` (used by `userapi serve --workers N`)."""
    settings = get_settings()
    configure_logging(settings)
    return create_app(settings)
