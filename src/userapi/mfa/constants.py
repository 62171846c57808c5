"""Values of the mfa domain: TOTP parameters (RFC 6238), recovery-code and mfa_token sizes, amr values."""

from __future__ import annotations

# RFC 6238 as every authenticator app implements it: HMAC-SHA-1, 6 digits, 30-second steps.
TOTP_DIGITS = 6
TOTP_PERIOD_SECONDS = 30
# Steps accepted either side of now, for clock drift (RFC 6238 section 6 recommends at most one).
TOTP_DRIFT_STEPS = 1

RECOVERY_CODE_COUNT = 10
# 80 random bits each: far beyond guessing at 5 tries a minute, so a fast hash is safe to store.
RECOVERY_CODE_BYTES = 10

# The mfa_token: opaque, five minutes, five code attempts (then dead).
MFA_TOKEN_TTL_SECONDS = 300
MFA_TOKEN_MAX_ATTEMPTS = 5

# Purpose label of the at-rest key that seals TOTP secrets (core.crypto.AtRestCipher).
TOTP_SECRET_PURPOSE = "totp-secret"

# RFC 8176 authentication method references; "rc" (a recovery code) has no registered value.
AMR_PASSWORD = "pwd"
AMR_OTP = "otp"
AMR_RECOVERY_CODE = "rc"
MFA_METHODS = ("totp", "recovery_code")
