"""`userapi db ...`: the embedded development cluster (start, stop, status, url) and migration history."""

from __future__ import annotations

import asyncio

import typer

from userapi.cli._common import load_settings, one_line_errors, resolve_database_url
from userapi.core.config import to_async_url
from userapi.db.embedded import EmbeddedPostgres

app = typer.Typer(no_args_is_help=True, help="The database: embedded cluster and migration history.")


def _cluster() -> EmbeddedPostgres:
    return EmbeddedPostgres(load_settings().data_dir.resolve() / "postgres")


@app.command()
@one_line_errors
def start() -> None:
    """Start the embedded PostgreSQL cluster (idempotent) and print its URL."""
    typer.echo(resolve_database_url(load_settings().model_copy(update={"database_url": None})))


@app.command()
@one_line_errors
def stop() -> None:
    """Stop the embedded cluster (its data stays)."""
    _cluster().stop()
    typer.echo("embedded database stopped")


@app.command()
@one_line_errors
def status() -> None:
    """Say whether the embedded cluster runs, where its data is and its URL."""
    state = _cluster().status()
    typer.echo(f"running: {'yes' if state.running else 'no'}")
    typer.echo(f"data:    {state.data_dir}")
    if state.running:
        typer.echo(f"pid:     {state.pid}")
        typer.echo(f"url:     {state.url}")
    if not state.running:
        raise typer.Exit(3)  # like `pg_ctl status`: scripts can test it


@app.command()
@one_line_errors
def url() -> None:
    """Print the database URL in use (DATABASE_URL, or the running embedded cluster's)."""
    typer.echo(resolve_database_url(load_settings(), start=False))


@app.command()
@one_line_errors
def history() -> None:
    """Print which migrations ran and when (the schema_migrations table)."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from userapi.db import migrate as migrations

    database_url = resolve_database_url(load_settings())

    async def read() -> list[migrations.HistoryRow]:
        engine = create_async_engine(to_async_url(database_url), poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await migrations.history(conn)
        finally:
            await engine.dispose()

    rows = asyncio.run(read())
    if not rows:
        typer.echo("no migrations recorded (run `userapi migrate`)")
        return
    header = ("revision", "executed_at", "duration_ms", "applied_by", "description")
    table = [header] + [
        (
            r.revision,
            r.executed_at.isoformat(timespec="seconds"),
            "" if r.duration_ms is None else str(r.duration_ms),
            r.applied_by or "",
            r.description,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [row[i].ljust(widths[i]) for i in range(len(widths))] + [row[-1]]
        typer.echo("  ".join(cells).rstrip())
