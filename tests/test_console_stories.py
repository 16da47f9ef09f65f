"""Issue 19's two stories in a browser, as a no-code user walks them with the providers' real
payloads (headless Chromium, found by role and label; every step axe-checked and captured at
1280 and 390 px like tests/test_console_browser.py):

A. GMetri -> Zapier: a relay, the seed's variables payload, a hook built by clicking the
   event's fields into body rows; page loads and clicks from a fresh start are counted.
B. Gamify -> Pabbly: a GET opt-in that names no player (no subject) through the Pabbly and
   Zapier presets is delivered; a pattern typo and a field typo stop Save with the nearest
   name and lose nothing; "Save anyway" is there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_console_browser as console_tests
from receiver import Receiver
from servers import RelayhookProcess, http_client, render_config, render_tables, wait_until
from test_console_browser import (
    ADMIN_TOKEN,
    CHROMIUM,
    EXAMPLES,
    LAUNCH_ARGS,
    NARROW,
    SCREENSHOTS,
    WIDE,
    Visits,
    api,
    expect,
    sign_in,
)
from test_outcomes_browser import api_post

pytestmark = console_tests.pytestmark
sync_api = console_tests.sync_api
receiver = console_tests.receiver


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RelayhookProcess]:
    config = render_config(relays=[], admin_token=ADMIN_TOKEN) + render_tables(
        delivery={"allow_private_destinations": True, "poll_interval": 0.1}
    )
    with RelayhookProcess(tmp_path, config) as process:
        yield process


SMALL_TARGETS = """() => [...document.querySelectorAll(
    'button, input:not([type=hidden]), select, textarea, summary, nav a')]
    .filter(e => e.offsetParent !== null)
    .map(e => [e.id || e.getAttribute('aria-label') || e.textContent.trim().slice(0, 30),
               e.getBoundingClientRect()])
    .filter(([_, r]) => r.height < 24 || r.width < 24).map(([n, r]) =>
        `${n} (${Math.round(r.width)}x${Math.round(r.height)})`)"""


class BothWidths(Visits):
    """Visits that also runs axe at 390 px and checks that every control is a tap target of
    at least 24 x 24 px there."""

    def check(self, page: Any, name: str, readme: bool = False) -> None:
        super().check(page, name, readme)
        page.set_viewport_size({"width": NARROW, "height": 844})
        for violation in self.axe.run(page).response["violations"]:
            if violation["impact"] in ("serious", "critical"):
                targets = [node["target"] for node in violation["nodes"]][:3]
                self.problems.append(
                    f"{name} at {NARROW}: {violation['id']} ({violation['impact']}) at {targets}"
                )
        small = page.evaluate(SMALL_TARGETS)
        if small:
            self.problems.append(f"{name} at {NARROW}: tap targets under 24 px: {small}")
        page.set_viewport_size({"width": WIDE, "height": 900})


class Walk:
    """Counts what a person does: page loads (main-frame navigations) and clicks."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.loads = 0
        self.clicks = 0
        page.on("load", self._loaded)

    def _loaded(self, _page: Any) -> None:
        self.loads += 1

    def click(self, locator: Any) -> None:
        self.clicks += 1
        locator.click()

    def check(self, locator: Any) -> None:
        self.clicks += 1
        locator.check()


def new_relay(walk: Walk, connector: str, name: str) -> tuple[str, str]:
    page = walk.page
    walk.click(page.get_by_role("navigation", name="Sections").get_by_role("link", name="Relays"))
    walk.click(page.get_by_role("link", name="New relay").first)
    walk.check(page.get_by_label(connector, exact=True))
    walk.click(page.get_by_label("Name", exact=True))
    page.get_by_label("Name", exact=True).fill(name)
    walk.click(page.get_by_role("button", name="Create relay"))
    expect(page.get_by_role("heading", name=f"Relay {name}")).to_be_visible()
    relay_url = page.get_by_label("Relay URL").input_value()
    walk.click(page.get_by_role("button", name="Reveal secret"))
    return relay_url, page.get_by_label("Secret", exact=True).input_value()


