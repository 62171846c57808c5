"""Sign-in and sign-out pages of an area (/admin, /account): they open and end a real userapi session."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from userapi.auth.dependencies import AuthServiceDep
from userapi.auth.schemas import MfaRequired
from userapi.core.client import ClientDep
from userapi.core.runtime import RuntimeDep
from userapi.core.validation import LoginPassword, StorableText
from userapi.mfa.exceptions import InvalidMfaToken
from userapi.web.dependencies import (
    MaybeConsole,
    SignInForm,
    pre_session_token,
    session_cookie_value,
    session_form,
)
from userapi.web.exceptions import InvalidForm
from userapi.web.pages import answer_again, back_to, cookie_names, flash, redirect, render, signer_for

EmailField = Annotated[StorableText, Form(min_length=1, max_length=320)]
PasswordField = Annotated[LoginPassword, Form()]


def _second_step(
    request: Request, runtime: RuntimeDep, area: str, heading: str, mfa_token: str
) -> dict[str, Any]:
    return {
        "heading": heading,
        "area": area,
        "csrf_token": pre_session_token(request, runtime),
        "mfa_token": mfa_token,
    }


def add_sign_in(router: APIRouter, area: str, home: str, heading: str) -> None:
    """GET and POST {area}/sign-in, POST {area}/sign-out on `router` (whose prefix is `area`)."""

    @router.get("/sign-in", name=f"{area}-sign-in-form")
    async def sign_in_form(request: Request, console: MaybeConsole, runtime: RuntimeDep) -> Response:
        """The email and password form (a signed-in browser goes straight on)."""
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
        """The API's sign-in (same throttling, audit and refusals), its tokens kept in the cookie; for
        an account with a second factor, the form that asks for it."""
        result = await auth.login(email, password, client)
        if isinstance(result, MfaRequired):
            return render(
                request,
                "second_factor.html",
                **_second_step(request, runtime, area, heading, result.mfa_token),
            )
        request.state.session_cookie = session_cookie_value(
            runtime, result.access_token, result.refresh_token
        )
        return redirect(request, home)

    @router.post("/sign-in/second-factor", name=f"{area}-second-factor", dependencies=[SignInForm])
    async def second_factor(
        request: Request,
        runtime: RuntimeDep,
        auth: AuthServiceDep,
        client: ClientDep,
        mfa_token: Annotated[StorableText, Form(min_length=1, max_length=512)],
        code: Annotated[StorableText, Form(max_length=16)] = "",
        recovery_code: Annotated[StorableText, Form(max_length=64)] = "",
    ) -> Response:
        """POST /api/v1/auth/mfa/verify: a code from the app (or a recovery code) opens the session.
        A wrong code asks again (the mfa_token allows a few attempts); a dead mfa_token sends the
        browser back to the password."""
        answer_again(
            request,
            "second_factor.html",
            unless=(InvalidMfaToken,),
            **_second_step(request, runtime, area, heading, mfa_token),
        )
        request.state.back = f"{area}/sign-in"
        code, recovery_code = code.strip(), recovery_code.strip()
        if bool(code) == bool(recovery_code):
            raise InvalidForm("Give the code your authenticator app shows, or one recovery code")
        pair = await auth.verify_mfa(mfa_token, code or None, recovery_code or None, client)
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
