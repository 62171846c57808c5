"""Errors of the web pages: not signed in, a refused form (CSRF), an account with no console access."""

from __future__ import annotations

from userapi.core.exceptions import InvalidInput, PermissionDenied, Unauthenticated


class SignInRequired(Unauthenticated):
    """No live console session: the page answers with a redirect to the area's sign-in form."""

    code = "sign_in_required"
    title = "Sign in"

    def __init__(self, sign_in_path: str, detail: str | None = None) -> None:
        super().__init__(detail or "Sign in to continue")
        self.sign_in_path = sign_in_path


class CsrfRefused(PermissionDenied):
    """A state-changing form arrived without the token of the session that rendered it."""

    code = "csrf_failed"
    title = "Form refused"


class NoConsoleAccess(PermissionDenied):
    """Signed in, but the account's role grants no administrative permission."""

    code = "no_console_access"
    title = "No access to the console"


class InvalidForm(InvalidInput):
    """A form field is missing or breaks the API's input rules (shown as a message on the form)."""

    code = "invalid_input"
    title = "The form is not valid"
