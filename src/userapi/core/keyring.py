"""The process's cached signing-key set: which key signs now, which kid verifies, the JWKS bytes and ETag."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from userapi.core.exceptions import AppError

logger = logging.getLogger(__name__)

# An unknown kid may mean a key another process created a moment ago: reload, but at most this
# often, so tokens with made-up kids cannot turn into a query per request.
UNKNOWN_KID_RELOAD_SECONDS = 1.0
# After a failed reload (database down), the next attempt waits this long, not a whole interval.
RETRY_AFTER_FAILURE_SECONDS = 5.0


class NoSigningKey(AppError):
    """No key can sign right now (none loaded yet, or every one retired). A 503: retry shortly."""

    status_code = 503
    code = "no_signing_key"
    title = "Service unavailable"


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One key as the token codec uses it. Times are Unix seconds (wall clock, as stored).

    `verify_key`: the public key object (asymmetric) or the HMAC secret bytes (HS256).
    `signing_key`: the private key object or the HMAC secret; None when this process cannot sign
    with it. `public_jwk`: the RFC 7517 JWK published in the JWKS (None for HMAC keys, never published).
    `stored`: True for keys in the signing_keys table (their retirement is checked per request).
    """

    kid: str
    algorithm: str
    verify_key: Any
    signing_key: Any | None
    activates_at: float
    retires_at: float | None = None
    public_jwk: dict[str, Any] | None = None
    stored: bool = True

    def live(self, now: float) -> bool:
        return self.retires_at is None or now < self.retires_at


Loader = Callable[[], Awaitable[Sequence[KeyEntry]]]


@dataclass
class _Published:
    kids: tuple[str, ...] = ()
    body: bytes = b'{"keys":[]}'
    etag: str = ""


