"""Domain errors of the users domain."""

from __future__ import annotations

from userapi.core.exceptions import Conflict, InvalidInput, NotFound


class EmailTaken(Conflict):
    code = "email_taken"
    title = "Email already registered"


class UserNotFound(NotFound):
    code = "user_not_found"
    title = "User not found"


class UserSessionNotFound(NotFound):
    code = "session_not_found"
    title = "Session not found"


class WeakPassword(InvalidInput):
    code = "weak_password"
    title = "Password refused"


class InvalidEmailAddress(InvalidInput):
    code = "invalid_email"
    title = "Invalid email address"
