"""A real SMTP server for tests: aiosmtpd over TCP on 127.0.0.1, optionally STARTTLS + AUTH or implicit TLS.

Each server runs in its own thread (aiosmtpd's Controller) and keeps what it received; tests parse
the messages with the standard library's `email` package, as a mail client would.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import ssl
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.helpers import free_port

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    """One message as the server took it: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    tls: bool
    authenticated_as: str | None

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None, "no text/plain part"
        return str(part.get_content())  # type: ignore[attr-defined]

    @property
    def html(self) -> str:
        part = self.message.get_body(("html",))
        assert part is not None, "no text/html part"
        return str(part.get_content())  # type: ignore[attr-defined]


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    # aiosmtpd finds its hooks by these names.
    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        # A way to provoke a permanent refusal (RFC 5321 550) from a test.
        if address.startswith("bounce"):
            return "550 5.1.1 No such mailbox"
        if address.startswith("defer"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = bytes(envelope.original_content or envelope.content or b"")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        auth = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.server._add(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                raw=raw,
                message=message,
                # session.ssl is set by STARTTLS; an implicit-TLS socket shows on the transport.
                tls=session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
                authenticated_as=auth,
            )
        )
        return "250 Message accepted"


class SmtpServer:
    """aiosmtpd on HOST:port. `tls` = ("cert.pem", "key.pem") paths; `starttls` requires the upgrade
    before anything else; `implicit_tls` wraps the socket from the first byte (smtps); `auth` =
    (user, password) requires AUTH (only after TLS, as aiosmtpd insists by default)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        tls: tuple[Path, Path] | None = None,
        starttls: bool = False,
        implicit_tls: bool = False,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.received: list[Received] = []
        self._changed = threading.Condition()
        kwargs: dict[str, Any] = {"server_hostname": "localhost"}  # not getfqdn(): no DNS lookup
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            if implicit_tls:
                kwargs["ssl_context"] = context
                # aiosmtpd offers AUTH only after its own STARTTLS; here the socket is TLS already.
                kwargs["auth_require_tls"] = False
            else:
                kwargs["tls_context"] = context
                kwargs["require_starttls"] = starttls
        if auth is not None:
            kwargs["auth_required"] = True
            kwargs["authenticator"] = self._authenticator(*auth)
        self.controller = Controller(_Handler(self), hostname=HOST, port=self.port, **kwargs)

    @staticmethod
    def _authenticator(user: str, password: str) -> Any:
        def check(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and data.login.decode() == user
                and data.password.decode() == password
            )
            return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

        return check

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def _add(self, received: Received) -> None:
        with self._changed:
            self.received.append(received)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        """Block until at least `count` messages arrived (AssertionError after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.received)} message(s) arrived, expected {count}")
                self._changed.wait(left)
            return list(self.received)

    def to(self, address: str) -> list[Received]:
        return [r for r in list(self.received) if address in r.rcpt_tos]

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 (EC P-256, one day), made with `cryptography`.

    Written as cert.pem and key.pem; the certificate doubles as the CA file clients trust.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
