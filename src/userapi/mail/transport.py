"""Where delivered mail goes: an SMTP server (aiosmtplib) or, in development, `.eml` files on disk."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from userapi.core.config import ConfigError, MailDelivery, Settings
from userapi.mail.composer import parse_sender
from userapi.mail.exceptions import DeliveryError
from userapi.mail.models import OutboxMessage

logger = logging.getLogger("userapi.mail")


class Connection(Protocol):
    async def send(self, message: OutboxMessage, content: bytes) -> None:
        """Deliver one outbox message (`content`: its opened RFC 5322 bytes). Raises DeliveryError."""


class Transport(Protocol):
    def connect(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for a batch of messages. Raises DeliveryError (with `transport=True`)."""


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """SMTP_URL taken apart. `start_tls`: True = required, None = when the server offers it."""

    host: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool | None

    def __repr__(self) -> str:  # never the password
        return f"SmtpTarget({self.host}:{self.port}, user={self.username!r}, tls={self.use_tls})"


def parse_smtp_url(url: str) -> SmtpTarget:
    """`smtp://[user:pass@]host[:port]` or `smtps://...`. Raises ConfigError (never echoing the password).

    smtp:// with credentials requires STARTTLS (a password never crosses the network in clear);
    without credentials STARTTLS is used when offered (development servers such as Mailpit
    offer none). smtps:// is TLS from the first byte (RFC 8314 implicit TLS, port 465).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError("SMTP_URL is not a valid URL (smtp://user:pass@host:587)") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError("SMTP_URL must look like smtp://user:pass@host:587 or smtps://user:pass@host:465")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    implicit = parts.scheme == "smtps"
    return SmtpTarget(
        host=parts.hostname,
        port=port or (465 if implicit else 587 if username else 25),
        username=username,
        password=password,
        use_tls=implicit,
        start_tls=False if implicit else (True if username else None),
    )


def _classify(exc: BaseException) -> DeliveryError:
    """An SMTP failure as retryable or not (RFC 5321 4.2.1: 4yz transient, 5yz permanent)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [e.code for e in exc.recipients]
        text = "; ".join(f"{e.code} {e.message}" for e in exc.recipients)
        return DeliveryError(f"recipient refused: {text}", permanent=all(c >= 500 for c in codes))
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError):
        return DeliveryError(f"{type(exc).__name__}: {exc}", transport=True)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return DeliveryError(f"{exc.code} {exc.message}", permanent=exc.code >= 500)
    return DeliveryError(f"{type(exc).__name__}: {exc}", transport=True)


class _SmtpConnection:
    def __init__(self, client: aiosmtplib.SMTP, sender: str) -> None:
        self.client = client
        self.sender = sender

    async def send(self, message: OutboxMessage, content: bytes) -> None:
        try:
            await self.client.sendmail(self.sender, [message.recipient], content)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _classify(exc) from None
        logger.info(
            "mail sent id=%s template=%s message_id=%s", message.id, message.template, message.message_id
        )


class SmtpTransport:
    """One SMTP session per batch (connect, EHLO, STARTTLS, AUTH once; then one transaction a message)."""

    def __init__(self, target: SmtpTarget, sender: str, timeout: float, ca_file: Path | None) -> None:
        self.target = target
        self.sender = sender
        self.timeout = timeout
        self.ca_file = str(ca_file) if ca_file else None
        # Not socket.getfqdn(), aiosmtplib's default: that is a DNS lookup which can stall for seconds.
        self.local_hostname = socket.gethostname() or "localhost"

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Connection]:
        client = aiosmtplib.SMTP(
            hostname=self.target.host,
            port=self.target.port,
            username=self.target.username,
            password=self.target.password,
            use_tls=self.target.use_tls,
            start_tls=self.target.start_tls,
            cert_bundle=self.ca_file,
            timeout=self.timeout,
            local_hostname=self.local_hostname,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            error = _classify(exc)
            raise DeliveryError(f"cannot reach {self.target!r}: {error.reason}", transport=True) from None
        try:
            yield _SmtpConnection(client, self.sender)
        finally:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


class _FileConnection:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: OutboxMessage, content: bytes) -> None:
        stamp = message.created_at.strftime("%Y%m%dT%H%M%S")
        path = self.directory / f"{stamp}-{message.id:06d}-{message.template}.eml"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Written whole, then renamed: a reader never sees half a message.
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
            with os.fdopen(fd, "wb") as out:
                out.write(content)
            os.replace(tmp, path)
        except OSError as exc:
            raise DeliveryError(f"cannot write {path}: {exc.strerror}", transport=True) from None
        # The path only: the message holds a token, the log line never does.
        logger.info("mail written to %s (id=%s template=%s)", path, message.id, message.template)


class FileTransport:
    """Development: each message becomes an `.eml` file (open it with any mail program)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Connection]:
        yield _FileConnection(self.directory)


def build_transport(settings: Settings) -> Transport | None:
    """The transport MAIL_DELIVERY and SMTP_URL choose; None when mail is off. Raises ConfigError."""
    mode = settings.mail_mode()
    if mode is MailDelivery.off:
        return None
    if mode is MailDelivery.file:
        return FileTransport(settings.data_dir / "mail")
    assert settings.smtp_url is not None  # mail_mode() checked it
    target = parse_smtp_url(settings.smtp_url.get_secret_value())
    sender = parse_sender(settings.mail_from).addr_spec
    return SmtpTransport(target, sender, settings.smtp_timeout_seconds, settings.smtp_ca_file)
