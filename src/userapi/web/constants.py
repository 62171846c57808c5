"""Names and paths of the web pages: cookies, form fields, where each area signs in."""

from __future__ import annotations

ADMIN = "/admin"
ACCOUNT = "/account"
STATIC = "/static/web"

# The console session (a real userapi session: its access and refresh tokens, signed with the time
# of the last request). `__Host-` where the cookie is Secure: the browser then refuses it from a
# subdomain or for another path (RFC 6265bis 4.1.3.2).
SESSION_COOKIE = "console"
SECURE_SESSION_COOKIE = "__Host-console"
# Before sign-in: a random value the sign-in form's CSRF token is bound to (login CSRF).
PRE_SESSION_COOKIE = "console_pre"
SECURE_PRE_SESSION_COOKIE = "__Host-console_pre"
# One message for the next page (after a redirect).
FLASH_COOKIE = "console_flash"
SECURE_FLASH_COOKIE = "__Host-console_flash"
FLASH_MAX_AGE_SECONDS = 60
PRE_SESSION_MAX_AGE_SECONDS = 3600

# The /account pages that mailed links open.
LINK_PAGES = ("reset-password", "verify-email", "confirm-email")

CSRF_FIELD = "csrf_token"
PAGE_SIZE = 20
RECENT_EVENTS = 10
