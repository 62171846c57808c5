"""Screenshots of the main pages, from the real app in Chromium: docs/*.png when UPDATE_SCREENSHOTS=1
(`make screenshots`), else into a temporary directory, so every run still proves the pages render."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.fixtures.helpers import PASSWORD
from tests.web.helpers import Accounts, Authenticator
from tests.web.helpers import sign_in_page as sign_in

DOCS = Path(__file__).resolve().parents[2] / "docs"
PEOPLE = [
    ("ada.lovelace", "Ada Lovelace", "admin"),
    ("grace.hopper", "Grace Hopper", "support"),
    ("alan.turing", "Alan Turing", "user"),
    ("katherine.johnson", "Katherine Johnson", "user"),
    ("edsger.dijkstra", "Edsger Dijkstra", "auditor"),
    ("barbara.liskov", "Barbara Liskov", "user"),
    ("donald.knuth", "Donald Knuth", "user"),
    ("margaret.hamilton", "Margaret Hamilton", "user"),
]


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        return DOCS
    return tmp_path


async def snap(page: Page, where: Path, name: str) -> None:
    path = where / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 5_000  # a rendered page, not a blank one


async def test_screenshots_of_the_main_pages(
    browser_context: BrowserContext,
    accounts: Accounts,
    shots: Path,
) -> None:
    page = await browser_context.new_page()
    await page.set_viewport_size({"width": 1100, "height": 700})
    ids = {}
    await accounts.make("ada.lovelace@example.com", "admin", "Ada Lovelace")
    await sign_in(page, "ada.lovelace@example.com")
    await page.get_by_role("link", name="Roles").click()
    for name, description, permission in (
        ("support", "Answers customers: reads accounts, ends sessions", ("users:read", "sessions:revoke")),
        ("auditor", "Reads the audit trail", ("audit:read",)),
    ):
        await page.get_by_role("textbox", name="Name (lower-case").fill(name)
        await page.get_by_label("Description").fill(description)
        for p in permission:
            await page.get_by_label(p).check()
        await page.get_by_role("button", name="Create role").click()
        await page.get_by_role("link", name="Roles", exact=True).click()
    for local, full_name, role in PEOPLE[1:]:
        ids[local] = await accounts.make(f"{local}@example.com", role, full_name)
    await accounts.login("grace.hopper@example.com")

    await snap(page, shots, "console-roles")
    await page.get_by_role("link", name="Users").click()
    await expect(page.locator("tbody tr")).to_have_count(len(PEOPLE))
    await snap(page, shots, "console-users")
    await page.goto(f"/admin/users/{ids['grace.hopper']}")
    await page.get_by_label("Role").select_option("user")
    await page.get_by_role("button", name="Change role").click()
    await page.get_by_label("Role").select_option("support")
    await page.get_by_role("button", name="Change role").click()
    await expect(page.get_by_role("status")).to_be_visible()
    await snap(page, shots, "console-user")
    await page.get_by_role("link", name="Delete this account").click()
    await snap(page, shots, "console-delete")
    await page.get_by_role("link", name="Audit trail").click()
    await snap(page, shots, "console-audit")
    await page.get_by_role("link", name="Your account").click()
    await page.get_by_label("Your password (to turn it on)").fill(PASSWORD)
    await page.get_by_role("button", name="Turn on two-step sign-in").click()
    await expect(page.get_by_role("img", name="QR code of your authenticator key")).to_be_visible()
    await snap(page, shots, "account-totp")
    app = Authenticator((await page.locator("#totp-secret").inner_text()).strip())
    await page.get_by_label("Code from your authenticator app").fill(await app.code())
    await page.get_by_role("button", name="Turn on").click()
    await page.get_by_role("link", name="I have kept them").click()
    await snap(page, shots, "account")

    await page.set_viewport_size({"width": 390, "height": 780})
    await page.goto("/admin/users")
    await snap(page, shots, "console-users-phone")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_contain_text("signed out")
    await page.set_viewport_size({"width": 1100, "height": 520})
    await snap(page, shots, "console-sign-in")
    await page.get_by_label("Email").fill("ada.lovelace@example.com")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_label("Code from your authenticator app")).to_be_visible()
    await snap(page, shots, "console-second-factor")
