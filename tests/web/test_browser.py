"""The console and account pages in a real browser (Debian's Chromium through Playwright) against the
app served live: sign-in, search, pages, changes, refusals, sessions, deletion; nothing leaves the
machine (the browser_context fixture fails a test on any outside request, page error or CSP report)."""

from __future__ import annotations

import re
import uuid

from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.fixtures.browser import PageLog, close_network
from tests.fixtures.helpers import API, PASSWORD
from tests.web.helpers import Accounts
from tests.web.helpers import sign_in_page as sign_in

NEW_PASSWORD = "a brand new passphrase 2026"


def tag() -> str:
    return uuid.uuid4().hex[:8]


async def test_an_admin_signs_in_searches_filters_and_pages(
    page: Page, page_log: PageLog, accounts: Accounts
) -> None:
    t = tag()
    admin = f"boss-{t}@example.com"
    await accounts.make(admin, "admin")
    for n in range(25):
        await accounts.make(f"page-{t}-{n:02d}@example.com")
    await accounts.make(f"other-{t}@example.com")

    await sign_in(page, admin)
    await expect(page).to_have_url(re.compile(r"/admin/users$"))
    await expect(page.get_by_role("heading", name="Users")).to_be_visible()

    # Search by email prefix, in another letter case: 20 on the first page, 5 on the next.
    await page.get_by_label("Email starts with").fill(f"PAGE-{t}")
    await page.get_by_role("button", name="Search").click()
    rows = page.locator("tbody tr")
    await expect(rows).to_have_count(20)
    await expect(rows.first).to_contain_text(f"page-{t}-00@example.com")
    await page.get_by_role("link", name="Next page").click()
    await expect(rows).to_have_count(5)
    await expect(rows.last).to_contain_text(f"page-{t}-24@example.com")
    await expect(page.get_by_role("link", name="Next page")).to_have_count(0)
    await page.get_by_role("link", name="First page").click()
    await expect(rows).to_have_count(20)

    # Filter by role: only the admin.
    await page.get_by_label("Email starts with").fill("")
    await page.get_by_label("Role").select_option("admin")
    await page.get_by_role("button", name="Search").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(admin)
    assert any(url.endswith("/static/web/console.css") for url in page_log.requests)


