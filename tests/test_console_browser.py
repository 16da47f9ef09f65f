"""The web console, driven as a person drives it: headless Chromium (Debian's /usr/bin/chromium,
no browser download) through real sockets to a real `relayhook serve` and a real receiver.
Elements are found by role and label, never by CSS path.

Every page visited is checked with axe-core (no serious or critical violation) and captured at
1280 and 390 px into SCREENSHOTS (build/console-screenshots unless RELAYHOOK_SCREENSHOTS says).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from receiver import Receiver, Reply
from servers import RelayhookProcess, http_client, render_config, render_tables, wait_until

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = Path(os.environ.get("RELAYHOOK_SCREENSHOTS", ROOT / "build" / "console-screenshots"))
EXAMPLES = ROOT / "relayhook" / "connectors" / "examples"
if not EXAMPLES.is_dir():
    EXAMPLES = ROOT / "connectors" / "examples"
ADMIN_TOKEN = "browser-test-admin-token"
HOOK = "Quiz to Zapier"
WIDE, NARROW = 1280, 390

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (scripts/test installs it)",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api")
axe_module = pytest.importorskip("axe_playwright_python.sync_playwright")
expect = sync_api.expect
expect.set_options(timeout=15_000)  # a shared 2-core machine: pages may take seconds


class Visits:
    """Checks each page a person lands on (axe) and keeps its screenshots."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.axe = axe_module.Axe()
        self.problems: list[str] = []
        self.seen: list[str] = []

    def check(self, page: Any, name: str, readme: bool = False) -> None:
        page.wait_for_load_state("load")
        results = self.axe.run(page)
        for violation in results.response["violations"]:
            if violation["impact"] in ("serious", "critical"):
                targets = [node["target"] for node in violation["nodes"]][:3]
                self.problems.append(
                    f"{name}: {violation['id']} ({violation['impact']}): "
                    f"{violation['help']} at {targets}"
                )
        for width in (WIDE, NARROW):
            page.set_viewport_size({"width": width, "height": 800 if width == WIDE else 844})
            page.screenshot(path=str(self.folder / f"{name}-{width}.png"), full_page=True)
            if readme:  # what the README shows: the top of the page only, a small PNG
                page.screenshot(path=str(self.folder / f"readme-{name}-{width}.png"))
        page.set_viewport_size({"width": WIDE, "height": 900})
        self.seen.append(name)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as rx:
        yield rx


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RelayhookProcess]:
    config = render_config(relays=[], admin_token=ADMIN_TOKEN) + render_tables(
        delivery={"allow_private_destinations": True, "poll_interval": 0.1}
    )
    with RelayhookProcess(tmp_path, config) as process:
        yield process


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        yield chromium
        chromium.close()


def console_password(server: RelayhookProcess) -> str:
    match = re.search(r"Console password \(shown once[^)]*\): (\S+)", server.log())
    assert match, server.log()
    return match.group(1)