def start_walk(browser: Any) -> tuple[Visits, Any, Walk]:
    visits = BothWidths(SCREENSHOTS / "stories")
    context = browser.new_context(viewport={"width": WIDE, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    return visits, context, Walk(page)


def pick_field(walk: Walk, target: Any, path: str) -> None:
    """Click in a field of the form, then on an event field of the picker."""
    walk.click(target)
    walk.click(
        walk.page.get_by_role("complementary", name="Preview")
        .get_by_role("button", name=path, exact=False)
        .filter(has_text=path)
        .first
    )


def test_story_a_gmetri_to_zapier_by_clicking_fields(
    server: RelayhookProcess, receiver: Receiver, browser: Any
) -> None:
    visits, context, walk = start_walk(browser)
    page = walk.page
    sign_in(page, server, visits)
    walk.clicks += 1  # the Sign in button
    relay_url, secret = new_relay(walk, "GMetri", "gmetri")
    visits.check(page, "a-relay")

    # GMetri posts the seed's variables payload (Basic credentials, as its docs say).
    body = (EXAMPLES / "gmetri-variables.json").read_bytes()
    with http_client() as client:
        answer = client.post(
            relay_url,
            content=body,
            headers={"Authorization": f"Basic {secret}", "Content-Type": "application/json"},
        )
    assert answer.status_code == 200, answer.text

    walk.click(page.get_by_role("navigation", name="Sections").get_by_role("link", name="Hooks"))
    walk.click(page.get_by_role("link", name="New hook").first)
    expect(page.get_by_role("heading", name="New hook")).to_be_visible()
    walk.click(page.get_by_label("Name", exact=True))
    page.get_by_label("Name", exact=True).fill("Quiz results to Zapier")
    walk.check(page.get_by_label("GMetri: variables changed"))
    # The picker lists the newest real event's fields with their values, without a round trip.
    picker = page.get_by_role("list", name="Fields of this event")
    expect(picker).to_contain_text("@gmetri.com")  # the newest of the two viewers
    expect(
        picker.get_by_role("button", name=re.compile(r"^data\.score: (100|75)$"))
    ).to_be_visible()
    visits.check(page, "a-hook-events")

    walk.check(page.get_by_label("Zapier"))  # the script applies the preset at once
    expect(page.get_by_label("Rate limit")).to_have_value("25")
    expect(page.get_by_label("Name", exact=True)).to_have_value("Quiz results to Zapier")
    walk.click(page.get_by_label("URL", exact=True))
    page.get_by_label("URL", exact=True).fill(receiver.url + "/zap/catch/1/")
    visits.check(page, "a-hook-preset")

    # What it sends: fields, one per row, shown at once; values clicked from the event.
    walk.check(page.get_by_label("Fields, one per row"))
    rows = page.get_by_role("group", name="Body fields")
    expect(rows.get_by_label("Key", exact=True).first).to_be_visible()
    walk.click(rows.get_by_label("Key", exact=True).first)
    rows.get_by_label("Key", exact=True).first.fill("email")
    pick_field(walk, rows.get_by_label("Value", exact=True).first, "subject")
    expect(rows.get_by_label("Value", exact=True).first).to_have_value("subject")
    expect(rows.get_by_label("Value source").first).to_have_value("event")
    walk.click(rows.get_by_role("button", name="Add a field"))
    expect(rows.get_by_label("Key", exact=True)).to_have_count(2)
    expect(page.get_by_label("URL", exact=True)).to_have_value(receiver.url + "/zap/catch/1/")
    walk.click(rows.get_by_label("Key", exact=True).nth(1))
    rows.get_by_label("Key", exact=True).nth(1).fill("score")
    pick_field(walk, rows.get_by_label("Value", exact=True).nth(1), "data.score")
    preview = page.get_by_role("complementary", name="Preview")
    expect(preview).to_contain_text(re.compile(r'"score":(100|75)'))
    page.get_by_role("heading", name="What it sends").scroll_into_view_if_needed()
    visits.check(page, "a-hook-rows", readme=True)
    walk.click(page.get_by_role("button", name="Save hook"))
    expect(page.get_by_role("heading", name="Hook Quiz results to Zapier")).to_be_visible()
    page.wait_for_load_state("load")
    loads, clicks = walk.loads, walk.clicks
    visits.check(page, "a-hook-saved")

    with http_client() as client:
        client.post(
            relay_url,
            content=body,
            headers={"Authorization": f"Basic {secret}", "Content-Type": "application/json"},
        )
    got = receiver.wait_for(2, timeout=20, path="/zap/")
    assert sorted(json.loads(r.body)["email"] for r in got) == [
        "amit@gmetri.com",
        "mitul@gmetri.com",
    ]
    assert {json.loads(r.body)["score"] for r in got} == {100, 75}
    (SCREENSHOTS / "stories" / "first-hook.json").write_text(
        json.dumps({"page_loads": loads, "clicks": clicks})
    )
    print(f"story A, first hook from a fresh start: {loads} page loads, {clicks} clicks")
    assert loads < 10, loads
    assert not visits.problems, "\n".join(visits.problems)
    context.close()


def test_story_b_gamify_to_pabbly_with_typos_and_a_subjectless_opt_in(
    server: RelayhookProcess, receiver: Receiver, browser: Any
) -> None:
    visits, context, walk = start_walk(browser)
    page = walk.page
    sign_in(page, server)
    relay_url, secret = new_relay(walk, "Gamify", "gamify")
    expect(page.get_by_role("note", name="Address")).to_contain_text(
        "A provider on the internet cannot reach this URL"
    )
    page.get_by_role("button", name="Send sample").click()
    wiring = page.get_by_role("status", name="Wiring")
    expect(wiring).to_contain_text("Only a sample from the console so far")
    visits.check(page, "b-relay-sample")

    # Gamify GETs an opt-in with query parameters and no player: an event with no subject.
    with http_client() as client:
        answer = client.get(
            relay_url,
            params={"event": "Opt-in Submit", "campaign": "spring"},
            headers={"X-Relay-Secret": secret},
        )
    assert answer.status_code == 200, answer.text
    page.goto(server.url + "/relays/gamify")  # (a reload would post Send sample again)
    expect(wiring).to_contain_text("Wired.")
    with http_client() as client:
        refused = client.get(
            relay_url,
            params={"event": "Opt-in Submit"},
            headers={"X-Relay-Secret": "not the secret"},
        )
    assert refused.status_code == 401
    page.goto(server.url + "/relays/gamify")  # (a reload would post Send sample again)
    expect(wiring).to_contain_text("Credentials refused.")
    visits.check(page, "b-relay-refused")
    with http_client() as client:  # Gamify's own docs' example bodies are not valid JSON
        bad = client.post(
            relay_url,
            content=b'{"event": "high score", "player": {"id": "p-1}',
            headers={"X-Relay-Secret": secret, "Content-Type": "application/json"},
        )
    assert bad.status_code == 400
    page.goto(server.url + "/problems")
    relays = page.get_by_role("region", name="At the relays")
    expect(relays).to_contain_text("credentials refused 1 time")
    expect(relays).to_contain_text("1 request rejected: its body is not valid JSON")
    expect(
        page.get_by_role("navigation", name="Sections").get_by_role("link", name="Problems")
    ).to_contain_text("2")
    visits.check(page, "b-problems")

    walk.click(page.get_by_role("navigation", name="Sections").get_by_role("link", name="Hooks"))
    walk.click(page.get_by_role("link", name="New hook").first)
    page.get_by_label("Name", exact=True).fill("Opt-ins to Pabbly")
    page.get_by_text("Other events, by pattern").click()
    page.get_by_label("Other event patterns").fill("gamify.opt-in.submit")  # a typo
    page.get_by_label("Pabbly Connect").check()
    expect(page.get_by_label("Rate limit")).to_have_value("10")  # the preset is applied
    expect(page.get_by_label("Other event patterns")).to_have_value("gamify.opt-in.submit")
    page.get_by_label("URL", exact=True).fill(receiver.url + "/pabbly/")
    page.get_by_role("button", name="Save hook").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("No event type matches 'gamify.opt-in.submit'")
    expect(alert).to_contain_text("Did you mean 'gamify.optin.submitted'?")
    expect(page.get_by_role("button", name="Save anyway")).to_be_visible()
    # Nothing typed is lost.
    expect(page.get_by_label("Name", exact=True)).to_have_value("Opt-ins to Pabbly")
    expect(page.get_by_label("URL", exact=True)).to_have_value(receiver.url + "/pabbly/")
    expect(page.get_by_label("Pabbly Connect")).to_be_checked()
    visits.check(page, "b-pattern-typo")
    assert api(server, "/api/hooks")["items"] == []

    page.get_by_label("Other event patterns").fill("")
    page.get_by_label("Gamify: optin submitted").check()
    # A field typo in the URL: the preview event has data.campaign, not data.campain.
    page.get_by_label("URL", exact=True).fill(receiver.url + "/pabbly/{event.data.campain}")
    page.get_by_role("button", name="Save hook").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "No field 'data.campain' in this event. Did you mean 'data.campaign'?"
    )
    visits.check(page, "b-field-typo")
    assert api(server, "/api/hooks")["items"] == []

    # Fixed by clicking the field where the typo was.
    url_box = page.get_by_label("URL", exact=True)
    url_box.fill(receiver.url + "/pabbly/")
    url_box.press("End")
    pick_field(walk, url_box, "data.campaign")
    expect(url_box).to_have_value(receiver.url + "/pabbly/{event.data.campaign}")
    page.get_by_role("button", name="Save hook").click()
    expect(page.get_by_role("heading", name="Hook Opt-ins to Pabbly")).to_be_visible()
    visits.check(page, "b-hook")

    # The same subject-less opt-in through Pabbly's preset now: delivered, subject null.
    with http_client() as client:
        client.get(
            relay_url,
            params={"event": "Opt-in Submit", "campaign": "spring"},
            headers={"X-Relay-Secret": secret},
        )
    (got,) = receiver.wait_for(1, timeout=20, path="/pabbly/")
    assert got.path == "/pabbly/spring"
    sent = json.loads(got.body)
    assert sent["subject"] is None and sent["event_type"] == "gamify.optin.submitted"
    wait_until(
        lambda: api(server, "/api/deliveries?status=succeeded")["items"],
        timeout=20,
        what="the delivery recorded as succeeded",
    )
    page.reload()
    expect(page.get_by_role("region", name="History").last).to_contain_text("delivered")
    visits.check(page, "b-hook-delivered")

    # One search box finds the GET opt-ins by their query string, and their events.
    box = page.get_by_role("search", name="Search everything").first
    box.get_by_role("searchbox").fill("spring")
    box.get_by_role("searchbox").press("Enter")
    expect(page.get_by_role("status").first).to_contain_text(
        re.compile(r"^[2-9] requests and [2-9] events hold spring")
    )
    expect(page.get_by_role("region", name="Requests").locator("mark").first).to_have_text("spring")
    visits.check(page, "b-search")

    # A hook whose request cannot be made for its preview event is not switched on unasked.
    api_post(
        server,
        "/api/hooks?accept_findings=true",  # saved on purpose despite diagnostics' error
        {
            "name": "Broken",
            "events": ["gamify.optin.submitted"],
            "url": receiver.url + "/broken/{event.data.nothere}",
        },
    )
    api_post(server, "/api/hooks/Broken/deactivate", {})
    page.goto(server.url + "/hooks")
    page.get_by_role("button", name="Make active: Broken").click()
    expect(page.get_by_role("heading", name="Switch on Broken?")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("No field 'data.nothere' in this event.")
    visits.check(page, "b-activate-confirm")
    assert not api(server, "/api/hooks/Broken")["active"]
    page.get_by_role("button", name="Switch on anyway").click()
    expect(page.get_by_role("status").first).to_contain_text("is active")
    assert api(server, "/api/hooks/Broken")["active"]
    assert not visits.problems, "\n".join(visits.problems)
    context.close()


def test_the_hook_form_fits_a_phone(server: RelayhookProcess, browser: Any) -> None:
    """At 390 px the picker is there, every control is at least 24 px tall, and no part of
    the form is wider than the screen."""
    context = browser.new_context(viewport={"width": NARROW, "height": 844})
    page = context.new_page()
    sign_in(page, server)
    page.goto(server.url + "/hooks/new")
    page.get_by_label("GMetri: variables changed").check()
    picker = page.get_by_role("list", name="Fields of this event")
    expect(picker.get_by_role("button").first).to_be_visible()
    small = page.evaluate("""() => [...document.querySelectorAll(
        'main button, main input, main select, main summary, main a')]
        .filter(e => e.offsetParent !== null && e.type !== 'hidden')
        .map(e => [e.id || e.textContent.trim().slice(0, 30), e.getBoundingClientRect()])
        .filter(([_, r]) => r.height < 24 && r.width < 24).map(([n]) => n)""")
    assert small == []
    wide = page.evaluate("""() => [...document.querySelectorAll('main *')]
        .filter(e => e.getBoundingClientRect().right > innerWidth + 1)
        .map(e => e.tagName + '#' + e.id + '.' + e.className).slice(-8)""")
    assert wide == []
    context.close()


def test_settings_allow_a_private_destination_and_change_the_password(
    tmp_path: Path, receiver: Receiver, browser: Any
) -> None:
    """A self-hosted receiver on 127.0.0.1: refused until Settings allows it (live, no
    restart); then the password changed from Settings signs the browser out."""
    config = render_config(relays=[], admin_token=ADMIN_TOKEN) + render_tables(
        delivery={"poll_interval": 0.1}
    )
    with RelayhookProcess(tmp_path, config) as server:
        visits, context, walk = start_walk(browser)
        page = walk.page
        sign_in(page, server)
        relay_url, secret = new_relay(walk, "Any webhook", "local")
        with http_client() as client:
            client.post(relay_url + "?type=demo.ping", json={"n": 1})
        page.goto(server.url + "/hooks/new")
        page.get_by_label("Name", exact=True).fill("To my n8n")
        page.get_by_label("Any webhook: demo ping").check()
        page.get_by_label("URL", exact=True).fill(receiver.url + "/n8n/")
        page.get_by_role("button", name="Save hook").click()
        expect(page.get_by_role("alert")).to_contain_text("allow it in Settings")
        visits.check(page, "s-hook-private-refused")

        settings = browser.new_context(viewport={"width": WIDE, "height": 900}).new_page()
        sign_in(settings, server)  # a second browser: its own session
        settings.goto(server.url + "/settings")
        expect(settings.get_by_role("heading", name="Settings", level=1)).to_be_visible()
        expect(settings.get_by_text("What this risks.")).to_be_visible()
        settings.get_by_label("Also allowed").fill("10.0.0.0/33")
        settings.get_by_role("button", name="Save the address and destinations").click()
        expect(settings.get_by_role("alert")).to_contain_text("Write one address or network")
        settings.get_by_label("Also allowed").fill("127.0.0.1")
        settings.get_by_label("Public URL").fill("https://relay.example.com")
        settings.get_by_role("button", name="Save the address and destinations").click()
        expect(settings.get_by_role("status").first).to_contain_text("Saved")
        expect(settings.get_by_label("Also allowed")).to_have_value("127.0.0.1")
        visits.check(settings, "s-settings")

        # Back on the form, nothing lost: Save now passes, and the event is delivered.
        page.get_by_role("button", name="Save hook").click()
        expect(page.get_by_role("heading", name="Hook To my n8n")).to_be_visible()
        with http_client() as client:
            client.post(relay_url + "?type=demo.ping", json={"n": 2})
        (got,) = receiver.wait_for(1, timeout=20, path="/n8n/")
        assert json.loads(got.body)["data"] == {"n": 2}
        # The public URL applies at once: relay URLs start with it.
        page.goto(server.url + "/relays/local")
        expect(page.get_by_label("Relay URL")).to_have_value(
            re.compile(r"^https://relay\.example\.com/in/")
        )

        settings.goto(server.url + "/settings")
        settings.get_by_label("Current password").fill("wrong password!")
        settings.get_by_label("New password", exact=True).fill("a brand new password")
        settings.get_by_label("New password again").fill("a brand new password")
        settings.get_by_role("button", name="Change the password").click()
        expect(settings.get_by_role("alert")).to_contain_text("not the current password")
        settings.get_by_label("Current password").fill(console_tests.console_password(server))
        settings.get_by_label("New password", exact=True).fill("a brand new password")
        settings.get_by_label("New password again").fill("a brand new password")
        settings.get_by_role("button", name="Change the password").click()
        expect(settings.get_by_role("status").first).to_contain_text(
            "The password is changed; 1 other session was signed out."
        )
        visits.check(settings, "s-password-changed")
        page.goto(server.url + "/hooks")  # the other browser tab is signed out too
        expect(page.get_by_role("heading", name="Sign in to Relayhook")).to_be_visible()
        page.get_by_label("Password").fill("a brand new password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Hooks")).to_be_visible()
        assert not visits.problems, "\n".join(visits.problems)
        context.close()
        settings.context.close()
