"""Signed cookie values (HMAC-SHA256 over JSON) and the CSRF tokens bound to a session or a pre-session."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

import orjson
from pydantic import SecretStr

_SEP = "."


class CookieSigner:
    """Signs and checks the console's cookie values and CSRF tokens with a key derived from JWT_SECRET.

    The key is derived per purpose, so a value signed for one use (a session) is never accepted for
    another (a CSRF token), and the token-signing key itself never signs anything here.
    """

    def __init__(self, secret: SecretStr) -> None:
        root = secret.get_secret_value().encode()
        self._cookie_key = hmac.new(root, b"userapi web cookie v1", hashlib.sha256).digest()
        self._csrf_key = hmac.new(root, b"userapi web csrf v1", hashlib.sha256).digest()

    def __repr__(self) -> str:  # never the keys
        return "CookieSigner(...)"

    def dumps(self, value: dict[str, Any]) -> str:
        """`value` as a cookie-safe string: base64url(JSON) "." base64url(HMAC)."""
        body = base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")
        return body + _SEP + self._mac(self._cookie_key, body)

    def loads(self, signed: str | None) -> dict[str, Any] | None:
        """The value of a string made by `dumps`, or None when it is absent, malformed or forged."""
        if not signed or signed.count(_SEP) != 1:
            return None
        body, mac = signed.split(_SEP)
        if not _same(mac, self._mac(self._cookie_key, body)):
            return None
        try:
            value = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, ValueError):
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
