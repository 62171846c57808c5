"""Values of the auth domain: audit event types."""

from __future__ import annotations

import enum


class EventType(enum.StrEnum):
    signup = "signup"
    login_succeeded = "login_succeeded"
    login_failed = "login_failed"
    login_throttled = "login_throttled"
    refresh_reuse_detected = "refresh_reuse_detected"
    logout = "logout"
    session_revoked = "session_revoked"
    password_changed = "password_changed"
    role_changed = "role_changed"
    user_deactivated = "user_deactivated"
    user_reactivated = "user_reactivated"
    user_created = "user_created"
    user_deleted = "user_deleted"
