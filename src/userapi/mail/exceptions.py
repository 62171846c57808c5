"""Domain errors of the mail domain."""

from __future__ import annotations

from userapi.core.exceptions import AppError


class MailUnavailable(AppError):
    """MAIL_DELIVERY=off: the operator turned mail off, so flows that need it cannot run."""

    status_code = 503
    code = "mail_unavailable"
    title = "Mail unavailable"


class DeliveryError(Exception):
    """One delivery attempt failed.

    `permanent` (an SMTP 5xx for the message or its recipient) means retrying cannot help;
    `transport` means the server was not reached or refused the session (not this message's
    fault): the worker backs off as a whole.
    """

    def __init__(self, reason: str, *, permanent: bool = False, transport: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason[:500]
        self.permanent = permanent
        self.transport = transport
