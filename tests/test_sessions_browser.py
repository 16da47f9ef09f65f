"""Settings -> Sessions and password, as a person uses it: two browsers signed in to a real
`relayhook serve`, one revokes the other, then changes the password (issue 17, item 4). Every
page checked with axe-core, as in test_console_browser.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import RelayhookProcess, render_config
from test_console_browser import (
    CHROMIUM,
    LAUNCH_ARGS,
    SCREENSHOTS,
    WIDE,
    Visits,
    console_password,
    expect,
    sign_in,
    sync_api,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RelayhookProcess]:
    with RelayhookProcess(tmp_path, render_config(relays=[])) as process:
        yield process


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        yield chromium
        chromium.close()


def test_revoke_a_session_and_change_the_password(server: RelayhookProcess, browser: Any) -> None:
    visits = Visits(SCREENSHOTS)
    laptop = browser.new_context(viewport={"width": WIDE, "height": 900}).new_page()
    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, user_agent="Phone browser 1.0"
    ).new_page()
    for page in (laptop, phone):
        page.set_default_timeout(20_000)
        sign_in(page, server)

    laptop.get_by_role("navigation", name="Sections").get_by_role("link", name="Settings").click()
    expect(laptop.get_by_role("heading", name="Signed-in sessions")).to_be_visible()
    table = laptop.get_by_role("table", name="Signed-in sessions")
    expect(table.get_by_role("row")).to_have_count(3)  # the header and two sessions
    expect(table).to_contain_text("Phone browser 1.0")
    expect(table).to_contain_text("(this browser)")
    visits.check(laptop, "settings-sessions")

    laptop.get_by_role("button", name="Sign out every other session").click()
    expect(laptop.get_by_role("status")).to_contain_text("Signed out 1 other session.")
    expect(table.get_by_role("row")).to_have_count(2)
    phone.reload()
    expect(phone.get_by_role("heading", name="Sign in to Relayhook")).to_be_visible()

    old = console_password(server)
    laptop.get_by_label("Current password").fill("not the password")
    laptop.get_by_label("New password", exact=True).fill("short")
    laptop.get_by_role("button", name="Change the password").click()
    expect(laptop.get_by_role("alert")).to_contain_text("That is not the current password")
    expect(laptop.get_by_role("alert")).to_contain_text("at least 10 characters")
    visits.check(laptop, "settings-password-errors")
    laptop.get_by_label("Current password").fill(old)
    laptop.get_by_label("New password", exact=True).fill("a brand new password")
    laptop.get_by_label("New password again").fill("a brand new password")
    laptop.get_by_role("button", name="Change the password").click()
    expect(laptop.get_by_role("status")).to_contain_text("The password is changed")
    phone.get_by_label("Password").fill(old)
    phone.get_by_role("button", name="Sign in").click()
    expect(phone.get_by_role("alert")).to_contain_text("password is not right")
    phone.get_by_label("Password").fill("a brand new password")
    phone.get_by_role("button", name="Sign in").click()
    expect(phone.get_by_role("heading", name="Overview")).to_be_visible()
    assert not visits.problems, "\n".join(visits.problems)
