"""What every CLI command shares: settings, the database URL (embedded or configured), one-line errors."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import asyncpg
import typer
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from userapi.core.config import ConfigError, Environment, Settings, get_settings, to_async_url

P = ParamSpec("P")
R = TypeVar("R")


class CliError(Exception):
    """Ends a command with its message as one line on stderr and exit status 1."""


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(1)


def one_line_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Expected failures (bad config, unreachable database, ...) print one line, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from userapi.db.embedded import EmbeddedPostgresError

        try:
            return func(*args, **kwargs)
        except ValidationError as exc:
            raise fail(describe_validation_error(exc)) from None
        except (CliError, ConfigError, EmbeddedPostgresError) as exc:
            raise fail(str(exc)) from None
        except DBAPIError as exc:
            raise fail(f"database error: {first_line(exc.orig)}") from None
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise fail(f"cannot reach the database: {first_line(exc)}") from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


def first_line(exc: object) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{field}: {message}" if field else message)
    return "invalid configuration: " + "; ".join(parts)


def load_settings() -> Settings:
    return get_settings()


def resolve_database_url(settings: Settings, *, start: bool = True) -> str:
    """The plain postgresql:// URL to use: DATABASE_URL, else the embedded cluster (development)."""
    if settings.database_url:
        to_async_url(settings.database_url)  # validate early, with a one-line error
        return settings.database_url
    if settings.environment is Environment.production:
        raise CliError("DATABASE_URL must be set in production")
    from userapi.db.embedded import EmbeddedPostgres, ensure_server_binaries

    cluster = EmbeddedPostgres(settings.data_dir.resolve() / "postgres")
    if not start:
        return cluster.url()
    if not cluster.status().running:
        ensure_server_binaries()
    return cluster.start()


def settings_with_database() -> Settings:
    """Settings whose DATABASE_URL is set, starting the embedded cluster when needed.

    The URL is also exported, so worker processes and Alembic see the same database.
    """
    settings = load_settings()
    url = resolve_database_url(settings)
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()  # the app factory reads settings again, now with the URL
    return get_settings()
