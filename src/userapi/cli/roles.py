"""`userapi roles ...`: list, show, create, grant, revoke and assign, through the roles and users services."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from userapi.cli._common import (
    CliError,
    one_line_errors,
    role_service,
    settings_with_database,
    user_service,
    validated,
)
from userapi.core.config import Settings
from userapi.core.validation import Email

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from userapi.roles.service import RoleView

T = TypeVar("T")

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Roles and their permissions: the same rules, audit events and errors as /api/v1/roles.",
)
Permissions = Annotated[
    list[str], typer.Argument(help="Permission names, e.g. users:read (see `roles show`).")
]


def _in_session(work: Callable[[AsyncSession, Settings], Awaitable[T]]) -> T:
    """Run `work` in one transaction on the configured (or embedded) database; commits on success."""
    from userapi.db.session import session_scope

    settings = settings_with_database()

    async def run() -> T:
        async with session_scope(settings) as session:
            return await work(session, settings)

    return asyncio.run(run())


def _summary(view: RoleView) -> str:
    granted = "every permission (now and later)" if view.all_permissions else ", ".join(view.permissions)
    return f"{view.name}: {granted or 'no permission'}"


@app.command("list")
@one_line_errors
def list_roles() -> None:
    """Every role: name, accounts holding it, permissions (* marks a built-in role)."""

    async def work(session: AsyncSession, settings: Settings) -> list[RoleView]:
        return await role_service(session).all_roles()

    views = _in_session(work)
    width = max(len(v.name) for v in views) + 1
    typer.echo(f"{'NAME':<{width + 1}} {'USERS':>6}  PERMISSIONS")
    for view in views:
        name = view.name + ("*" if view.built_in else "")
        granted = "(all)" if view.all_permissions else " ".join(view.permissions) or "-"
        typer.echo(f"{name:<{width + 1}} {view.user_count or 0:>6}  {granted}")


@app.command()
@one_line_errors
def show(name: Annotated[str, typer.Argument(help="The role's name.")]) -> None:
    """One role: its description, holders and permissions, and the catalogue it draws from."""
    from userapi.roles.service import RoleService

    async def work(session: AsyncSession, settings: Settings) -> RoleView:
        return await role_service(session).get(name)

    view = _in_session(work)
    typer.echo(f"name         {view.name}{' (built-in)' if view.built_in else ''}")
    typer.echo(f"description  {view.description or '-'}")
    typer.echo(f"accounts     {view.user_count or 0}")
    typer.echo(
        "permissions" + ("  every permission, including ones added later" if view.all_permissions else "")
    )
    for permission, description in RoleService.catalogue():
        mark = "x" if permission in view.permissions else " "
        typer.echo(f"  [{mark}] {permission:<20} {description}")


@app.command()
@one_line_errors
def create(
    name: Annotated[str, typer.Argument(help="Lower-case letters, digits, _ and -, starting with a letter.")],
    description: Annotated[str, typer.Option("--description", "-d", help="One line.")] = "",
    permission: Annotated[
        list[str] | None, typer.Option("--permission", "-p", help="A permission to grant (repeatable).")
    ] = None,
) -> None:
    """Create a custom role."""
    from userapi.roles.schemas import RoleDescription
    from userapi.roles.service import Actor

    text = validated(RoleDescription, description, "description")

    async def work(session: AsyncSession, settings: Settings) -> RoleView:
        return await role_service(session).create(Actor.cli(), name, text, permission or [])

    typer.echo(f"created {_summary(_in_session(work))}")


@app.command()
@one_line_errors
def grant(name: Annotated[str, typer.Argument(help="The role's name.")], permissions: Permissions) -> None:
    """Add permissions to a custom role; its holders get them on their next request."""
    from userapi.roles.service import Actor

    async def work(session: AsyncSession, settings: Settings) -> RoleView:
        return await role_service(session).grant(Actor.cli(), name, permissions)

    typer.echo(_summary(_in_session(work)))


@app.command()
@one_line_errors
def revoke(name: Annotated[str, typer.Argument(help="The role's name.")], permissions: Permissions) -> None:
    """Remove permissions from a custom role; its holders lose them on their next request."""
    from userapi.roles.service import Actor

    async def work(session: AsyncSession, settings: Settings) -> RoleView:
        return await role_service(session).revoke(Actor.cli(), name, permissions)

    typer.echo(_summary(_in_session(work)))


@app.command()
@one_line_errors
def assign(
    email: Annotated[str, typer.Argument(help="The account's email.")],
    role: Annotated[str, typer.Argument(help="The role to give it.")],
) -> None:
    """Give an account a role (the last-admin rule applies); it acts on the account's next request."""
    from userapi.roles.service import Actor

    address = validated(Email, email, "email")

    async def work(session: AsyncSession, settings: Settings) -> str:
        users = user_service(session, settings)
        user = await users.get_by_email(address)
        if user is None:
            raise CliError(f"no account with the email {address}")
        old = user.role
        await users.admin_update(Actor.cli(), user, role=role, fields={"role"})
        return f"{address}: {old} -> {user.role}"

    typer.echo(_in_session(work))
