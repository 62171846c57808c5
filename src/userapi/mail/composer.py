"""Renders a message kind into a complete RFC 5322 message: Jinja2 text and HTML, proper headers."""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any

import jinja2

from userapi.core.config import ConfigError, Settings
from userapi.core.crypto import AtRestCipher
from userapi.mail.constants import AUTO_SUBMITTED, MailTemplate

# HKDF label of the key that seals outbox content (core.crypto derives one key per purpose).
OUTBOX_PURPOSE = "mail-outbox"


def outbox_cipher(settings: Settings) -> AtRestCipher:
    """The cipher of stored messages: AES-GCM under a key derived from KEY_ENCRYPTION_SECRET."""
    return AtRestCipher(settings.key_encryption_secret, OUTBOX_PURPOSE)


@dataclass(frozen=True, slots=True)
class ComposedMail:
    """A message ready for the outbox: `content` is the whole message (RFC 5322 bytes, CRLF line
    ends) sealed for its Message-ID, since it carries a live token until it is delivered."""

    template: MailTemplate
    recipient: str
    message_id: str
    content: bytes


def parse_sender(mail_from: str) -> Address:
    """MAIL_FROM (`Name <addr@host>` or `addr@host`) as an Address. Raises ConfigError."""
    name, addr = parseaddr(mail_from)
    # A line break would let the setting smuggle in headers of its own.
    if "@" not in addr or any(c in mail_from for c in "\r\n\x00"):
        raise ConfigError(f"MAIL_FROM is not an email address: {mail_from!r}")
    local, _, domain = addr.rpartition("@")
    try:
        return Address(display_name=name, username=local, domain=domain)
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"MAIL_FROM is not an email address: {exc}") from None


class MailComposer:
    """Jinja2 templates of the package (`userapi/mail/templates`), one text and one HTML per kind.

    Built once per process (template compilation is cached by the environment). HTML is
    autoescaped; the text part is not (it is not markup), so values there must be plain text.
    """

    def __init__(self, mail_from: str, product_name: str, cipher: AtRestCipher) -> None:
        self.sender = parse_sender(mail_from)
        self.product_name = product_name
        self.cipher = cipher
        loader = jinja2.PackageLoader("userapi.mail", "templates")
        self._html = jinja2.Environment(
            loader=loader, autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True
        )
        self._text = jinja2.Environment(
            loader=loader, autoescape=False, undefined=jinja2.StrictUndefined, trim_blocks=True
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> MailComposer:
        """MAIL_FROM, PRODUCT_NAME and the outbox cipher. Raises ConfigError for a bad MAIL_FROM."""
        return cls(settings.mail_from, settings.product_name, outbox_cipher(settings))

    def compose(self, template: MailTemplate, recipient: str, context: dict[str, Any]) -> ComposedMail:
        """The message for `recipient`. Raises jinja2.TemplateError for a template bug."""
        values = {"product_name": self.product_name, "recipient": recipient, **context}
        subject = self._text.get_template(f"{template}.subject.j2").render(values).strip()
        text = self._text.get_template(f"{template}.txt.j2").render(values)
        html = self._html.get_template(f"{template}.html.j2").render(values)
        message_id = make_msgid(domain=self.sender.domain)
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = recipient
        message["Subject"] = " ".join(subject.split())  # one line, whatever the template did
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = message_id
        message["Auto-Submitted"] = AUTO_SUBMITTED
        # Exchange and Outlook honour this one instead of Auto-Submitted.
        message["X-Auto-Response-Suppress"] = "All"
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        sealed = self.cipher.seal(message.as_bytes(policy=policy.SMTP), message_id)
        return ComposedMail(template, recipient, message_id, sealed)
