"""The public documents built from the cached key set: the JWKS (with ETag) and the discovery metadata."""

from __future__ import annotations

from userapi.core.config import API_PREFIX, Settings
from userapi.core.keyring import KeyRing
from userapi.keys.schemas import OpenIDConfiguration

JWKS_PATH = "/.well-known/jwks.json"
# What an access token carries (core/security.py); role is information for other services.
# Every claim an access token carries but `typ` and `ver` (private to userapi's own checks).
CLAIMS = ["sub", "iss", "aud", "exp", "iat", "jti", "sid", "role", "permissions", "amr"]


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 section 13.1.2: weak comparison against a list of entity tags, or `*`."""
    if not if_none_match:
        return False
    candidates = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in candidates or etag in (tag.removeprefix("W/") for tag in candidates)


class KeyDocuments:
    """Serves the key set of this process; built once per process (holds no per-request state)."""

    def __init__(self, keyring: KeyRing, settings: Settings) -> None:
        self.keyring = keyring
        self.settings = settings
        self.cache_control = f"public, max-age={settings.jwks_max_age}"

    async def jwks(self, if_none_match: str | None) -> tuple[bytes, dict[str, str], bool]:
        """(body, headers, not_modified): RFC 7517 JWK Set with Cache-Control and ETag."""
        await self.keyring.refresh_now_if_due()
        body, etag = self.keyring.jwks()
        headers = {"Cache-Control": self.cache_control, "ETag": etag}
        return body, headers, etag_matches(if_none_match, etag)

    async def discovery(self) -> tuple[OpenIDConfiguration, str]:
        """The discovery document and its Cache-Control value."""
        await self.keyring.refresh_now_if_due()
        base = self.settings.issuer_url
        algorithms = {entry.algorithm for entry in self.keyring.published()}
        if self.keyring.has_signer():
            algorithms.add(self.keyring.signer().algorithm)
        document = OpenIDConfiguration(
            issuer=self.settings.jwt_issuer,
            jwks_uri=base + JWKS_PATH,
            token_endpoint=f"{base}{API_PREFIX}/auth/token",
            grant_types_supported=["password"],
            token_endpoint_auth_methods_supported=["none"],
            response_types_supported=[],
            subject_types_supported=["public"],
            id_token_signing_alg_values_supported=sorted(algorithms),
            claims_supported=CLAIMS,
        )
        return document, self.cache_control