async def test_an_admin_changes_a_role_deactivates_ends_sessions_and_deletes(
    page: Page, accounts: Accounts
) -> None:
    t = tag()
    admin = f"boss-{t}@example.com"
    target_email = f"carol-{t}@example.com"
    await accounts.make(admin, "admin")
    target = await accounts.make(target_email, full_name="Carol Target")
    tokens = await accounts.login(target_email)

    await sign_in(page, admin)
    await page.get_by_label("Email starts with").fill(target_email)
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("link", name=target_email).click()
    await expect(page.get_by_role("heading", name=target_email)).to_be_visible()
    status = page.get_by_role("status")

    # Change the role.
    await page.get_by_label("Role").select_option("admin")
    await page.get_by_role("button", name="Change role").click()
    await expect(status).to_contain_text(f"{target_email} now holds the role admin")
    assert await accounts.role_of(target) == "admin"

    # The target's two API sessions are listed: end one, then every session of it.
    second = await accounts.login(target_email)
    sessions = page.get_by_role("table", name="Active sessions")
    await page.reload()
    await expect(sessions.locator("tbody tr")).to_have_count(2)
    await sessions.locator("tbody tr").first.get_by_role("button", name="End").click()
    await expect(status).to_contain_text(f"The session of {target_email} has ended")
    await expect(sessions.locator("tbody tr")).to_have_count(1)
    refreshed = [
        await accounts.http.post(f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        for pair in (tokens, second)
    ]
    assert sorted(r.status_code for r in refreshed) == [200, 401]  # one ended, the other lives
    await page.get_by_role("button", name="End all sessions").click()
    await expect(status).to_contain_text(f"Every session of {target_email} has ended")
    await expect(sessions).to_contain_text("No active session")
    for pair in (tokens, second):
        bearer = {"Authorization": f"Bearer {pair['access_token']}"}
        assert (await accounts.http.get(f"{API}/users/me", headers=bearer)).status_code == 401

    # Deactivate, then reactivate.
    await page.get_by_role("button", name="Deactivate").click()
    await expect(status).to_contain_text("deactivated")
    await expect(page.locator(".facts")).to_contain_text("deactivated")
    await page.get_by_role("button", name="Reactivate").click()
    await expect(status).to_contain_text("reactivated")

    # The recent audit events of the account show what was done.
    events = page.get_by_role("table", name="Audit events, newest first")
    await expect(events).to_contain_text("role_changed")
    await expect(events).to_contain_text("user_deactivated")

    # Delete, after a confirmation that names the account.
    await page.get_by_role("link", name="Delete this account").click()
    await expect(page.get_by_role("heading", name=f"Delete {target_email}?")).to_be_visible()
    await expect(page.locator("main")).to_contain_text("Carol Target")
    await page.get_by_label("Type the address").fill("someone-else@example.com")
    await page.get_by_role("button", name=f"Delete {target_email}").click()
    await expect(page.get_by_role("alert")).to_contain_text("does not name")
    assert await accounts.role_of(target) == "admin"  # still there
    await page.get_by_role("link", name="Delete this account").click()
    await page.get_by_label("Type the address").fill(target_email)
    await page.get_by_role("button", name=f"Delete {target_email}").click()
    await expect(page.get_by_role("status")).to_contain_text(f"The account {target_email} is deleted")
    assert await accounts.role_of(target) is None


async def test_the_last_admin_refusal_is_shown_on_the_page(page: Page, accounts: Accounts) -> None:
    admin = f"only-{tag()}@example.com"
    admin_id = await accounts.make(admin, "admin")
    await sign_in(page, admin)
    await page.goto(f"/admin/users/{admin_id}")
    await page.get_by_role("button", name="Deactivate").click()
    await expect(page.get_by_role("alert")).to_contain_text("The last active admin cannot be deactivated")
    await page.get_by_label("Role").select_option("user")
    await page.get_by_role("button", name="Change role").click()
    await expect(page.get_by_role("alert")).to_contain_text("The last active admin cannot be demoted")
    assert await accounts.role_of(admin_id) == "admin"


async def test_an_account_without_an_admin_permission_is_refused(
    browser: Browser, live_server: str, accounts: Accounts
) -> None:
    # A context of its own: the refusal is a 403, which Chromium reports on the console, and
    # that one report is expected here (the shared fixture fails a test on any).
    log = PageLog()
    context = await browser.new_context(base_url=live_server)
    try:
        log.watch(context)
        page = await context.new_page()
        email = f"plain-{tag()}@example.com"
        await accounts.make(email)
        await sign_in(page, email)
        await expect(page.get_by_role("heading", name="No access to the console")).to_be_visible()
        await expect(page.get_by_role("alert")).to_contain_text("grants no administrative permission")
        response = await page.goto("/admin/users")
        assert response is not None
        assert response.status == 403
        await expect(page.get_by_role("alert")).to_contain_text("grants no administrative permission")
    finally:
        await context.close()
    assert log.outside() == []
    assert set(log.problems) == {
        "console: Failed to load resource: the server responded with a status of 403 (Forbidden)"
    }


async def test_roles_are_created_changed_and_deleted(page: Page, accounts: Accounts) -> None:
    admin = f"boss-{tag()}@example.com"
    await accounts.make(admin, "admin")
    await sign_in(page, admin)
    await page.get_by_role("link", name="Roles").click()
    name = f"support-{tag()}"
    name_field = page.get_by_role("textbox", name=re.compile(r"^Name"))
    await name_field.fill(name)
    await page.get_by_label("Description").fill("Answers the phone")
    await page.get_by_label("users:read").check()
    await page.get_by_role("button", name="Create role").click()
    await expect(page.get_by_role("status")).to_contain_text(f"The role {name} is created")
    await expect(page.get_by_label("users:read")).to_be_checked()
    await page.get_by_label("audit:read").check()
    await page.get_by_role("button", name="Save role").click()
    await expect(page.get_by_role("status")).to_contain_text("is saved")
    await expect(page.get_by_label("audit:read")).to_be_checked()
    # A name that is taken: the API's refusal, as a message.
    await page.get_by_role("link", name="Roles", exact=True).click()
    await name_field.fill(name)
    await page.get_by_role("button", name="Create role").click()
    await expect(page.get_by_role("alert")).to_contain_text("already exists")
    await page.get_by_role("link", name=name).click()
    await page.get_by_role("button", name=f"Delete role {name}").click()
    await expect(page.get_by_role("status")).to_contain_text(f"The role {name} is deleted")


async def test_the_audit_trail_is_browsed_and_filtered(page: Page, accounts: Accounts) -> None:
    admin = f"boss-{tag()}@example.com"
    await accounts.make(admin, "admin")
    other = f"someone-{tag()}@example.com"
    await accounts.make(other)
    await sign_in(page, admin)
    await page.get_by_role("link", name="Audit trail").click()
    table = page.get_by_role("table", name="Audit events, newest first")
    await expect(table).to_contain_text("login_succeeded")
    await page.get_by_label("Event").select_option("signup")
    await page.get_by_label("User (email or id)").fill(other)
    await page.get_by_role("button", name="Filter").click()
    await expect(table.locator("tbody tr")).to_have_count(1)
    await expect(table).to_contain_text("signup")


async def test_the_account_page_changes_name_ends_a_session_and_changes_the_password(
    page: Page, accounts: Accounts
) -> None:
    email = f"dave-{tag()}@example.com"
    await accounts.make(email)
    phone = await accounts.login(email)  # another session, to end from the browser
    await sign_in(page, email, area="/account")
    await expect(page.get_by_role("heading", name="Your account")).to_be_visible()

    await page.get_by_label("Full name").fill("Dave Example")
    await page.get_by_role("button", name="Save name").click()
    await expect(page.get_by_role("status")).to_contain_text("Your name is saved")
    await expect(page.get_by_label("Full name")).to_have_value("Dave Example")

    sessions = page.get_by_role("table", name="Where you are signed in")
    await expect(sessions.locator("tbody tr")).to_have_count(2)
    await sessions.locator("tbody tr", has_not_text="this browser").get_by_role("button", name="End").click()
    await expect(page.get_by_role("status")).to_contain_text("The session has ended")
    await expect(sessions.locator("tbody tr")).to_have_count(1)
    ended = await accounts.http.post(f"{API}/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert ended.status_code == 401

    # A refused new password is a message; a good one ends every session, this one included.
    await page.get_by_label("Current password").fill(PASSWORD)
    await page.get_by_label("New password").fill("password")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_role("alert")).to_contain_text("New password")
    await page.get_by_label("Current password").fill(PASSWORD)
    await page.get_by_label("New password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Change password").click()
    await expect(page).to_have_url(re.compile(r"/account/sign-in$"))
    await expect(page.get_by_role("status")).to_contain_text("Your password is changed")
    await sign_in(page, email, NEW_PASSWORD, area="/account")
    await expect(page.get_by_role("heading", name="Your account")).to_be_visible()


async def test_the_console_works_by_keyboard_with_the_network_closed(
    browser_context: BrowserContext, page_log: PageLog, accounts: Accounts
) -> None:
    await close_network(browser_context)
    page = await browser_context.new_page()
    admin = f"keys-{tag()}@example.com"
    await accounts.make(admin, "admin")
    await page.goto("/admin/sign-in")
    await page.keyboard.press("Tab")  # the skip link
    await page.get_by_label("Email").focus()
    await page.keyboard.type(admin)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Users")).to_be_visible()
    assert page_log.outside() == []


async def test_the_pages_fit_a_phone_screen(browser_context: BrowserContext, accounts: Accounts) -> None:
    page = await browser_context.new_page()
    await page.set_viewport_size({"width": 375, "height": 740})
    admin = f"phone-{tag()}@example.com"
    admin_id = await accounts.make(admin, "admin")
    await sign_in(page, admin)
    for path in ("/admin/users", f"/admin/users/{admin_id}", "/admin/roles", "/admin/audit", "/account"):
        await page.goto(path)
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (path, overflow)
