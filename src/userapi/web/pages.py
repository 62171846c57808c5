"""Rendering of the web pages: templates, security headers, cookies, flash messages, and errors as pages.

`PageRoute` is the route class of every page: what a route leaves on `request.state` (a renewed
or ended session, a message for the next page) becomes cookies on whatever response it returns,
and a domain error (last admin, email taken, throttled, ...) becomes a readable message: on the
page the form came from (`request.state.back`, after a redirect) or on a page of its own. The
database session has been committed or rolled back by then, as for the API.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import cache
from html import escape
from typing import Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse, Response

from userapi.core.config import Settings
from userapi.core.exceptions import AppError, Throttled
from userapi.core.headers import content_security_policy, page_security_headers
from userapi.core.runtime import Runtime
from userapi.web import constants as c
from userapi.web.cookies import CookieSigner
from userapi.web.exceptions import CsrfRefused, InvalidForm, SignInRequired


@dataclass(frozen=True, slots=True)
class CookieNames:
    """The names of the console's three cookies."""

    session: str
    pre_session: str
    flash: str


def cookie_names(settings: Settings) -> CookieNames:
    """The `__Host-` names where cookies are Secure (a plain-http development server cannot set those)."""
    if settings.secure_cookies:
        return CookieNames(c.SECURE_SESSION_COOKIE, c.SECURE_PRE_SESSION_COOKIE, c.SECURE_FLASH_COOKIE)
    return CookieNames(c.SESSION_COOKIE, c.PRE_SESSION_COOKIE, c.FLASH_COOKIE)


@cache
def _signer(secret: str) -> CookieSigner:
    from pydantic import SecretStr

    return CookieSigner(SecretStr(secret))


def signer_for(runtime: Runtime) -> CookieSigner:
    """The process's cookie signer (one per JWT_SECRET, built once)."""
    return _signer(runtime.settings.jwt_secret.get_secret_value())


def runtime_of(request: Request) -> Runtime:
    """The process's runtime, for code that has the request but no dependency (rendering)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


@cache
def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("userapi.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def root(request: Request) -> str:
    """The ASGI root_path (from the operator's server configuration, never from a request header)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def render(request: Request, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page from `template`, with the message a redirect left for it (shown once)."""
    flash = signer_for(runtime_of(request)).loads(
        request.cookies.get(cookie_names(runtime_of(request).settings).flash)
    )
    if flash is not None:
        request.state.flash_shown = True
    html = (
        _templates()
        .get_template(template)
        .render(root=root(request), static=root(request) + c.STATIC, flash=flash, **context)
    )
    return HTMLResponse(html, status_code=status_code)


# Characters a path-and-query may hold as they are (RFC 3986 reserved, unreserved, and `%` of escapes).
_URL_SAFE = "/?&=#%:@!$'()*+,;~-._"


def redirect(request: Request, path: str) -> HTMLResponse:
    """303 See Other to a path of this service (never built from the Host header), with a link for
    clients that do not follow redirects."""
    # Whatever built `path`, the header gets printable ASCII only (RFC 9110 5.5; RFC 3986 escapes).
    url = root(request) + quote(path, safe=_URL_SAFE)
    body = f'<!DOCTYPE html><title>See other</title><p><a href="{escape(url)}">Continue</a></p>'
    return HTMLResponse(body, status_code=303, headers={"Location": url})


def flash(request: Request, message: str, kind: str = "ok") -> None:
    """A message for the next page the browser shows (after the redirect this request answers)."""
    request.state.flash = {"k": kind, "m": message}


def _finish(request: Request, response: Response) -> Response:
    runtime = runtime_of(request)
    settings = runtime.settings
    names = cookie_names(settings)
    signer = signer_for(runtime)
    secure = settings.secure_cookies

    def set_cookie(name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="strict"
        )

    def clear(name: str) -> None:
        response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="strict")

    state = request.state
    session_value: str | None = getattr(state, "session_cookie", None)
    if session_value is not None:
        set_cookie(names.session, session_value, settings.console_idle_timeout_seconds)
    elif getattr(state, "end_session", False):
        clear(names.session)
    pre_session: str | None = getattr(state, "pre_session", None)
    if pre_session is not None:
        set_cookie(names.pre_session, pre_session, c.PRE_SESSION_MAX_AGE_SECONDS)
    message: dict[str, str] | None = getattr(state, "flash", None)
    if message is not None:
        set_cookie(names.flash, signer.dumps(message), c.FLASH_MAX_AGE_SECONDS)
    elif getattr(state, "flash_shown", False):
        clear(names.flash)
    response.headers.update(page_security_headers(content_security_policy()))
    # Pages show accounts, sessions and tokens: never kept by a cache or the back-forward cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def _readable(exc: RequestValidationError) -> str:
    """The form's validation errors in words ("New password: must have at least 8 characters"); never
    the values sent (a password could be among them)."""
    parts = []
    for error in exc.errors():
        field = str(error.get("loc", ("", "form"))[-1]).replace("_", " ").capitalize()
        message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts) or "The form is not valid"


