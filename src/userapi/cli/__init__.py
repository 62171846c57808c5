"""The `userapi` command line: serve, migrate, db, roles, keys, mail, create-admin, reset-mfa, and more."""

from __future__ import annotations

import asyncio
import glob
import os
import signal
import socket
import tempfile
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from userapi.db.migrate import MigrationStep

from userapi.cli import accounts, db, keys, mail, roles
from userapi.cli._common import CliError, load_settings, one_line_errors, settings_with_database
from userapi.core.config import Settings, to_async_url

# Heavy modules (SQLAlchemy, Alembic, uvicorn, the app) are imported inside the commands that
# need them: `userapi --help` and `userapi db url` should answer at once.

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(db.app, name="db")
app.add_typer(roles.app, name="roles")
app.add_typer(keys.app, name="keys")
app.add_typer(mail.app, name="mail")
app.command("create-admin")(accounts.create_admin)
app.command("prune-sessions")(accounts.prune_sessions)
app.command("reset-mfa")(accounts.reset_mfa)


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CliError(
                f"cannot listen on {host}:{port}: {exc.strerror}; set PORT to another port"
            ) from None


def _prepare_multiprocess_metrics() -> None:
    """Give the workers one empty directory to share metric samples through (prometheus-client)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="userapi-metrics-")
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):  # samples of an earlier run would be summed in
        os.remove(stale)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


async def _missing_revisions(async_url: str) -> list[str]:
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from userapi.db import migrate as migrations

    engine = create_async_engine(async_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await migrations.missing_revisions(conn)
    finally:
        await engine.dispose()


def _mail_summary(settings: Settings) -> str:
    """Where mail goes, for the start-up banner. Raises ConfigError (SMTP_URL in production, ...)."""
    from userapi.mail.composer import MailComposer
    from userapi.mail.transport import FileTransport, SmtpTransport, build_transport

    transport = build_transport(settings)
    if transport is None:
        return "off (MAIL_DELIVERY=off: endpoints that need mail answer 503)"
    MailComposer.from_settings(settings)  # MAIL_FROM, the templates and the cipher load
    if isinstance(transport, FileTransport):
        return f".eml files in {transport.directory} (no SMTP_URL)"
    assert isinstance(transport, SmtpTransport)
    target = transport.target
    security = "implicit TLS" if target.use_tls else "STARTTLS" if target.start_tls else "STARTTLS if offered"
    return f"smtp {target.host}:{target.port} ({security}), from {settings.mail_from}"


@app.command()
@one_line_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default: HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    wait_for_migrations: Annotated[
        bool, typer.Option("--wait-for-migrations", help="Wait until the database reaches head.")
    ] = False,
) -> None:
    """Serve the API with uvicorn (uvloop, httptools)."""
    mail = _mail_summary(load_settings())  # before the database: a missing SMTP_URL is one line, at once
    settings = settings_with_database()
    host = host or settings.host
    port = settings.port if port is None else port
    url = to_async_url(settings.plain_database_url or "")
    missing = asyncio.run(_missing_revisions(url))
    while missing and wait_for_migrations:
        asyncio.run(asyncio.sleep(1))
        missing = asyncio.run(_missing_revisions(url))
    if missing:
        raise CliError(
            f"the database is behind the code: missing revision(s) {', '.join(missing)}; "
            "run `userapi migrate`"
        )
    asyncio.run(keys.prepare_signing_keys(settings))
    _check_port_free(host, port)
    if workers > 1:
        _prepare_multiprocess_metrics()
    from sqlalchemy.engine import make_url

    shown = make_url(settings.plain_database_url or "").render_as_string(hide_password=True)
    typer.echo(f"userapi {settings.environment.value}, {workers} worker(s)")
    typer.echo(f"  API       http://{host}:{port}/api/v1")
    typer.echo(f"  docs      http://{host}:{port}/docs")
    typer.echo(f"  database  {shown}")
    typer.echo(f"  mail      {mail}")
    import uvicorn  # here: migrate and the db commands need not import the web server

    # uvicorn drains on SIGTERM, then restores the previous handler and raises the signal again;
    # with the default one the process would die of it (status -15, 143 in a shell) after a clean
    # stop. (With --workers, the supervisor handles SIGTERM itself and returns normally.)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        "userapi.main:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=settings.access_log,
        log_level=settings.log_level.lower(),
        # Off: uvicorn's own proxy-header middleware would believe X-Forwarded-For/Proto from
        # FORWARDED_ALLOW_IPS, 127.0.0.1 by default, whatever TRUSTED_PROXIES says. The app's
        # TrustedProxyHeaders applies TRUSTED_PROXIES (tests/core/test_http_conventions.py).
        proxy_headers=False,
        timeout_graceful_shutdown=20,
        # A worker still importing on a busy machine is not dead: uvicorn's 5 s default killed some.
        timeout_worker_healthcheck=30,
    )


@app.command()
@one_line_errors
def migrate(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Upgrade the database (to head by default), holding an advisory lock."""
    settings = settings_with_database()
    from userapi.db import migrate as migrations

    _run_migration(migrations.upgrade, to_async_url(settings.plain_database_url or ""), revision)
    if revision == "head":
        typer.echo(asyncio.run(keys.prepare_signing_keys(settings)))


@app.command()
@one_line_errors
def downgrade(
    revision: Annotated[str, typer.Option(help="Target revision (default: one step back).")] = "-1",
) -> None:
    """Downgrade the database by one revision, or to --revision (`base` empties it)."""
    settings = settings_with_database()
    from userapi.db import migrate as migrations

    _run_migration(migrations.downgrade, to_async_url(settings.plain_database_url or ""), revision)


def _run_migration(step: MigrationStep, url: str, revision: str) -> None:
    try:
        step(url, revision, typer.echo)
    except BrokenPipeError:  # stdout's reader went away (one_line_errors); the migration is not at fault
        raise
    except Exception as exc:
        from alembic.util.exc import CommandError

        if isinstance(exc, CommandError):
            raise CliError(str(exc).splitlines()[0]) from None
        message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        text = message[0] if message else type(exc).__name__
        if "uuid-ossp" in text:
            text += " (install PostgreSQL's contrib modules: Debian's postgresql-contrib)"
        raise CliError(f"migration failed: {text}") from None
    typer.echo(f"database at {revision}")


def main() -> None:
    app()
