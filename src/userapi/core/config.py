"""Settings: the one place configuration is read (environment and `.env`), validated at start-up."""

from __future__ import annotations

import enum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Every resource of the public HTTP API lives under this prefix (versioned).
API_PREFIX = "/api/v1"

# HMAC keys shorter than the hash output weaken HS256 (RFC 7518 section 3.2).
MIN_SECRET_BYTES = 32
# Development only, when KEY_ENCRYPTION_SECRET is unset (`make run` writes a random one into .env):
# a fixed value keeps the embedded database's sealed keys readable across restarts. Never accepted
# outside development, where the secret is required.
DEVELOPMENT_KEY_ENCRYPTION_SECRET = "development-only-key-encryption-secret-not-for-production"


class Environment(enum.StrEnum):
    development = "development"
    test = "test"
    production = "production"


class MailDelivery(enum.StrEnum):
    auto = "auto"
    smtp = "smtp"
    file = "file"
    off = "off"


class ConfigError(ValueError):
    """A setting is missing or unusable; the message is one line for the operator."""


def to_async_url(url: str) -> str:
    """Turn the plain `postgresql://` URL every tool uses into the asyncpg driver URL."""
    from sqlalchemy.engine import make_url  # here: the CLI's start-up should not pay for SQLAlchemy

    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a long text
        raise ConfigError(f"DATABASE_URL is not a valid database URL: {exc}") from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ConfigError("DATABASE_URL must be a postgresql:// URL")
    if not parsed.database:
        raise ConfigError("DATABASE_URL names no database (postgresql://user:pass@host:port/DBNAME)")
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