def back_to(path: str, *, only: tuple[type[AppError], ...] = (AppError,)) -> Any:
    """Route dependency: a refusal of this form (of the kinds `only`) is shown on the page at `path`
    (formatted with the route's path parameters and its form's `token`), after a redirect; other
    refusals get a page of their own. Listed first, so it holds for invalid fields too."""

    async def set_back(request: Request) -> None:
        # Path parameters arrive decoded: encoded again, or a value such as `%E2%82%AC` or `%0A`
        # would land raw in the Location header (a 500, or no answer at all).
        values = {name: quote(str(value), safe="") for name, value in request.path_params.items()}
        if "{token}" in path:
            token = (await request.form()).get("token")
            values["token"] = quote(token, safe="") if isinstance(token, str) else ""
        request.state.back = path.format(**values)
        request.state.back_kinds = only

    return Depends(set_back)


@dataclass(frozen=True, slots=True)
class Again:
    """A form answered with itself when it is refused (its message on it), for forms whose state
    cannot travel in a redirect: a second factor's mfa_token, a pending enrolment's QR code.
    Refusals of the kinds `unless` take the usual way (`back`, or a page of their own)."""

    template: str
    context: dict[str, Any]
    unless: tuple[type[AppError], ...] = ()


def answer_again(
    request: Request, template: str, unless: tuple[type[AppError], ...] = (), **context: Any
) -> None:
    """Should the service refuse this form, show `template` again with the refusal's message."""
    request.state.again = Again(template, context, unless)


def _refusal(request: Request, exc: AppError) -> Response:
    back: str | None = getattr(request.state, "back", None)
    if isinstance(exc, SignInRequired):
        request.state.end_session = True
        if exc.detail != exc.title and request.method == "POST":
            flash(request, exc.detail, "error")
        return redirect(request, exc.sign_in_path)
    again: Again | None = getattr(request.state, "again", None)
    if again is not None and not isinstance(exc, (*again.unless, CsrfRefused)):
        return render(request, again.template, status_code=exc.status_code, error=exc.detail, **again.context)
    kinds: tuple[type[AppError], ...] = getattr(request.state, "back_kinds", (AppError,))
    if back is not None and isinstance(exc, kinds) and not isinstance(exc, CsrfRefused):
        flash(request, exc.detail, "error")
        return redirect(request, back)
    response = render(
        request,
        "refused.html",
        status_code=exc.status_code,
        title=exc.title,
        message=exc.detail,
        console=getattr(request.state, "console", None),
        area=page_area(request) or c.ACCOUNT,
        link_page=request.url.path.removeprefix(root(request) + c.ACCOUNT + "/") in c.LINK_PAGES,
    )
    if isinstance(exc, Throttled):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


# What a person is told of an HTTP error outside the page routes, by status.
_ERROR_MESSAGES = {
    404: ("Page not found", "There is no page at this address."),
    405: (
        "Not a page to open",
        "This address takes a form's button, not a visit: go back to the page and use the button.",
    ),
    413: ("Form too large", "The form sent more than this service accepts; shorten it and try again."),
}


def page_area(request: Request) -> str | None:
    """The pages' area (/admin or /account) the request's path is in; None outside the pages."""
    path = request.url.path.removeprefix(root(request))
    return next((area for area in (c.ADMIN, c.ACCOUNT) if path == area or path.startswith(area + "/")), None)


def error_page(request: Request, status: int, title: str, detail: str) -> Response | None:
    """The page for an HTTP error raised outside the page routes (an unknown address under /admin,
    a method the address does not take, a body over the size limit), with the pages' headers;
    None for an address that is not a page's, which the API's problem document answers."""
    area = page_area(request)
    if area is None:
        return None
    heading, message = _ERROR_MESSAGES.get(status, (title, detail))
    response = render(
        request,
        "refused.html",
        status_code=status,
        title=heading,
        message=message,
        console=None,
        area=area,
        link_page=False,
        home=True,  # the area's start page: it signs the browser in first where needed
    )
    return _finish(request, response)


class PageRoute(APIRoute):
    """The route class of the web pages: cookies from `request.state`, the page headers, and every
    domain error shown as a message (never a problem document: these are read by people)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler (dependencies, the session's commit or rollback), wrapped."""
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                response = await handler(request)
            except AppError as exc:
                response = _refusal(request, exc)
            except RequestValidationError as exc:
                response = _refusal(request, InvalidForm(_readable(exc)))
            return _finish(request, response)

        return page


async def require_fields(request: Request, *names: str) -> None:
    """Raises InvalidForm unless the form has each field, if only empty. FastAPI gives an empty
    field and a missing one the same default, and a missing one must not overwrite a value."""
    form = await request.form()
    missing = [name for name in names if name not in form]
    if missing:
        raise InvalidForm(f"The form lacks {', '.join(missing)}; reload the page and retry")
