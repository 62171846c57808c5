"""Settings: plain database URLs, secrets required outside development, list parsing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from userapi.core.config import ConfigError, Environment, Settings, to_async_url


def test_plain_postgres_url_gets_the_asyncpg_driver() -> None:
    assert to_async_url("postgresql://u:p@db:5432/app") == "postgresql+asyncpg://u:p@db:5432/app"
    assert to_async_url("postgres://u:p@db/app") == "postgresql+asyncpg://u:p@db/app"


@pytest.mark.parametrize("url", ["not a url", "mysql://u@h/db", "postgresql://u@h:5432/"])
def test_unusable_database_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        to_async_url(url)


def test_production_refuses_a_missing_secret() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET must be set to at least 32 bytes"):
        Settings(_env_file=None, environment="production", jwt_secret="")  # type: ignore[call-arg]


def test_production_refuses_a_short_secret() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(_env_file=None, environment="production", jwt_secret="x" * 31)  # type: ignore[call-arg]


def test_production_accepts_a_long_secret() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="production",
        jwt_secret="x" * 32,
        key_encryption_secret="k" * 32,
    )
    assert settings.environment is Environment.production


def test_development_invents_a_secret_when_none_is_set() -> None:
    settings = Settings(_env_file=None, environment="development", jwt_secret="")  # type: ignore[call-arg]
    assert len(settings.jwt_secret) >= 32


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.1, 192.168.0.0/16")
    monkeypatch.setenv("BCRYPT_ROUNDS", "5")
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("JWT_SECRET", "y" * 40)
    monkeypatch.setenv("KEY_ENCRYPTION_SECRET", "z" * 40)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.trusted_proxies == ["10.0.0.1", "192.168.0.0/16"]
    assert settings.bcrypt_rounds == 5


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, bcrypt_rounds=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Settings(_env_file=None, log_level="LOUD")  # type: ignore[call-arg]
