"""TOTP checks (RFC 6238, on pyotp), the QR code (segno) and recovery-code making and hashing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets

import pyotp
import segno

from userapi.mfa.constants import (
    RECOVERY_CODE_BYTES,
    RECOVERY_CODE_COUNT,
    TOTP_DIGITS,
    TOTP_DRIFT_STEPS,
    TOTP_PERIOD_SECONDS,
)


def new_totp_secret() -> str:
    """A base32 secret of 160 bits, the HMAC-SHA-1 key size RFC 4226 section 4 recommends."""
    return pyotp.random_base32(32)


def totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_SECONDS)


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The `otpauth://totp/...` URI authenticator apps read (Google Authenticator key-uri format)."""
    return totp(secret).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as a QR code, an SVG document (no image library; segno)."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=4, xmldecl=False)
    return out.getvalue().decode("utf-8")


def matching_step(secret: str, code: str, now: float, last_used_step: int | None) -> int | None:
    """The time step (seconds // 30) whose code is `code`, within ±1 step of `now` and later than
    `last_used_step` (RFC 6238 section 5.2: a code is accepted once); None when none matches."""
    candidate = "".join(code.split())
    if len(candidate) != TOTP_DIGITS or not candidate.isascii() or not candidate.isdigit():
        return None
    generator = totp(secret)
    current = int(now) // TOTP_PERIOD_SECONDS
    found = None
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        # Every candidate is compared (constant time): timing says nothing about which matched.
        if hmac.compare_digest(generator.at(step * TOTP_PERIOD_SECONDS), candidate) and (
            last_used_step is None or step > last_used_step
        ):
            found = step if found is None else found
    return found


def new_recovery_codes() -> list[str]:
    """Ten codes of 80 random bits, as 16 base32 letters in groups of four (xxxx-xxxx-xxxx-xxxx)."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = base64.b32encode(secrets.token_bytes(RECOVERY_CODE_BYTES)).decode("ascii").lower()
        codes.append("-".join(raw[i : i + 4] for i in range(0, len(raw), 4)))
    return codes


def recovery_code_hash(code: str) -> bytes:
    """SHA-256 of the normalised code (case, hyphens and spaces ignored).

    Not bcrypt: a slow hash protects low-entropy secrets (passwords) from dictionary attacks; an
    80-bit random code has no dictionary, and a fast hash lets one keyed lookup find it.
    """
    normalised = "".join(ch for ch in code.lower() if ch not in "- \t")
    return hashlib.sha256(b"userapi/recovery-code/v1:" + normalised.encode("utf-8", "surrogatepass")).digest()
