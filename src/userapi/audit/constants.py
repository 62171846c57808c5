"""Values of the audit domain: the event types every domain records."""

from __future__ import annotations

import enum


class EventType(enum.StrEnum):
    """What happened; stored as text in `auth_events.type` (at most 40 characters)."""

    signup = "signup"
    login_succeeded = "login_succeeded"
    login_failed = "login_failed"
    login_throttled = "login_throttled"
    # A check of a secret other than the sign-in password failed or was throttled (detail: kind).
    secret_check_failed = "secret_check_failed"
    secret_check_throttled = "secret_check_throttled"
    refresh_reuse_detected = "refresh_reuse_detected"
    logout = "logout"
    session_revoked = "session_revoked"
    password_changed = "password_changed"
    role_changed = "role_changed"
    user_deactivated = "user_deactivated"
    user_reactivated = "user_reactivated"
    user_created = "user_created"
    user_deleted = "user_deleted"
    sessions_revoked = "sessions_revoked"  # every session of an account, ended by an admin
    role_created = "role_created"
    role_updated = "role_updated"
    role_deleted = "role_deleted"
    signing_key_created = "signing_key_created"
    signing_key_rotated = "signing_key_rotated"
    signing_key_retired = "signing_key_retired"
    # Account recovery and verified addresses (mailed one-time tokens).
    password_reset_requested = "password_reset_requested"
    password_reset_completed = "password_reset_completed"
    email_verification_sent = "email_verification_sent"
    email_verified = "email_verified"
    email_change_requested = "email_change_requested"
    email_changed = "email_changed"
    account_token_rejected = "account_token_rejected"
    account_mail_throttled = "account_mail_throttled"
    mfa_enrolment_started = "mfa_enrolment_started"
    mfa_enabled = "mfa_enabled"
    mfa_disabled = "mfa_disabled"
    mfa_reset = "mfa_reset"
    mfa_recovery_codes_regenerated = "mfa_recovery_codes_regenerated"
    mfa_recovery_code_used = "mfa_recovery_code_used"
    mfa_challenge_started = "mfa_challenge_started"
    mfa_verified = "mfa_verified"
