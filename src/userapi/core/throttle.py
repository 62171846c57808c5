"""Rate limits on the `limits` library (memory for one process, Redis for many): named limits, atomic hits.

In core, held by the process runtime. It only counts: which limits a check of a secret hits, and
what is recorded when one refuses, is decided by the guard domain (`userapi.guard`), the one
mechanism every check of a secret goes through.
"""

from __future__ import annotations

import enum
import math
import time

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from userapi.core.config import Settings
from userapi.core.exceptions import Throttled


class Limit(enum.StrEnum):
    """The configured limits; the value is also the namespace of its counters in the storage."""

    login_account = "login-account"  # RATE_LIMIT_LOGIN_ACCOUNT
    login_ip = "login-ip"  # RATE_LIMIT_LOGIN_IP
    register_ip = "register-ip"  # RATE_LIMIT_REGISTER_IP
    secret_account = "secret-account"  # RATE_LIMIT_SECRET_ACCOUNT
    secret_ip = "secret-ip"  # RATE_LIMIT_SECRET_IP
    mail_address = "mail-address"  # RATE_LIMIT_MAIL_ADDRESS: requests that mail an address
    mail_ip = "mail-ip"  # RATE_LIMIT_MAIL_IP


def _async_storage_uri(url: str) -> tuple[str, dict[str, str]]:
    """Settings use the plain `memory://` / `redis://` forms; limits' asyncio storage wants `async+`."""
    if url.startswith("async+"):
        url = url[len("async+") :]
    options: dict[str, str] = {}
    if url.startswith(("redis://", "rediss://", "redis+unix://")):
        options["implementation"] = "redispy"
    return "async+" + url, options


class Throttle:
    """The service's limits; counters live in the configured storage (RATE_LIMIT_STORAGE_URL)."""

    def __init__(self, settings: Settings) -> None:
        uri, options = _async_storage_uri(settings.rate_limit_storage_url)
        self.storage = storage_from_string(uri, **options)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.items: dict[Limit, RateLimitItem] = {
            Limit.login_account: parse(settings.rate_limit_login_account),
            Limit.login_ip: parse(settings.rate_limit_login_ip),
            Limit.register_ip: parse(settings.rate_limit_register_ip),
            Limit.secret_account: parse(settings.rate_limit_secret_account),
            Limit.secret_ip: parse(settings.rate_limit_secret_ip),
            Limit.mail_address: parse(settings.rate_limit_mail_address),
            Limit.mail_ip: parse(settings.rate_limit_mail_ip),
        }

    async def hit(self, limit: Limit, *key: str) -> None:
        """Count one attempt against `limit` for `key` (strings), in one atomic check-and-count.

        Raises Throttled (with the seconds until the window frees a slot) when the limit is
        already reached; the refused attempt is not counted. Counts cannot be taken back, so
        callers hit *before* the work they limit: checking first and counting after a slow
        password check let a burst of simultaneous guesses all pass the check.
        """
        item = self.items[limit]
        if not await self.limiter.hit(item, limit.value, *key):
            raise Throttled(await self._retry_after(item, limit.value, *key))

    async def hit_register(self, ip: str) -> None:
        """Count a registration attempt from `ip`. Raises Throttled past RATE_LIMIT_REGISTER_IP."""
        await self.hit(Limit.register_ip, ip)

    async def hit_mail(self, address: str, ip: str) -> None:
        """Count a request that mails `address` (reset, verification, address change). Raises Throttled.

        Counted whether or not an account has that address, so the limit itself reveals nothing;
        it bounds the mail one can make the service send to a stranger, and per IP, to everyone.
        """
        await self.hit(Limit.mail_address, address)
        await self.hit(Limit.mail_ip, ip)

    async def hit_mail_address(self, address: str) -> None:
        """Count one more mail to `address` only (a second recipient of one request). Raises Throttled."""
        await self.hit(Limit.mail_address, address)

    async def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        stats = await self.limiter.get_window_stats(item, *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))