@dataclass
class KeyRing:
    """The key set of this process, reloaded from the database at most every `refresh_seconds`.

    Signing takes the newest activated, unretired key this process can sign with (or the fixed
    HMAC key in HS256 mode). Verification looks the token's kid up in memory: no database access
    per request. Rotation made by another process is seen within `refresh_seconds` plus one reload
    (run in the background, started by the first request past the interval); a kid never seen
    triggers a reload at once (rate-limited to one per UNKNOWN_KID_RELOAD_SECONDS). Times of
    activation and retirement are read from the entries at each call, so a scheduled switch or
    retirement happens on time on every process without a reload.
    """

    loader: Loader | None
    refresh_seconds: float
    fixed_signer: KeyEntry | None = None
    _entries: dict[str, KeyEntry] = field(default_factory=dict)
    _loaded_at: float | None = None  # monotonic
    _next_refresh: float = 0.0  # monotonic
    _last_unknown_reload: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _refresh: asyncio.Task[None] | None = None
    _published: _Published = field(default_factory=_Published)

    def __post_init__(self) -> None:
        if self.fixed_signer is not None:
            self._entries[self.fixed_signer.kid] = self.fixed_signer

    # --- loading ----------------------------------------------------------------------------

    def replace(self, entries: Sequence[KeyEntry]) -> None:
        """Install a freshly loaded set (the fixed HMAC key, if any, stays)."""
        fresh = {entry.kid: entry for entry in entries}
        if self.fixed_signer is not None:
            fresh[self.fixed_signer.kid] = self.fixed_signer
        self._entries = fresh
        self._loaded_at = time.monotonic()
        self._next_refresh = self._loaded_at + self.refresh_seconds

    async def load(self) -> None:
        """Reload now. Raises whatever the loader raises (start-up turns it into one line)."""
        async with self._lock:
            await self._load_unlocked()

    async def _load_unlocked(self) -> None:
        if self.loader is None:
            self._loaded_at = time.monotonic()
            self._next_refresh = float("inf")
            return
        self.replace(await self.loader())

    async def maybe_refresh(self) -> None:
        """Start a reload when the interval has passed; never makes a request wait for one.

        Cheap when fresh: one clock read. The periodic reload runs as a background task while
        requests go on with the current set (a reload waits for a pooled connection: on the
        request path it would add that wait to requests exactly when the pool is busiest). A failed
        reload keeps the current set and is retried after RETRY_AFTER_FAILURE_SECONDS. Only the
        very first load, with no set at all, is awaited (start-up normally did it already), and
        its failure propagates.
        """
        if time.monotonic() < self._next_refresh:
            return
        if self._loaded_at is None:
            async with self._lock:  # the first load: everyone waits for it, one caller does it
                if self._loaded_at is None:
                    await self._load_unlocked()
            return
        self.refresh_in_background()

    async def refresh_now_if_due(self) -> None:
        """Reload, and wait for it, when the interval has passed (or a background reload is running).

        For the documents verifiers cache (JWKS, discovery): they must never be served from a set
        older than the interval, or a verifier could cache a set without a newly published key for
        max-age and miss the key's first tokens. Authenticated requests use maybe_refresh instead.
        """
        if self._refresh is not None and not self._refresh.done():
            await asyncio.shield(self._refresh)
            return
        if time.monotonic() < self._next_refresh:
            return
        async with self._lock:
            if time.monotonic() >= self._next_refresh:
                await self._load_unlocked()

    def refresh_in_background(self) -> None:
        """Schedule one reload (none if one is running); errors are logged, never raised."""
        if self._refresh is not None and not self._refresh.done():
            return
        # Not again until this one ends (it sets the next time itself).
        self._next_refresh = float("inf")
        self._refresh = asyncio.get_running_loop().create_task(self._background_reload())

    async def _background_reload(self) -> None:
        try:
            await self.load()
        except Exception as exc:  # keep serving with the keys we have; say so once per attempt
            self._next_refresh = time.monotonic() + RETRY_AFTER_FAILURE_SECONDS
            logger.warning("signing keys not reloaded (%s); keeping the current set", type(exc).__name__)

    async def aclose(self) -> None:
        """Cancel a reload in progress (shutdown)."""
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh

    async def reload_soon(self) -> bool:
        """Reload because a token named a kid this process has not seen (or one retired elsewhere);
        False when rate-limited or failed."""
        now = time.monotonic()
        if self.loader is None or now - self._last_unknown_reload < UNKNOWN_KID_RELOAD_SECONDS:
            return False
        self._last_unknown_reload = now
        try:
            await self.load()
        except Exception as exc:
            logger.warning("signing keys not reloaded (%s)", type(exc).__name__)
            return False
        return True

    # --- use ----------------------------------------------------------------------------------

    def signer(self, now: float | None = None) -> KeyEntry:
        """The key that signs a token issued now. Raises NoSigningKey."""
        if self.fixed_signer is not None:
            return self.fixed_signer
        now = time.time() if now is None else now
        best: KeyEntry | None = None
        for entry in self._entries.values():
            if entry.signing_key is None or entry.activates_at > now or not entry.live(now):
                continue
            if best is None or (entry.activates_at, entry.kid) > (best.activates_at, best.kid):
                best = entry
        if best is None:
            raise NoSigningKey("No signing key is available yet; retry shortly")
        return best

    def verifier(self, kid: str, now: float | None = None) -> KeyEntry | None:
        """The key a token with this kid must verify with, or None (unknown or retired)."""
        entry = self._entries.get(kid)
        if entry is None or not entry.live(time.time() if now is None else now):
            return None
        return entry

    def published(self, now: float | None = None) -> list[KeyEntry]:
        """Keys in the JWKS: every unretired stored key, the signing key first, then the newest."""
        now = time.time() if now is None else now
        keys = [e for e in self._entries.values() if e.public_jwk is not None and e.live(now)]
        signing = self.signer(now).kid if self.has_signer(now) else None
        keys.sort(key=lambda e: (e.kid != signing, -e.activates_at, e.kid))
        return keys

    def has_signer(self, now: float | None = None) -> bool:
        try:
            self.signer(now)
        except NoSigningKey:
            return False
        return True

    def jwks(self, now: float | None = None) -> tuple[bytes, str]:
        """The RFC 7517 JWK Set document and its strong ETag, rebuilt only when the key list changes."""
        keys = self.published(now)
        kids = tuple(e.kid for e in keys)
        if kids != self._published.kids or not self._published.etag:
            body = orjson.dumps({"keys": [e.public_jwk for e in keys]})
            digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()[:18]).decode("ascii")
            self._published = _Published(kids, body, f'"{digest}"')
        return self._published.body, self._published.etag
