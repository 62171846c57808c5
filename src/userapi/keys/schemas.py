"""Response documents of the keys domain: the OpenID Provider metadata (discovery)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class OpenIDConfiguration(BaseModel):
    """OpenID Connect Discovery 1.0 section 3 / RFC 8414 metadata: only what this service supports."""

    issuer: str = Field(description="The `iss` of every token")
    jwks_uri: str = Field(description="The JWK Set (RFC 7517) of the public signing keys")
    token_endpoint: str = Field(description="RFC 6749 password grant (form), as used by Swagger UI")
    grant_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str] = Field(description="Public clients only")
    # No authorization endpoint: no response type is supported. The member is required by both
    # specifications, so it is present and empty.
    response_types_supported: list[str]
    subject_types_supported: list[str] = Field(description="`sub` is the user id, the same for everyone")
    # userapi issues access tokens, not ID tokens; OIDC makes this member required, and verifiers
    # read the accepted algorithms from it. Lists the algorithms of the signing and published keys.
    id_token_signing_alg_values_supported: list[str]
    claims_supported: list[str]
