"""Password hashing (bcrypt, off the event loop) and access-token encoding/decoding (PyJWT)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import bcrypt
import jwt

from userapi.core.canonical import canonical_password
from userapi.core.config import Settings
from userapi.core.exceptions import InvalidToken

ACCESS_TOKEN_TYPE = "access"
_REQUIRED_CLAIMS = ["sub", "exp", "iat", "jti", "iss", "aud", "typ", "ver"]


def _prehash(password: str) -> bytes:
    """SHA-256 then base64, so every byte of a long password counts.

    bcrypt reads only 72 bytes (bcrypt 5 raises beyond), and 64 Unicode characters can be
    256 UTF-8 bytes; base64 also keeps NUL bytes out of bcrypt's C string.
    """
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password_sync(password: str, rounds: int) -> str:
    """A bcrypt hash (`$2b$NN$...`) of the password's canonical form (NFKC)."""
    return bcrypt.hashpw(_prehash(canonical_password(password)), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password_sync(password: str, password_hash: str) -> bool:
    """Whether `password`, exactly as given (no normalisation here), matches a stored bcrypt hash."""
    try:
        return bcrypt.checkpw(_prehash(password), password_hash.encode("ascii"))
    except ValueError:  # a malformed stored hash never verifies
        return False


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """The outcome of verifying a password: `valid`, and whether the stored hash should be replaced
    (a different cost factor, or a hash made before passwords were NFKC-normalised)."""

    valid: bool
    rehash: bool = False

    def __bool__(self) -> bool:
        # `if await hasher.verify(...)` would always be true: make that mistake loud.
        raise TypeError("read PasswordCheck.valid, not the check itself")


def hash_rounds(password_hash: str) -> int | None:
    """The cost factor of a stored `$2b$NN$...` hash, or None if it is not one."""
    parts = password_hash.split("$")
    return int(parts[2]) if len(parts) == 4 and parts[2].isdigit() else None


class PasswordHasher:
    """bcrypt with the configured cost; hashing runs in worker threads, never on the loop."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        # Unknown-email logins verify against this, so they cost the same as a wrong password.
        # Made off the start-up path (warm_up, run by the app's lifespan): a cost-12 hash is a
        # quarter of a second that readiness should not wait for.
        self._dummy_hash: str | None = None

    async def warm_up(self) -> None:
        await self._dummy()

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(hash_password_sync, password, self.rounds)

    async def verify(self, password: str, password_hash: str | None) -> PasswordCheck:
        """Check `password` against a stored hash (None: an unknown account, checked against a dummy).

        The canonical (NFKC) form is checked first. Hashes stored before passwords were
        normalised hold the raw form: when the two forms differ and the canonical one fails, the
        raw one is tried, and a match asks for a rehash (to the canonical form). An unknown
        account costs the same number of bcrypt runs as a wrong password.
        """
        stored = password_hash if password_hash is not None else await self._dummy()
        canonical = canonical_password(password)
        valid = await anyio.to_thread.run_sync(verify_password_sync, canonical, stored)
        legacy = False
        if not valid and canonical != password:
            legacy = valid = await anyio.to_thread.run_sync(verify_password_sync, password, stored)
        if password_hash is None:
            return PasswordCheck(False)
        return PasswordCheck(valid, valid and (legacy or hash_rounds(password_hash) != self.rounds))


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    token_version: int
    session_id: uuid.UUID | None
    jti: str
    expires_at: int


class TokenCodec:
    """Encodes and verifies access tokens; the accepted algorithm is fixed here, never read from a token."""

    def __init__(self, settings: Settings) -> None:
        self._key = settings.jwt_secret.get_secret_value()
        self._algorithm = settings.jwt_algorithm
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self.ttl_seconds = settings.access_token_ttl_seconds
        self._decoder = jwt.PyJWT(options={"require": _REQUIRED_CLAIMS})

    def encode_access(
        self,
        user_id: uuid.UUID,
        token_version: int,
        session_id: uuid.UUID | None = None,
        amr: Sequence[str] | None = None,
    ) -> str:
        """A signed access token. `amr` (RFC 8176, e.g. ["pwd", "otp"]) is information for other
        services: how the session signed in; this service never decides anything from it."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "iat": now,
            "exp": now + self.ttl_seconds,
            "jti": uuid.uuid4().hex,
            "iss": self._issuer,
            "aud": self._audience,
            "typ": ACCESS_TOKEN_TYPE,
            "ver": token_version,
        }
        if session_id is not None:
            claims["sid"] = str(session_id)
        if amr:
            claims["amr"] = list(amr)
        return jwt.encode(claims, self._key, algorithm=self._algorithm)

    def decode_access(self, token: str) -> AccessClaims:
        """Verify signature, expiry, issuer, audience and type. Raises InvalidToken."""
        try:
            claims = self._decoder.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
            )
            if claims["typ"] != ACCESS_TOKEN_TYPE:
                raise InvalidToken("Not an access token")
            version = claims["ver"]
            if not isinstance(version, int) or isinstance(version, bool):
                raise InvalidToken("Malformed token")
            sid = claims.get("sid")
            return AccessClaims(
                user_id=uuid.UUID(claims["sub"]),
                token_version=version,
                session_id=uuid.UUID(sid) if sid is not None else None,
                jti=str(claims["jti"]),
                expires_at=int(claims["exp"]),
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The access token has expired") from None
        except (jwt.PyJWTError, ValueError, TypeError, AttributeError):
            raise InvalidToken("The access token is invalid") from None


def new_opaque_token() -> str:
    """A refresh token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def opaque_token_hash(token: str) -> bytes:
    """How refresh tokens are stored: only their SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
