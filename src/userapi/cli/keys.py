"""Signing-key commands of the CLI: keys list, keys rotate, keys retire KID."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer

from userapi.cli._common import one_line_errors, settings_with_database
from userapi.core.config import Settings
from userapi.keys.constants import StoredKeyAlgorithm

app = typer.Typer(no_args_is_help=True, help="Signing keys: list, rotate, retire (JWKS, RFC 7517).")


async def prepare_signing_keys(settings: Settings) -> str:
    """Create the first key when none can sign (under the keys advisory lock), then open every
    stored key once: a wrong KEY_ENCRYPTION_SECRET stops here as one line (KeyMaterialUnreadable)."""
    from userapi.db.session import session_scope
    from userapi.keys.service import KeyService

    async with session_scope(settings) as session:
        keys = KeyService.build(session, settings)
        created = None if settings.jwt_algorithm == "HS256" else await keys.ensure_signing_key()
        entries = await keys.entries(strict=True)
    if created is not None:
        return f"signing key {created.kid} ({created.algorithm}) created"
    return f"signing keys ready ({len(entries)} published)"


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


@app.command("list")
@one_line_errors
def list_keys() -> None:
    """Every key: kid, algorithm, state, created, activated (signs from), retires (scheduled or past; UTC)."""
    from userapi.db.session import session_scope
    from userapi.keys.service import KeyService

    settings = settings_with_database()

    async def run() -> list[str]:
        async with session_scope(settings) as session:
            keys = await KeyService.build(session, settings).overview()
        rows = [("KID", "ALGORITHM", "STATE", "CREATED", "ACTIVATED", "RETIRES")]
        rows += [
            (
                k.kid,
                k.algorithm,
                k.state.value,
                _when(k.created_at),
                _when(k.activates_at),
                _when(k.retires_at),
            )
            for k in keys
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]

    lines = asyncio.run(run())
    typer.echo("\n".join(lines) if len(lines) > 1 else "no signing keys (HS256 signs with JWT_SECRET)")


@app.command()
@one_line_errors
def rotate(
    algorithm: Annotated[
        StoredKeyAlgorithm | None,
        typer.Option(help="Algorithm of the new key (default: JWT_ALGORITHM)."),
    ] = None,
) -> None:
    """Publish a new key; it signs after KEYS_PUBLISH_DELAY_SECONDS, the current key retires later."""
    from userapi.db.session import session_scope
    from userapi.keys.service import KeyService

    settings = settings_with_database()
    if algorithm is None and settings.jwt_algorithm == "HS256":
        algorithm = StoredKeyAlgorithm.RS256  # HS256 has no stored key to rotate to

    async def run() -> str:
        async with session_scope(settings) as session:
            key = await KeyService.build(session, settings).rotate(algorithm.value if algorithm else None)
        return (
            f"published {key.kid} ({key.algorithm}); it signs from {_when(key.activates_at)} UTC, "
            "the keys it replaces stay published until their tokens have expired"
        )

    typer.echo(asyncio.run(run()))


# A kid is base64url: it may start with "-", which must not be read as an option.
@app.command(context_settings={"ignore_unknown_options": True})
@one_line_errors
def retire(kid: Annotated[str, typer.Argument(help="The kid to retire (see `userapi keys list`).")]) -> None:
    """Retire a key now (a leaked key): tokens it signed are refused from the next request on."""
    from userapi.db.session import session_scope
    from userapi.keys.service import KeyService

    settings = settings_with_database()

    async def run() -> str:
        async with session_scope(settings) as session:
            replacement = await KeyService.build(session, settings).retire(kid)
        text = f"retired {kid}; tokens it signed are refused from now on"
        if replacement is not None:
            text += f"; {replacement.kid} ({replacement.algorithm}) signs from now on"
        return text

    typer.echo(asyncio.run(run()))
