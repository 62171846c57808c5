"""What every CLI command shares: settings, the database URL (embedded or configured), one-line errors."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError

from userapi.core.config import ConfigError, Environment, Settings, get_settings, to_async_url
from userapi.core.exceptions import AppError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from userapi.roles.service import RoleService
    from userapi.users.service import UserService

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
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except BrokenPipeError:
            if not _stdout_closed():
                raise
            # `userapi keys list | head -1`: the reader has gone, as with any Unix tool; not an error
            # to report (the Python docs' recipe for SIGPIPE: nothing more may reach stdout, even
            # the interpreter's flush at exit).
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(_EXIT_SIGPIPE) from None
        except Exception as exc:
            message = _expected_failure(exc)
            if message is None:
                raise
            raise fail(message) from None

    return wrapper


# What a shell reports for a process ended by SIGPIPE (128 + 13), as `git log | head` gives.
_EXIT_SIGPIPE = 141


def _stdout_closed() -> bool:
    """Whether the reader of stdout has gone (poll flags the write end of a pipe with POLLERR), so a
    broken pipe came from the output and not from, say, the database's socket."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError):  # stdout already closed or not a file
        return True


def _expected_failure(exc: Exception) -> str | None:
    """The one line to print for an expected failure; None for a bug (which keeps its traceback)."""
    from userapi.db.embedded import EmbeddedPostgresError

    if isinstance(exc, ValidationError):
        return describe_validation_error(exc)
    if isinstance(exc, CliError | ConfigError | EmbeddedPostgresError):
        return str(exc)
    if isinstance(exc, AppError):  # a service's rule: the API's error code, then its own words
        return f"{exc.code}: {exc.detail}"
    # Driver errors can only have been raised if the driver was imported: no import just to check.
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
        return f"database error: {first_line(exc.orig)}"
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None and isinstance(exc, asyncpg.PostgresError):
        return f"database error: {first_line(exc)}"
    if isinstance(exc, OSError) and exc.filename is not None:
        # A file or directory (DATA_DIR, the embedded cluster's files), not a socket.
        return f"{exc.strerror or first_line(exc)}: {exc.filename}"
    if isinstance(exc, OSError | TimeoutError):
        return f"cannot reach the database: {first_line(exc)}"
    return None


def validated(kind: Any, value: str, what: str) -> str:
    """`value` as the API would take it (NUL, length, format; `kind` an annotated type such as
    `Email`), else CliError "invalid <what>: <the rule it breaks>"."""
    try:
        return str(TypeAdapter(kind).validate_python(value))
    except ValidationError as exc:
        raise CliError(f"invalid {what}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None


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
    if settings.plain_database_url:
        to_async_url(settings.plain_database_url)  # validate early, with a one-line error
        return settings.plain_database_url
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

    The URL is also exported, so worker processes and Alembic see the same database, and so is
    the JWT secret: in development without one, each worker would otherwise invent its own and
    refuse the tokens of the others.
    """
    settings = load_settings()
    url = resolve_database_url(settings)
    os.environ["DATABASE_URL"] = url
    os.environ["JWT_SECRET"] = settings.jwt_secret.get_secret_value()
    get_settings.cache_clear()  # the app factory reads settings again, now with the URL
    return get_settings()


def user_service(session: AsyncSession, settings: Settings) -> UserService:
    """The users service on a CLI session, wired as a request wires it (audited; CLI actor)."""
    from userapi.audit.service import AuditService
    from userapi.auth.service import SessionRevoker
    from userapi.core.security import PasswordHasher
    from userapi.users.service import UserService

    # The bcrypt cost is the configured one, read per command run.
    return UserService.for_session(
        session,
        PasswordHasher(settings.bcrypt_rounds),
        SessionRevoker.for_session(session),
        AuditService.for_session(session),
    )


def role_service(session: AsyncSession) -> RoleService:
    """The roles service on a CLI session, wired as a request wires it."""
    from userapi.audit.service import AuditService
    from userapi.roles.service import RoleService
    from userapi.users.service import UserRoleHolders

    return RoleService.for_session(
        session, UserRoleHolders.for_session(session), AuditService.for_session(session)
    )