def api(server: RelayhookProcess, path: str) -> Any:
    with http_client(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        response = client.get(server.url + path)
        response.raise_for_status()
        return response.json()


def post_to_relay(url: str, secret: str, body: bytes) -> httpx.Response:
    with http_client() as client:
        return client.post(
            url,
            content=body,
            headers={"Authorization": f"Basic {secret}", "Content-Type": "application/json"},
        )


def one_rule(who: str) -> bytes:
    return json.dumps(
        {
            "type": "rules",
            "data": {
                "orgSlug": "gmetri",
                "depSlug": "demo",
                "rows": [
                    {
                        "identifier": who,
                        "rules": [
                            {
                                "cid": 7,
                                "cname": "Quiz done",
                                "scene_name": "end",
                                "timestamp": 1714564800000,
                            }
                        ],
                    }
                ],
            },
        }
    ).encode()


def sign_in(page: Any, server: RelayhookProcess, visits: Visits | None = None) -> None:
    page.goto(server.url + "/")
    expect(page.get_by_role("heading", name="Sign in to Relayhook")).to_be_visible()
    if visits:
        visits.check(page, "signin")
    page.get_by_label("Password").fill(console_password(server))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def test_the_whole_story_in_a_browser(
    server: RelayhookProcess, receiver: Receiver, browser: Any
) -> None:
    visits = Visits(SCREENSHOTS)
    context = browser.new_context(viewport={"width": WIDE, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)

    # Sign in; the overview is empty and says what to do.
    sign_in(page, server, visits)
    visits.check(page, "overview-empty")

    # New relay (GMetri): pick the connector, give a name.
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Relays").click()
    page.get_by_role("link", name="New relay").first.click()
    expect(page.get_by_role("heading", name="New relay")).to_be_visible()
    visits.check(page, "relay-new")
    page.get_by_role("button", name="Create relay").click()  # nothing chosen: errors at fields
    expect(page.get_by_role("alert")).to_contain_text("There is a problem")
    visits.check(page, "relay-new-errors")
    page.get_by_label("GMetri").check()
    page.get_by_label("Name", exact=True).fill("gmetri-prod")
    page.get_by_role("button", name="Create relay").click()
    expect(page.get_by_role("heading", name="Relay gmetri-prod")).to_be_visible()
    expect(page.get_by_role("status", name="Wiring")).to_contain_text("Nothing received yet")

    # Read the URL and the secret off the page; the setup text has them filled in.
    relay_url = page.get_by_label("Relay URL").input_value()
    assert relay_url.startswith(server.url + "/in/")
    page.get_by_role("button", name="Reveal secret").click()
    secret = page.get_by_label("Secret", exact=True).input_value()
    assert len(secret) >= 32
    expect(page.get_by_text(f"Webhook Basic Auth String:  {secret}")).to_be_visible()
    expect(page.get_by_text(f"Webhook URL (POST API):     {relay_url}")).to_be_visible()
    visits.check(page, "relay-setup", readme=True)

    # Post the GMetri seed's rules example with real Basic credentials.
    body = (EXAMPLES / "gmetri-rules.json").read_bytes()
    answer = post_to_relay(relay_url, secret, body)
    assert answer.status_code == 200 and answer.json()["accepted"] == 4, answer.text
    assert post_to_relay(relay_url, "wrong", body).status_code == 401

    # The Example tab shows the request and its 4 events; the relay is wired.
    page.get_by_role("link", name="Example").click()
    expect(page.get_by_text("4 events")).to_be_visible()
    example = page.get_by_role("list").filter(has_text="gmetri.rule.triggered").last
    expect(example.get_by_role("listitem")).to_have_count(4)
    # The refusal came after the accepted request: the banner says so, in red, not "Wired".
    expect(page.get_by_role("status", name="Wiring")).to_contain_text("Credentials refused.")
    expect(page.get_by_role("status", name="Wiring")).to_contain_text("1 request refused")
    visits.check(page, "relay-example")
    page.get_by_label("Search inside bodies").fill("Rule G")
    page.get_by_role("main").get_by_role("button", name="Search").click()
    expect(page.get_by_text("4 events")).to_be_visible()
    page.get_by_label("Search inside bodies").fill("no such text anywhere")
    page.get_by_role("main").get_by_role("button", name="Search").click()
    expect(page.get_by_text("No request body holds")).to_be_visible()

    # Lineage: the request -> its events (-> their deliveries, none yet).
    page.get_by_role("link", name="Example").click()
    page.get_by_role("link", name="Open this request with its events and deliveries").click()
    expect(page.get_by_role("heading", name="Events (4)")).to_be_visible()
    visits.check(page, "request")

    # New hook: the Zapier preset, one header from a fixed value, one parameter from an event
    # field, pointed at the local receiver.
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Hooks").click()
    visits.check(page, "hooks-empty")
    page.get_by_role("link", name="New hook").first.click()
    expect(page.get_by_role("heading", name="New hook")).to_be_visible()
    page.get_by_label("Name", exact=True).fill(HOOK)
    page.get_by_label("GMetri: rule triggered").check()
    page.get_by_label("Zapier", exact=False).check()  # the script applies it at once
    expect(page.get_by_label("Rate limit")).to_have_value("25")
    expect(page.get_by_label("The preset's body, or the whole event as JSON")).to_be_checked()
    page.get_by_label("URL", exact=True).fill(receiver.url + "/zap/catch/1/")
    headers = page.get_by_role("group", name="Headers")
    headers.get_by_label("Key", exact=True).first.fill("X-Api-Key")
    headers.get_by_label("Value source").first.select_option(label="Fixed value")
    headers.get_by_label("Value", exact=True).first.fill("key-123")
    expect(headers.get_by_label("Secret").first).to_be_checked()
    params = page.get_by_role("group", name="Parameters")
    params.get_by_label("Key", exact=True).first.fill("user")
    params.get_by_label("Value source").first.select_option(label="Event field")
    params.get_by_label("Value", exact=True).first.fill("subject")
    page.get_by_text("Advanced: condition, timing, retries, signing").click()
    page.get_by_label("Retry schedule").fill("0, 0.3")

    # The preview shows the exact request as cURL for the newest real event, secret masked.
    preview = page.get_by_role("complementary", name="Preview")
    expect(preview).to_contain_text("curl", timeout=10_000)
    expect(preview).to_contain_text("/zap/catch/1/?user=")
    expect(preview).to_contain_text("x-api-key: [redacted]")
    expect(preview).not_to_contain_text("key-123")
    expect(preview).to_contain_text("newest matching event received")
    visits.check(page, "hook-new", readme=True)
    page.get_by_role("button", name="Save hook").click()
    expect(page.get_by_role("heading", name=f"Hook {HOOK}")).to_be_visible()

    # Send test event: the receiver gets it, the delivery page shows the answer.
    page.get_by_role("button", name="Send test event").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("delivered", timeout=20_000)
    got = receiver.wait_for(1, timeout=10, path="/zap/")[0]
    assert got.header("x-api-key") == "key-123"
    assert ("user", "amit@gmetri.com") in got.params()  # the connector's example, not real data
    expect(page.get_by_role("button", name="Copy as cURL").first).to_be_visible()
    visits.check(page, "delivery-test")

    # The History tab shows it, marked as a test.
    page.get_by_role("navigation", name="Breadcrumb").get_by_role(
        "link", name=f"Hook {HOOK}"
    ).click()
    history = page.get_by_role("region", name="History")
    expect(history.get_by_role("row").filter(has_text="test")).to_have_count(1)
    visits.check(page, "hook-history")

    # The receiver answers 500 until the delivery is dead; then Replay -> succeeded.
    receiver.script("/zap/", Reply(500))
    assert post_to_relay(relay_url, secret, one_rule("dead@example.com")).status_code == 200
    wait_until(
        lambda: api(server, "/api/deliveries?status=dead")["items"],
        timeout=20,
        what="a dead delivery",
    )
    page.reload()
    page.get_by_role("checkbox", name="gave up").check()
    page.get_by_role("button", name="Filter", exact=True).click()
    rows = page.get_by_role("region", name="History").get_by_role("row")
    expect(rows).to_have_count(2)  # the header and the dead one
    expect(rows.nth(1)).to_contain_text("500")
    rows.nth(1).get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("gave up")
    expect(page.get_by_role("heading", name="Attempt 2: 500")).to_be_visible()
    visits.check(page, "delivery-dead")
    receiver.script("/zap/", Reply(200))
    page.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("delivered", timeout=20_000)
    assert receiver.requests("/zap/")[-1].params() == [("user", "dead@example.com")]

    # Switch the hook Inactive: new deliveries wait, paused; Active again: they arrive.
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Hooks").click()
    page.get_by_role("button", name=f"Make inactive: {HOOK}").click()
    expect(page.get_by_role("status").first).to_contain_text("is inactive")
    visits.check(page, "hooks")
    before = receiver.count("/zap/")
    assert post_to_relay(relay_url, secret, one_rule("paused@example.com")).status_code == 200
    page.get_by_role("link", name=HOOK).click()
    expect(
        page.get_by_text(
            "Its new deliveries wait, paused, and are sent when it is switched back on."
        )
    ).to_be_visible()
    expect(
        page.get_by_role("region", name="History").get_by_role("row").filter(has_text="paused")
    ).to_have_count(1)
    visits.check(page, "hook-inactive")
    assert receiver.count("/zap/") == before
    page.get_by_role("button", name=f"Make active: {HOOK}").click()
    # The switch's form answers with the page again: wait for it before reloading, or the
    # reload races the navigation ("Not attached to an active page").
    expect(page.get_by_role("button", name=f"Make inactive: {HOOK}")).to_be_visible()
    got = receiver.wait_for(before + 1, timeout=20, path="/zap/")
    assert ("user", "paused@example.com") in got[-1].params()

    # Replay all that match the filter: the count first, then progress.
    page.reload()
    page.get_by_role("checkbox", name="delivered").check()
    page.get_by_role("button", name="Filter", exact=True).click()
    page.get_by_role("button", name="Replay all that match the filter").click()
    expect(page.get_by_text(re.compile(r"\d+ deliveries match the filter"))).to_be_visible()
    visits.check(page, "replay-confirm")
    count = int(
        re.search(
            r"(\d+) deliveries match",  # type: ignore[union-attr]
            page.get_by_role("main").inner_text(),
        ).group(1)
    )
    page.get_by_role("button", name=re.compile(r"^Replay \d+ deliveries$")).click()
    expect(page.get_by_role("status").last).to_contain_text("Done", timeout=20_000)
    expect(page.get_by_label(f"Replayed {count} of {count}")).to_be_visible()
    visits.check(page, "replay-job")

    # The overview: counts and a chart per hook.
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Overview").click()
    chart = page.get_by_role("group", name=re.compile("Deliveries per hour"))
    expect(chart).to_be_visible()
    hour = re.compile(r"\d\d:\d\d-\d\d:\d\d UTC: [1-9]\d* delivered")
    hours = chart.get_by_role("img", name=hour)
    expect(hours.first).to_be_visible()  # each hour's counts, read on focus and by readers
    expect(page.get_by_text(re.compile(r"^24 h: \d+ deliveries, \d+ delivered"))).to_be_visible()
    expect(page.get_by_role("group", name=re.compile("Requests per hour to relay"))).to_be_visible()
    visits.check(page, "overview", readme=True)
    page.goto(server.url + "/relays")
    visits.check(page, "relays")

    # A form post without the CSRF token: 403, even signed in.
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    with http_client(cookies=cookies) as client:
        refused = client.post(server.url + f"/hooks/{HOOK}/active", data={"active": "off"})
    assert refused.status_code == 403
    assert api(server, "/api/hooks")["items"][0]["active"] is True

    # The /api bearer token keeps working beside the console.
    assert api(server, "/api/relays")["items"][0]["last_24h"]["accepted"] == 3  # requests
    context.close()

    # Wrong password 5 times from one address: the next try is answered 429.
    stranger = browser.new_context()
    page = stranger.new_page()
    page.goto(server.url + "/signin")
    statuses = []
    for _ in range(6):
        page.get_by_label("Password").fill("not the password")
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.get_by_role("button", name="Sign in").click()
        statuses.append(posted.value.status)
    assert statuses == [401] * 5 + [429]
    assert int(posted.value.headers["retry-after"]) > 0
    expect(page.get_by_role("alert")).to_contain_text("Too many wrong passwords")
    visits.check(page, "signin-throttled")
    stranger.close()

    assert not visits.problems, "\n".join(visits.problems)
    print(f"screenshots of {len(visits.seen)} pages in {SCREENSHOTS}")


def test_every_basic_flow_works_without_javascript(
    server: RelayhookProcess, receiver: Receiver, browser: Any
) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(20_000)
    sign_in(page, server)

    page.goto(server.url + "/relays/new")
    page.get_by_label("GMetri").check()
    page.get_by_label("Name", exact=True).fill("gmetri")
    page.get_by_role("button", name="Create relay").click()
    expect(page.get_by_role("button", name="Copy URL")).to_be_hidden()  # the script adds them
    relay_url = page.get_by_label("Relay URL").input_value()
    page.get_by_role("button", name="Reveal secret").click()
    secret = page.get_by_label("Secret", exact=True).input_value()

    page.goto(server.url + "/hooks/new")
    page.get_by_label("Name", exact=True).fill(HOOK)
    page.get_by_label("GMetri: rule triggered").check()
    page.get_by_label("Zapier").check()
    page.get_by_role("button", name="Use preset").click()
    expect(page.get_by_label("Rate limit")).to_have_value("25")
    page.get_by_label("URL", exact=True).fill(receiver.url + "/nojs/")
    page.get_by_role("button", name="Add a header").click()  # a second row, posted back
    expect(page.get_by_role("group", name="Headers").get_by_label("Key", exact=True)).to_have_count(
        2
    )
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("complementary", name="Preview")).to_contain_text("/nojs/")
    page.get_by_label("URL", exact=True).fill("not a url")
    page.get_by_role("button", name="Save hook").click()  # refused, said at the field
    expect(page.get_by_role("alert")).to_contain_text("There is a problem")
    page.get_by_label("URL", exact=True).fill(receiver.url + "/nojs/")
    page.get_by_role("button", name="Save hook").click()
    expect(page.get_by_role("heading", name=f"Hook {HOOK}")).to_be_visible()

    page.get_by_role("button", name=f"Make inactive: {HOOK}").click()
    expect(page.get_by_role("status").first).to_contain_text("is inactive")
    assert post_to_relay(relay_url, secret, one_rule("a@example.com")).status_code == 200
    page.goto(server.url + f"/hooks/{HOOK}")
    expect(
        page.get_by_role("region", name="History").get_by_role("row").filter(has_text="paused")
    ).to_have_count(1)
    page.get_by_role("button", name=f"Make active: {HOOK}").click()
    receiver.wait_for(1, timeout=20, path="/nojs/")
    page.goto(server.url + f"/hooks/{HOOK}")
    page.get_by_role("region", name="History").get_by_role("row").nth(1).get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("delivered")
    page.get_by_role("button", name="Replay").click()
    receiver.wait_for(2, timeout=20, path="/nojs/")
    context.close()
