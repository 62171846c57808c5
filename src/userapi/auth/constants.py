"""Values of the auth domain: what a mailed one-time token is for."""

from __future__ import annotations

import enum


class TokenPurpose(enum.StrEnum):
    """Each mailed token serves one purpose only: a reset token never verifies an address."""

    password_reset = "password_reset"
    email_verification = "email_verification"
    email_change = "email_change"
