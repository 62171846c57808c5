"""Mail commands of the CLI: `userapi mail status` (the outbox at a glance) and `mail prune`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from userapi.cli._common import one_line_errors, settings_with_database

app = typer.Typer(no_args_is_help=True, help="The mail outbox.")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@app.command()
@one_line_errors
def status(
    limit: Annotated[int, typer.Option(min=0, max=1000, help="How many recent messages to list.")] = 20,
) -> None:
    """Messages pending, sent and failed, the oldest pending one's age, and the latest messages."""
    from userapi.db.session import session_scope
    from userapi.mail.service import MailService

    settings = settings_with_database()

    async def run() -> list[str]:
        async with session_scope(settings) as session:
            mail = MailService.for_session(session, None)
            counts = await mail.counts()
            rows = await mail.recent(limit) if limit else []
        lines = [
            f"pending {counts.pending}  sent {counts.sent}  failed {counts.failed}  "
            f"oldest pending {_age(counts.oldest_pending_age)}"
        ]
        if rows:
            lines.append(
                f"{'id':>6}  {'status':<8} {'tries':>5}  {'created (UTC)':<19}  template / to / last error"
            )
        for row in rows:
            created = row.created_at.strftime("%Y-%m-%d %H:%M:%S")
            error = f"  ({row.last_error})" if row.last_error else ""
            lines.append(
                f"{row.id:>6}  {row.status:<8} {row.attempts:>5}  {created}  "
                f"{row.template} -> {row.recipient}{error}"
            )
        return lines

    for line in asyncio.run(run()):
        typer.echo(line)


@app.command()
@one_line_errors
def prune(
    days: Annotated[int, typer.Option(min=0, help="Keep sent and failed messages this many days.")] = 30,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000)] = 5_000,
) -> None:
    """Delete sent and failed messages older than --days, in batches (pending ones are kept)."""
    from userapi.db.session import session_scope
    from userapi.mail.service import MailService

    settings = settings_with_database()
    before = datetime.now(UTC) - timedelta(days=days)

    async def run() -> int:
        total = 0
        while True:  # one short transaction per batch
            async with session_scope(settings) as session:
                deleted = await MailService.for_session(session, None).prune_batch(
                    before=before, batch_size=batch_size
                )
            total += deleted
            if deleted < batch_size:
                return total

    typer.echo(f"deleted {asyncio.run(run())} messages")
