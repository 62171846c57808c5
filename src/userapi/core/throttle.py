"""Throttling of secret checks on the `limits` library (memory for one process, Redis for many).

In core, not in auth: every check of a secret (password now; one-time and recovery codes, mailed
tokens as those domains arrive) is throttled by this one mechanism, held by the process runtime.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from userapi.core.config import Settings
from userapi.core.exceptions import Throttled


def _async_storage_uri(url: str) -> tuple[str, dict[str, str]]:
    """Settings use the plain `memory://` / `redis://` forms; limits' asyncio storage wants `async+`."""
    if url.startswith("async+"):
        url = url[len("async+") :]
    options: dict[str, str] = {}
    if url.startswith(("redis://", "rediss://", "redis+unix://")):
        options["implementation"] = "redispy"
    return "async+" + url, options


class Throttle:
    """The three limits of the service; counters live in the configured storage."""

    def __init__(self, settings: Settings) -> None:
        uri, options = _async_storage_uri(settings.rate_limit_storage_url)
        self.storage = storage_from_string(uri, **options)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.login_account: RateLimitItem = parse(settings.rate_limit_login_account)
        self.login_ip: RateLimitItem = parse(settings.rate_limit_login_ip)
        self.register_ip: RateLimitItem = parse(settings.rate_limit_register_ip)

    async def hit_login(self, email: str, ip: str) -> None:
        """Count a login attempt before its password is checked. Raises Throttled past a limit.

        Every attempt is counted up front, in one atomic check-and-count: checking first and
        counting failures after the (slow) password check let a burst of simultaneous guesses
        all pass the check. (Counts cannot be taken back, so a success counts too; clearing the
        key instead races the memory storage's expiry task in `limits`.)
        The account limit is keyed by account *and* IP: failures from an attacker's address do
        not lock the owner out from theirs.
        """
        await self._hit_or_refuse(self.login_account, "login-account", email, ip)
        await self._hit_or_refuse(self.login_ip, "login-ip", ip)

    async def hit_register(self, ip: str) -> None:
        """Count a registration attempt. Raises Throttled past the limit."""
        if not await self.limiter.hit(self.register_ip, "register-ip", ip):
            raise Throttled(await self._retry_after(self.register_ip, "register-ip", ip))

    async def _hit_or_refuse(self, item: RateLimitItem, *identifiers: str) -> None:
        if not await self.limiter.hit(item, *identifiers):
            raise Throttled(await self._retry_after(item, *identifiers))

    async def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        stats = await self.limiter.get_window_stats(item, *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))
