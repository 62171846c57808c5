"""Mail settings: SMTP_URL forms, the delivery mode per environment, links from the configured URL."""

from __future__ import annotations

from typing import Any

import pytest

from userapi.core.config import ConfigError, MailDelivery, Settings
from userapi.mail.composer import parse_sender
from userapi.mail.transport import parse_smtp_url


def settings(**values: Any) -> Settings:
    values.setdefault("jwt_secret", "s" * 40)
    values.setdefault("key_encryption_secret", "k" * 40)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://user:pass@mail.example.com:587", ("mail.example.com", 587, "user", "pass", False, True)),
        ("smtp://user:pass@mail.example.com", ("mail.example.com", 587, "user", "pass", False, True)),
        ("smtps://user:p%40ss@mail.example.com", ("mail.example.com", 465, "user", "p@ss", True, False)),
        ("smtp://127.0.0.1:1025", ("127.0.0.1", 1025, None, None, False, None)),
        ("smtp://mailpit", ("mailpit", 25, None, None, False, None)),
    ],
)
def test_smtp_url_forms(url: str, expected: tuple[Any, ...]) -> None:
    target = parse_smtp_url(url)
    got = (target.host, target.port, target.username, target.password, target.use_tls, target.start_tls)
    assert got == expected


@pytest.mark.parametrize("url", ["http://u:topsecret@h", "smtp://", "smtp://h:99999", "mail.example.com"])
def test_bad_smtp_urls_are_refused_without_echoing_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_smtp_url(url)
    assert "topsecret" not in str(caught.value)


def test_the_smtp_password_stays_out_of_reprs() -> None:
    configured = settings(smtp_url="smtp://mailer:hunter2-secret@mail.example.com:587")
    assert "hunter2-secret" not in repr(configured)
    assert "hunter2-secret" not in repr(parse_smtp_url(configured.smtp_url.get_secret_value()))  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("values", "mode"),
    [
        ({"environment": "development"}, MailDelivery.file),
        ({"environment": "test"}, MailDelivery.file),
        ({"environment": "production", "smtp_url": "smtp://relay:25"}, MailDelivery.smtp),
        ({"environment": "development", "smtp_url": "smtp://relay:25"}, MailDelivery.smtp),
        ({"environment": "production", "mail_delivery": "off"}, MailDelivery.off),
        ({"environment": "production", "mail_delivery": "file"}, MailDelivery.file),
    ],
)
def test_delivery_mode(values: dict[str, Any], mode: MailDelivery) -> None:
    assert settings(**values).mail_mode() is mode


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"environment": "production"}, "SMTP_URL must be set in production"),
        ({"mail_delivery": "smtp"}, "MAIL_DELIVERY=smtp needs SMTP_URL"),
        ({"mail_delivery": "off", "require_verified_email": True}, "REQUIRE_VERIFIED_EMAIL"),
    ],
)
def test_contradictory_mail_settings_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(**values).mail_mode()


def test_links_come_from_the_configured_urls_never_a_request() -> None:
    assert settings(host="0.0.0.0", port=9000).account_base_url == "http://0.0.0.0:9000/account"
    assert settings(public_url="https://id.example.com/").account_base_url == "https://id.example.com/account"
    assert (
        settings(
            public_url="https://id.example.com", account_url="https://app.example.com/me/"
        ).account_base_url
        == "https://app.example.com/me"
    )


@pytest.mark.parametrize("value", ["nobody", "Name <>", "a@b\r\nBcc: x@y.z"])
def test_mail_from_must_be_an_address(value: str) -> None:
    with pytest.raises(ConfigError, match="MAIL_FROM"):
        parse_sender(value)
