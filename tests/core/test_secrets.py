"""Secrets in settings (JWT_SECRET, METRICS_TOKEN, the database password) never show: not in repr,
str, JSON dumps, log lines, nor a traceback the app renders."""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import build_test_app
from userapi.core.config import Settings

JWT = "jwt-secret-that-must-never-show-0123456789abcdef"
METRICS = "metrics-token-that-must-never-show"
DB_PASSWORD = "db-password-that-must-never-show"
KEY_ENCRYPTION = "key-encryption-secret-that-must-never-show-0123"
SECRETS = (JWT, METRICS, DB_PASSWORD, KEY_ENCRYPTION)


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "database_url": f"postgresql://app:{DB_PASSWORD}@db.example.com:5432/app",
        "jwt_secret": JWT,
        "metrics_token": METRICS,
        "key_encryption_secret": KEY_ENCRYPTION,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def _assert_hidden(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_repr_str_and_dumps_hide_every_secret() -> None:
    settings = _settings()
    for shown in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        _assert_hidden(shown)
    # The URL still says where the database is, only without its password.
    assert "db.example.com" in repr(settings.database_url)
    assert "***" in str(settings.database_url)
    # ...and the values are all there for the code that needs them.
    assert settings.jwt_secret.get_secret_value() == JWT
    assert settings.metrics_token.get_secret_value() == METRICS
    assert DB_PASSWORD in settings.async_database_url


def test_the_secrets_are_read_from_the_environment_and_still_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("JWT_SECRET", JWT)
    monkeypatch.setenv("METRICS_TOKEN", METRICS)
    monkeypatch.setenv("KEY_ENCRYPTION_SECRET", KEY_ENCRYPTION)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:{DB_PASSWORD}@db:5432/app")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    _assert_hidden(repr(settings))
    assert settings.plain_database_url == f"postgresql://app:{DB_PASSWORD}@db:5432/app"


def test_a_url_that_does_not_parse_shows_nothing_of_itself() -> None:
    settings = _settings(database_url=f"not a url {DB_PASSWORD}")
    _assert_hidden(repr(settings))


def test_a_log_line_with_the_settings_hides_every_secret(caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings()
    with caplog.at_level(logging.INFO, logger="userapi.test"):
        logging.getLogger("userapi.test").info("starting with %s and %r", settings, settings)
        logging.getLogger("userapi.test").info("secret fields %s", settings.jwt_secret)
    assert len(caplog.records) == 2
    _assert_hidden(caplog.text)


async def test_a_traceback_the_app_renders_hides_every_secret(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings()
    app = build_test_app(settings, engine, None)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"failed with {settings!r}: {settings.jwt_secret} {settings.database_url}")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with caplog.at_level(logging.ERROR):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/boom")
    assert response.status_code == 500
    _assert_hidden(response.text)
    # The app logged the failure with its traceback: the secrets are not in it.
    assert "Traceback" in caplog.text
    assert "RuntimeError" in caplog.text
    _assert_hidden(caplog.text)
