"""Request and response schemas of the mfa domain."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from userapi.core.validation import LoginPassword, StorableText

# Six digits from the app; a little room for "123 456" as some apps show it.
Code = StorableText


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TotpEnrolRequest(_Input):
    current_password: LoginPassword


class TotpEnrolment(BaseModel):
    secret: str = Field(description="The base32 secret (RFC 4648), for typing into an app by hand.")
    otpauth_uri: str = Field(description="otpauth://totp/... (the key-uri format authenticator apps read).")
    qr_svg: str = Field(description="The otpauth URI as a QR code, an SVG document.")


class CodeRequest(_Input):
    code: Code = Field(min_length=1, max_length=16, description="The 6-digit code the app shows now.")


class PasswordAndCodeRequest(_Input):
    current_password: LoginPassword
    code: Code = Field(min_length=1, max_length=16)


class RecoveryCodes(BaseModel):
    recovery_codes: list[str] = Field(description="10 one-time codes; shown once, stored only hashed.")