class DatabaseUrl(SecretStr):
    """A database URL whose password never shows: repr, str and JSON dumps render it as `***`.

    The full URL (password included) is only ever read with `get_secret_value()`, where a
    connection is opened.
    """

    def _display(self) -> str:
        value = self.get_secret_value()
        try:
            from sqlalchemy.engine import make_url  # here: the CLI's start-up should not pay for it

            return make_url(value).render_as_string(hide_password=True)
        except Exception:  # not a URL at all: show nothing of it
            return "**********" if value else ""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Environment = Environment.development
    # Secrets are SecretStr (OWASP ASVS V8.3/V14.3): repr, logs and tracebacks show `**********`.
    database_url: DatabaseUrl | None = None
    db_pool_size: int = Field(default=20, ge=1, le=1000)
    db_pool_timeout: float = Field(default=5.0, gt=0)
    # A second, plain asyncpg pool for the per-request user check (opened lazily).
    db_read_pool_size: int = Field(default=10, ge=1, le=1000)
    db_statement_cache_size: int = Field(default=100, ge=0)

    jwt_secret: SecretStr = SecretStr("")
    # RS256 by default: the cheapest asymmetric verification measured here and the one algorithm
    # every JWT library and gateway verifies (bench/jwt_algorithms.py, README). HS256: existing
    # installs, signed with JWT_SECRET and verifiable only by holders of that secret.
    jwt_algorithm: Literal["EdDSA", "ES256", "RS256", "HS256"] = "RS256"
    jwt_issuer: str = "userapi"
    jwt_audience: str = "userapi"
    access_token_ttl_seconds: int = Field(default=900, ge=30)
    refresh_token_ttl_seconds: int = Field(default=14 * 24 * 3600, ge=60)
    refresh_token_reuse_interval: int = Field(default=10, ge=0)
    # Access tokens whose signature and claims this process verified, kept (LRU, entries) until
    # their exp so a token's next request skips the asymmetric verification; 0 = off. The
    # per-request database check (account, version, permissions, session, key) runs regardless.
    access_token_cache_size: int = Field(default=10_000, ge=0, le=10_000_000)
    # Rotation: a new key is published this long before it signs, so verifiers' JWKS caches
    # (max-age = this minus KEYS_REFRESH_SECONDS) hold it before the first token it signs.
    keys_publish_delay_seconds: int = Field(default=600, ge=0)
    # How often each process reloads the key set (rotation made elsewhere is seen within this).
    keys_refresh_seconds: int = Field(default=30, ge=1)

    # Seals secrets stored in the database (private signing keys, TOTP seeds): core/crypto.py.
    key_encryption_secret: SecretStr = SecretStr("")

    bcrypt_rounds: int = Field(default=12, ge=4, le=16)

    rate_limit_storage_url: str = "memory://"
    rate_limit_login_account: str = "5/minute"
    rate_limit_login_ip: str = "60/minute"
    rate_limit_register_ip: str = "20/minute"
    # Every other check of a secret (current password, and as they arrive one-time codes, recovery
    # codes, mailed tokens): per account, and per client IP across accounts.
    rate_limit_secret_account: str = "5/minute"
    rate_limit_secret_ip: str = "60/minute"
    # The issuer an authenticator app shows next to the account (otpauth:// URI, QR code).
    mfa_issuer: str = "userapi"
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    # Where `make run` keeps the embedded development database (used when DATABASE_URL is unset).
    data_dir: Path = Path(".data")

    # The web console and account pages (userapi.web): a signed-in browser that makes no request
    # for this long is signed out (OWASP ASVS V3.3.2); the session cookie is `Secure` unless
    # CONSOLE_SECURE_COOKIE says otherwise, which by default it does only in development (plain http).
    console_idle_timeout_seconds: int = Field(default=900, ge=60, le=24 * 3600)
    console_secure_cookie: bool | None = None

    # When set, GET /metrics requires `Authorization: Bearer <METRICS_TOKEN>`.
    metrics_token: SecretStr = SecretStr("")

    log_level: str = "INFO"
    access_log: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    # --- links and mail (account recovery, verified addresses) -------------------------------
    # The service's public base URL (https://auth.example.com): the issuer's links in the discovery
    # document and the links in mail are built from it, never from a request's Host header.
    # Unset: http://HOST:PORT.
    public_url: str = ""
    # Where the account pages live (reset-password, verify-email, confirm-email); default PUBLIC_URL/account.
    account_url: str = ""
    product_name: str = Field(default="userapi", min_length=1, max_length=100)
    # auto: SMTP when SMTP_URL is set, else .eml files under DATA_DIR/mail (refused in production).
    mail_delivery: MailDelivery = MailDelivery.auto
    # smtp://user:pass@host:587 (STARTTLS), smtps://user:pass@host:465 (implicit TLS), smtp://host:1025.
    smtp_url: SecretStr | None = None
    smtp_ca_file: Path | None = None
    smtp_timeout_seconds: float = Field(default=20.0, gt=0, le=300)
    mail_from: str = "userapi <no-reply@localhost>"
    mail_max_attempts: int = Field(default=8, ge=1, le=100)
    mail_retry_base_seconds: float = Field(default=30.0, gt=0)
    mail_retry_max_seconds: float = Field(default=3600.0, gt=0)
    mail_poll_seconds: float = Field(default=5.0, gt=0, le=3600)
    password_reset_ttl_seconds: int = Field(default=1800, ge=60)
    email_verify_ttl_seconds: int = Field(default=86400, ge=60)
    require_verified_email: bool = False
    rate_limit_mail_address: str = "5/hour"
    rate_limit_mail_ip: str = "30/hour"

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"):
            raise ValueError("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @model_validator(mode="after")
    def _check_secret(self) -> Settings:
        if self.environment is not Environment.development and (
            len(self.jwt_secret.get_secret_value().encode()) < MIN_SECRET_BYTES
        ):
            raise ConfigError(
                f"JWT_SECRET must be set to at least {MIN_SECRET_BYTES} bytes outside development "
                f"(ENVIRONMENT={self.environment.value}); generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        if self.environment is Environment.development and not self.jwt_secret:
            # Development without a secret still works, but tokens die with the process.
            import secrets

            self.jwt_secret = SecretStr(secrets.token_urlsafe(48))
        key_secret = self.key_encryption_secret.get_secret_value()
        if self.environment is not Environment.development and len(key_secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"KEY_ENCRYPTION_SECRET must be set to at least {MIN_SECRET_BYTES} bytes outside "
                f"development (ENVIRONMENT={self.environment.value}); generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'` and keep it: "
                "the stored signing keys can only be opened with it"
            )
        if not key_secret:
            self.key_encryption_secret = SecretStr(DEVELOPMENT_KEY_ENCRYPTION_SECRET)
        if self.keys_publish_delay_seconds and self.keys_publish_delay_seconds < self.keys_refresh_seconds:
            raise ConfigError(
                "KEYS_PUBLISH_DELAY_SECONDS must be 0 or at least KEYS_REFRESH_SECONDS: every process "
                "must have loaded a new key before it starts signing"
            )
        return self

    @property
    def jwks_max_age(self) -> int:
        """Seconds verifiers may cache the JWKS: a new key is then in every cache before it signs."""
        return max(0, self.keys_publish_delay_seconds - self.keys_refresh_seconds)

    @property
    def issuer_url(self) -> str:
        """The public base URL for links in the discovery document (no trailing slash)."""
        return self.base_url

    @property
    def base_url(self) -> str:
        """PUBLIC_URL without a trailing slash, or where `serve` listens (development)."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def account_base_url(self) -> str:
        """ACCOUNT_URL, or PUBLIC_URL + /account: the prefix of every link sent by mail."""
        return (self.account_url or f"{self.base_url}/account").rstrip("/")

    def mail_mode(self) -> MailDelivery:
        """How mail leaves this process: smtp, file or off. Raises ConfigError.

        Checked when the service starts (not by every command: `migrate` sends no mail).
        """
        mode = self.mail_delivery
        if mode is MailDelivery.auto:
            if self.smtp_url is not None and self.smtp_url.get_secret_value():
                mode = MailDelivery.smtp
            elif self.environment is Environment.production:
                raise ConfigError(
                    "SMTP_URL must be set in production (smtp://user:pass@host:587), "
                    "or MAIL_DELIVERY=off to run without mail"
                )
            else:
                mode = MailDelivery.file
        if mode is MailDelivery.smtp and not (self.smtp_url and self.smtp_url.get_secret_value()):
            raise ConfigError("MAIL_DELIVERY=smtp needs SMTP_URL (smtp://user:pass@host:587)")
        if mode is MailDelivery.off and self.require_verified_email:
            raise ConfigError("REQUIRE_VERIFIED_EMAIL=true needs mail: MAIL_DELIVERY must not be off")
        return mode

    @property
    def secure_cookies(self) -> bool:
        """Whether the console's cookies carry `Secure` (always, except in development by default)."""
        if self.console_secure_cookie is not None:
            return self.console_secure_cookie
        return self.environment != Environment.development

    @property
    def async_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError(
                "DATABASE_URL is not set: run `userapi db start` for the embedded database, "
                "or set DATABASE_URL=postgresql://user:pass@host:port/db"
            )
        return to_async_url(self.database_url.get_secret_value())

    @property
    def plain_database_url(self) -> str | None:
        """The configured postgresql:// URL with its password (for tools that connect), or None."""
        return self.database_url.get_secret_value() if self.database_url else None


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
