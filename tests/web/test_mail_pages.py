"""The pages mailed links open, in a real browser and over HTTP: the reset-password flow from a mail
received over SMTP (aiosmtpd) to the new password working, address verification and change, spent
links said to be spent, and the forms' CSRF."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from tests.fixtures.app import build_test_app, make_account
from tests.fixtures.browser import LiveServer, PageLog
from tests.fixtures.helpers import API, PASSWORD, make_settings, unique_email
from tests.fixtures.mail import ACCOUNT_BASE, Mailbox, link_token
from tests.fixtures.smtp_server import Received, SmtpServer
from tests.web.helpers import Accounts, csrf_token, sign_in, sign_in_page
from userapi.mail.transport import build_transport
from userapi.mail.worker import DeliveryWorker

NEW_PASSWORD = "a brand new passphrase 2026"
MAIL_SETTINGS: dict[str, Any] = {
    "mail_delivery": "auto",
    "public_url": "https://id.example.com",
}


def link_path(received: Received, page: str) -> str:
    """The path and query of the `{ACCOUNT_URL}/{page}?token=...` link of a received message, to
    open on the server under test (whose address the mail cannot know)."""
    token = link_token(received, page)
    link = f"{ACCOUNT_BASE}/{page}?token={token}"
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


# --- in the browser, against a live server that mails over SMTP ------------------------------------


@pytest.fixture
async def mail_server(mail_database_url: str, smtp: SmtpServer) -> AsyncIterator[str]:
    """The app served live on a database of the module's own, its delivery worker sending to `smtp`."""
    settings = make_settings(
        mail_database_url, smtp_url=smtp.url, access_log=False, db_pool_size=4, **MAIL_SETTINGS
    )
    async with LiveServer(settings) as url:
        yield url


@pytest.fixture
async def mail_accounts(mail_server: str, mail_engine: AsyncEngine) -> AsyncIterator[Accounts]:
    async with httpx.AsyncClient(base_url=mail_server, timeout=30) as http:
        yield Accounts(http, mail_engine)
    async with mail_engine.begin() as conn:
        await conn.execute(text("TRUNCATE users, refresh_tokens, auth_events CASCADE"))


async def test_a_password_reset_from_the_received_mail_to_the_new_password_working(
    browser: Browser, mail_server: str, mail_accounts: Accounts, smtp: SmtpServer
) -> None:
    log = PageLog()
    context = await browser.new_context(base_url=mail_server)
    try:
        log.watch(context)
        page = await context.new_page()
        email = f"forgetful-{unique_email()}"
        await mail_accounts.make(email)
        smtp.wait_for(1)  # the sign-up's verification mail

        await page.goto("/account/sign-in")
        await page.get_by_role("link", name="Forgot your password?").click()
        await page.get_by_label("Email").fill(email)
        await page.get_by_role("button", name="Send the link").click()
        await expect(page.get_by_role("status")).to_contain_text("a link to set a new password is on its way")

        (mail,) = [r for r in smtp.wait_for(2) if "reset" in str(r.message["Subject"]).lower()]
        assert mail.rcpt_tos == [email]
        await page.goto(link_path(mail, "reset-password"))
        await expect(page.get_by_role("heading", name="Set a new password")).to_be_visible()
        await page.get_by_label("New password").fill(NEW_PASSWORD)
        await page.get_by_role("button", name="Set the password").click()
        await expect(page.get_by_role("status")).to_contain_text("Your new password is set")

        await sign_in_page(page, email, NEW_PASSWORD, area="/account")
        await expect(page.get_by_role("heading", name="Your account")).to_be_visible()
        old = await mail_accounts.http.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
        assert old.status_code == 401

        # The link is spent: opening it again and sending the form says so.
        await page.goto(link_path(mail, "reset-password"))
        await page.get_by_label("New password").fill("yet another passphrase 99")
        await page.get_by_role("button", name="Set the password").click()
        await expect(page.get_by_role("alert")).to_contain_text("already used, or expired")
    finally:
        await context.close()
    assert log.outside() == []
    # The spent link's refusal is a 400 page: Chromium reports it, and nothing else.
    assert set(log.problems) <= {
        "console: Failed to load resource: the server responded with a status of 400 (Bad Request)"
    }


# --- over HTTP, on the test's transaction ------------------------------------------------------------


