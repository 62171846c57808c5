"""Sealed cookie values (AES-256-GCM over JSON) and the CSRF tokens bound to a session or a pre-session."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

import orjson
from pydantic import SecretStr

from userapi.core.crypto import AtRestCipher, SealedDataError

# The associated data of every sealed cookie value (the purpose already separates them from stored secrets).
_COOKIE_RECORD = "cookie"


class CookieSigner:
    """Seals and opens the console's cookie values, and makes its CSRF tokens, with keys derived
    from JWT_SECRET, one per purpose: a value made for one use (a session) is never accepted for
    another (a CSRF token).

    Cookie values are sealed, not only signed: the session cookie carries the session's refresh
    token, which must not be readable by whoever copies the cookie (a shared computer, a log of
    request headers).
    """

    def __init__(self, secret: SecretStr) -> None:
        root = secret.get_secret_value().encode()
        self._cookies = AtRestCipher(root, "web-cookie")
        self._csrf_key = hmac.new(root, b"userapi web csrf v1", hashlib.sha256).digest()

    def __repr__(self) -> str:  # never the keys
        return "CookieSigner(...)"

    def dumps(self, value: dict[str, Any]) -> str:
        """`value` as a cookie-safe string: base64url of the sealed JSON (about 4/3 x (JSON + 29) bytes)."""
        sealed = self._cookies.seal(orjson.dumps(value), _COOKIE_RECORD)
        return base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def loads(self, sealed: str | None) -> dict[str, Any] | None:
        """The value of a string made by `dumps`, or None when it is absent, malformed or forged."""
        if not sealed or not sealed.isascii():
            return None
        try:
            raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
            value = orjson.loads(self._cookies.open(raw, _COOKIE_RECORD))
        except (binascii.Error, ValueError, SealedDataError):
            return None
        return value if isinstance(value, dict) else None

    def csrf_token(self, binding: str) -> str:
        """The synchronizer token of the forms of a session (or pre-session) `binding` (OWASP CSRF
        cheat sheet: HMAC-based token tied to the session)."""
        return self._mac(self._csrf_key, binding)

    def csrf_valid(self, binding: str | None, token: str | None) -> bool:
        """Whether `token` is the CSRF token of `binding` (compared in constant time)."""
        if not binding or not token:
            return False
        return _same(token, self.csrf_token(binding))

    @staticmethod
    def _mac(key: bytes, message: str) -> str:
        digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _same(presented: str, expected: str) -> bool:
    """Constant-time equality of a presented value and ours. As bytes: `hmac.compare_digest` raises
    TypeError for a str with a non-ASCII character, and a cookie or form field may hold one."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode())
