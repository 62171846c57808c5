"""The hosted account pages (/account): a signed-in user's name, password and sessions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from userapi.auth.dependencies import AuthServiceDep, RecoveryServiceDep
from userapi.core.validation import Email, FullName, LoginPassword, NewPassword
from userapi.users.dependencies import UserServiceDep
from userapi.web import constants as c
from userapi.web.dependencies import AccountConsole, session_form
from userapi.web.pages import PageRoute, back_to, flash, redirect, render, require_fields
from userapi.web.signin import add_sign_in

router = APIRouter(prefix=c.ACCOUNT, route_class=PageRoute, include_in_schema=False)
add_sign_in(router, c.ACCOUNT, c.ACCOUNT, "Your account")
Form_ = session_form(c.ACCOUNT)
Back = back_to(c.ACCOUNT)


@router.get("")
async def account_page(request: Request, console: AccountConsole, auth: AuthServiceDep) -> Response:
    """The account, its sessions (this one marked), and the forms that change them."""
    sessions = await auth.sessions(console.principal.user)
    return render(
        request,
        "account/index.html",
        console=console,
        area=c.ACCOUNT,
        user=console.principal.user,
        sessions=sessions,
        current=console.session_id,
    )


@router.post("/name", dependencies=[Back, Form_])
async def change_name(
    request: Request,
    console: AccountConsole,
    users: UserServiceDep,
    full_name: Annotated[FullName, Form()] = "",
) -> Response:
    """PATCH /api/v1/users/me: the name (empty clears it)."""
    await require_fields(request, "full_name")  # sent empty clears the name; not sent is no form of ours
    await users.update_profile(console.principal.user, full_name or None)
    flash(request, "Your name is saved.")
    return redirect(request, c.ACCOUNT)


@router.post("/password", dependencies=[Back, Form_])
async def change_password(
    request: Request,
    console: AccountConsole,
    auth: AuthServiceDep,
    current_password: Annotated[LoginPassword, Form()],
    new_password: Annotated[NewPassword, Form()],
) -> Response:
    """POST /api/v1/users/me/password: checked, throttled and audited as there; every session ends,
    this one too, so the browser signs in again with the new password."""
    await auth.change_password(console.principal.user, current_password, new_password, console.client)
    request.state.session_cookie = None
    request.state.end_session = True
    flash(request, "Your password is changed and every session has ended: sign in with the new one.")
    return redirect(request, f"{c.ACCOUNT}/sign-in")


@router.post("/email/verify/resend", dependencies=[Back, Form_])
async def resend_verification(
    request: Request, console: AccountConsole, recovery: RecoveryServiceDep
) -> Response:
    """POST /api/v1/auth/email/verify/resend: a new link (the previous one stops working)."""
    await recovery.resend_verification(console.principal.user, console.client)
    flash(request, f"A new verification link is on its way to {console.principal.user.email}.")
    return redirect(request, c.ACCOUNT)


@router.post("/email", dependencies=[Back, Form_])
async def change_email(
    request: Request,
    console: AccountConsole,
    recovery: RecoveryServiceDep,
    new_email: Annotated[Email, Form()],
    current_password: Annotated[LoginPassword, Form()],
) -> Response:
    """POST /api/v1/users/me/email: a confirmation link to the new address, a notice to the old one."""
    await recovery.request_email_change(console.principal.user, new_email, current_password, console.client)
    flash(
        request, f"A link to confirm {new_email} is on its way there; your address changes when it is opened."
    )
    return redirect(request, c.ACCOUNT)


@router.post("/sessions/{session_id}/end", dependencies=[Back, Form_])
async def end_session(
    request: Request, session_id: uuid.UUID, console: AccountConsole, auth: AuthServiceDep
) -> Response:
    """DELETE /api/v1/auth/sessions/{id}: one of the caller's sessions (this one signs the browser out)."""
    await auth.end_session(console.principal.user, session_id, console.client)
    if session_id == console.session_id:
        request.state.session_cookie = None
        request.state.end_session = True
        flash(request, "This session has ended: you are signed out.")
        return redirect(request, f"{c.ACCOUNT}/sign-in")
    flash(request, "The session has ended.")
    return redirect(request, c.ACCOUNT)
