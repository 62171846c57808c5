"""Request and response schemas of the auth domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from userapi.core.validation import Email, LoginPassword, NewPassword, StorableText


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Not validated as an email: a malformed one simply fails like a wrong one (same 401).
    email: StorableText = Field(min_length=1, max_length=320)
    password: LoginPassword


class PasswordGrantForm(BaseModel):
    """A token request with the password grant (RFC 6749 4.3.2), form-encoded. Other parameters (a
    public client's client_id, ...) are ignored, as RFC 6749 3.2 asks."""

    grant_type: Literal["password"] = Field(description="`password`: the resource owner password grant.")
    username: str = Field(min_length=1, max_length=320, description="The account's email address.")
    password: str = Field(min_length=1, max_length=1024, description="The account's password.")
    scope: str | None = Field(default=None, description="Accepted and ignored: tokens carry no scopes.")


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=512)


# A mailed token as presented: bounded and storable-text clean (NUL or a lone surrogate is a 422).
AccountTokenValue = Annotated[StorableText, Field(min_length=1, max_length=512)]


class ForgotPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email


class ResetPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: AccountTokenValue
    new_password: NewPassword


class AccountTokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: AccountTokenValue


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")


class MfaRequired(BaseModel):
    """202 from login: the password was right and a second factor is due (POST /auth/mfa/verify)."""

    mfa_token: str = Field(description="Opaque; 5 minutes, at most 5 code attempts.")
    mfa_methods: list[Literal["totp", "recovery_code"]]
    expires_in: int = Field(description="Seconds until the mfa_token expires.")


class MfaVerifyRequest(BaseModel):
    """Exactly one of `code` (6 digits from the authenticator) and `recovery_code`."""

    model_config = ConfigDict(extra="forbid")

    mfa_token: str = Field(min_length=1, max_length=512)
    code: StorableText | None = Field(default=None, min_length=1, max_length=16)
    recovery_code: StorableText | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_method(self) -> MfaVerifyRequest:
        if (self.code is None) == (self.recovery_code is None):
            raise ValueError("send exactly one of `code` and `recovery_code`")
        return self


class SessionRead(BaseModel):
    id: uuid.UUID = Field(description="The session (refresh-token family) id.")
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    ip: str | None
    amr: list[str] = Field(
        description="How the session signed in (RFC 8176 amr): pwd, otp; rc for a recovery code."
    )
    current: bool = Field(description="Whether this is the session of the calling access token.")
