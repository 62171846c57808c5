"""Helpers of the web page tests: sign-in (HTTP client or browser page), CSRF tokens, committed accounts."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import httpx
import pyotp
from playwright.async_api import Page
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.helpers import API, PASSWORD

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


class Accounts:
    """Accounts made through the live server's API (committed), roles set with SQL."""

    def __init__(self, http: httpx.AsyncClient, engine: AsyncEngine) -> None:
        self.http = http
        self.engine = engine

    async def make(self, email: str, role: str = "user", full_name: str | None = None) -> str:
        body = {"email": email, "password": PASSWORD, **({"full_name": full_name} if full_name else {})}
        response = await self.http.post(f"{API}/auth/register", json=body)
        assert response.status_code == 201, response.text
        if role != "user":
            async with self.engine.begin() as conn:
                change = text("UPDATE users SET role = :r WHERE email = :e")
                await conn.execute(change, {"r": role, "e": email})
        return str(response.json()["id"])

    async def login(self, email: str, password: str = PASSWORD) -> dict[str, str]:
        response = await self.http.post(f"{API}/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def role_of(self, user_id: str) -> str | None:
        async with self.engine.connect() as conn:
            found = await conn.scalar(text("SELECT role FROM users WHERE id = :i"), {"i": uuid.UUID(user_id)})
        return str(found) if found is not None else None


async def sign_in_page(page: Page, email: str, password: str = PASSWORD, area: str = "/admin") -> None:
    await page.goto(f"{area}/sign-in")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


STEP = 30  # seconds of a TOTP step (RFC 6238's default, the service's)


class Authenticator:
    """An authenticator app that never shows a code twice: each code is of a later step than the
    last one used (the server accepts a step's code once) and within the one step of drift the
    server allows, waiting for the clock when it must."""

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP(secret)
        self.last = -1

    async def code(self) -> str:
        if STEP - time.time() % STEP < 2:  # about to change step: let it, so the code stays in the window
            await asyncio.sleep(2.1)
        now = int(time.time() // STEP)
        if self.last + 1 > now + 1:
            await asyncio.sleep(STEP - time.time() % STEP + 0.1)
            now = int(time.time() // STEP)
        self.last = max(now - 1, self.last + 1)
        return str(self.totp.at(self.last * STEP))