@pytest.fixture
async def mail_web(
    database_url: str,
    engine: AsyncEngine,
    db_conn: AsyncConnection,
    smtp: SmtpServer,
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, Mailbox]]:
    """(browser-like client, API client, mailbox) on the real app sending to the test's SMTP server."""
    settings = make_settings(database_url, smtp_url=smtp.url, **MAIL_SETTINGS)
    app = build_test_app(settings, engine, db_conn)
    transport = httpx.ASGITransport(app=app)
    worker = DeliveryWorker(sessions, build_transport(settings), settings)  # type: ignore[arg-type]
    async with (
        httpx.AsyncClient(transport=transport, base_url="https://testserver") as web,
        httpx.AsyncClient(transport=transport, base_url="https://testserver") as api,
    ):
        yield web, api, Mailbox(smtp, worker)


async def test_reset_pages_over_http(mail_web: tuple[httpx.AsyncClient, httpx.AsyncClient, Mailbox]) -> None:
    web, api, mailbox = mail_web
    account = await make_account(api)
    await mailbox.deliver()  # the verification mail

    form = await web.get("/account/forgot-password")
    sent = await web.post(
        "/account/forgot-password", data={"email": account["email"], "csrf_token": csrf_token(form.text)}
    )
    assert sent.status_code == 303
    path = link_path(await mailbox.one_to(account["email"]), "reset-password")

    page = await web.get(path)
    assert page.status_code == 200
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token is not None
    data = {"csrf_token": csrf_token(page.text), "token": token.group(1)}

    # Without the CSRF token: 403, the link still good.
    refused = await web.post(
        "/account/reset-password", data={**data, "csrf_token": "", "new_password": NEW_PASSWORD}
    )
    assert refused.status_code == 403
    # A refused password goes back to the form, token kept, with the policy's words.
    weak = await web.post("/account/reset-password", data={**data, "new_password": "password"})
    assert weak.status_code == 303
    assert weak.headers["location"] == path
    assert "New password" in (await web.get(path)).text

    done = await web.post("/account/reset-password", data={**data, "new_password": NEW_PASSWORD})
    assert done.status_code == 303
    assert done.headers["location"] == "/account/sign-in"
    assert (await sign_in(web, account["email"], NEW_PASSWORD, area="/account")).headers[
        "location"
    ] == "/account"

    again = await web.post(
        "/account/reset-password", data={**data, "new_password": "yet another passphrase 9"}
    )
    assert again.status_code == 400
    assert "The link is invalid, already used, or expired" in again.text
    assert 'href="/account/forgot-password">Ask for a new password reset link' in again.text


async def test_verifying_the_address_and_changing_it(
    mail_web: tuple[httpx.AsyncClient, httpx.AsyncClient, Mailbox],
) -> None:
    web, api, mailbox = mail_web
    account = await make_account(api)
    verification = link_path(await mailbox.one_to(account["email"]), "verify-email")

    # Opening the link changes nothing; its button does.
    page = await web.get(verification)
    assert page.status_code == 200
    me = await api.get(f"{API}/users/me", headers=account.headers)
    assert me.json()["email_verified_at"] is None
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token is not None
    done = await web.post(
        "/account/verify-email", data={"csrf_token": csrf_token(page.text), "token": token.group(1)}
    )
    assert done.status_code == 303
    me = await api.get(f"{API}/users/me", headers=account.headers)
    assert me.json()["email_verified_at"] is not None

    # Change the address from the account page; confirm from the link mailed to the new one.
    await sign_in(web, account["email"], area="/account")
    home = await web.get("/account")
    assert "verified" in home.text
    new_email = unique_email("moved")
    asked = await web.post(
        "/account/email",
        data={"csrf_token": csrf_token(home.text), "new_email": new_email, "current_password": PASSWORD},
    )
    assert asked.status_code == 303
    assert f"A link to confirm {new_email}" in (await web.get("/account")).text
    arrived = await mailbox.deliver()
    (confirmation,) = [r for r in arrived if new_email in r.rcpt_tos]
    page = await web.get(link_path(confirmation, "confirm-email"))
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token is not None
    confirmed = await web.post(
        "/account/confirm-email", data={"csrf_token": csrf_token(page.text), "token": token.group(1)}
    )
    assert confirmed.status_code == 303
    # This browser's session stays (it is the one that confirmed); the address is the new one.
    account_page = await web.get("/account")
    assert account_page.status_code == 200
    assert new_email in account_page.text


async def test_a_link_page_without_its_token_says_so(
    mail_web: tuple[httpx.AsyncClient, httpx.AsyncClient, Mailbox],
) -> None:
    web, _, _ = mail_web
    for page in ("reset-password", "verify-email", "confirm-email"):
        response = await web.get(f"/account/{page}")
        assert response.status_code == 200
        assert "This link is incomplete" in response.text
        assert 'name="token"' not in response.text
