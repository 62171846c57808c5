"""Sign-in and sign-out pages of an area (/admin, /account): they open and end a real userapi session."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from userapi.auth.dependencies import AuthServiceDep
from userapi.core.client import ClientDep
from userapi.core.runtime import RuntimeDep
from userapi.core.validation import LoginPassword, StorableText
from userapi.web.dependencies import (
    MaybeConsole,
    SignInForm,
    pre_session_token,
    session_cookie_value,
    session_form,
)
from userapi.web.pages import back_to, cookie_names, flash, redirect, render, signer_for

EmailField = Annotated[StorableText, Form(min_length=1, max_length=320)]
PasswordField = Annotated[LoginPassword, Form()]


def add_sign_in(router: APIRouter, area: str, home: str, heading: str) -> None:
    """GET and POST {area}/sign-in, POST {area}/sign-out on `router` (whose prefix is `area`)."""

    @router.get("/sign-in", name=f"{area}-sign-in-form")
    async def sign_in_form(request: Request, console: MaybeConsole, runtime: RuntimeDep) -> Response:
        if console is not None:
            return redirect(request, home)
        token = pre_session_token(request, runtime)
        return render(request, "sign_in.html", heading=heading, area=area, csrf_token=token)

    @router.post("/sign-in", name=f"{area}-sign-in", dependencies=[back_to(f"{area}/sign-in"), SignInForm])
    async def sign_in(
        request: Request,
        runtime: RuntimeDep,
        auth: AuthServiceDep,
        client: ClientDep,
        email: EmailField,
        password: PasswordField,
    ) -> Response:
        """The API's sign-in (same throttling, audit and refusals), its tokens kept in the cookie."""
        pair = await auth.login(email, password, client)
        request.state.session_cookie = session_cookie_value(runtime, pair.access_token, pair.refresh_token)
        return redirect(request, home)

    @router.post("/sign-out", name=f"{area}-sign-out", dependencies=[session_form(area)])
    async def sign_out(
        request: Request, runtime: RuntimeDep, auth: AuthServiceDep, client: ClientDep
    ) -> Response:
        """Ends the session as the API's logout does (its tokens stop working everywhere)."""
        value = signer_for(runtime).loads(request.cookies.get(cookie_names(runtime.settings).session))
        if value is not None and isinstance(value.get("r"), str):
            await auth.logout(value["r"], client)
        request.state.session_cookie = None
        request.state.end_session = True
        flash(request, "You are signed out.")
        return redirect(request, f"{area}/sign-in")
