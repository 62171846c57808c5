"""Helpers of the web page tests: a browser-like HTTP client's sign-in and the forms' CSRF tokens."""

from __future__ import annotations

import re

import httpx

from tests.fixtures.helpers import PASSWORD

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


async def sign_in(
    web: httpx.AsyncClient, email: str, password: str = PASSWORD, area: str = "/admin"
) -> httpx.Response:
    """Fill in and send the sign-in form of `area`, as a browser would (its cookies kept by `web`)."""
    form = await web.get(f"{area}/sign-in")
    assert form.status_code == 200, form.text
    data = {"csrf_token": csrf_token(form.text), "email": email, "password": password}
    return await web.post(f"{area}/sign-in", data=data)


def cookie_header(response: httpx.Response, name: str) -> str:
    """The Set-Cookie header of cookie `name` (its attributes included)."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


def replace_cookie(web: httpx.AsyncClient, name: str, value: str) -> None:
    """Put `value` in the place of the cookie `name` the server set (same domain and path)."""
    (cookie,) = [cookie for cookie in web.cookies.jar if cookie.name == name]
    web.cookies.delete(name)
    web.cookies.set(name, value, domain=cookie.domain, path=cookie.path)
