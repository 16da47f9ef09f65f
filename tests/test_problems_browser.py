"""Problems in a browser (headless Chromium, found by role and label, axe-checked like
tests/test_console_browser.py): a receiver answering 401 shows as one problem on the Problems
page and on the hook's page; Acknowledge, then Replay affected once the receiver takes it, and
the success resolves it.
"""

from __future__ import annotations

from typing import Any

import test_console_browser as console_tests
from receiver import Receiver, Reply
from servers import RelayhookProcess, http_client
from test_console_browser import SCREENSHOTS, WIDE, Visits, expect, sign_in
from test_outcomes_browser import api_post

pytestmark = console_tests.pytestmark
server, browser, receiver = console_tests.server, console_tests.browser, console_tests.receiver

HOOK = "HubSpot"


def test_a_problem_is_acknowledged_replayed_and_resolved_in_the_console(
    server: RelayhookProcess, receiver: Receiver, browser: Any
) -> None:
    receiver.script("/hubspot-console/", Reply(401, body=b"token expired"))
    relay = api_post(server, "/api/relays", {"name": "contacts", "connector": "generic"})
    api_post(
        server,
        "/api/hooks",
        {
            "name": HOOK,
            "events": ["*"],
            "url": receiver.url + "/hubspot-console/",
            "retry": {"schedule": [0], "jitter": 0},
        },
    )
    with http_client() as client:
        for n in range(2):
            assert client.post(relay["url"], json={"n": n}).status_code == 200
    receiver.wait_for(2, 15.0, path="/hubspot-console/")

    visits = Visits(SCREENSHOTS)
    page = browser.new_context(viewport={"width": WIDE, "height": 900}).new_page()
    sign_in(page, server)
    page.get_by_role("link", name="Problems").click()
    current = page.get_by_role("region", name="Open and acknowledged")
    for _ in range(50):  # bounded: the dispatcher records the second failure on its own time
        if "2 deliveries" in current.inner_text():
            break
        page.wait_for_timeout(200)
        page.reload()
    expect(current).to_contain_text(f"hook '{HOOK}': status 401 since")
    expect(current).to_contain_text("2 deliveries")
    visits.check(page, "problems")

    current.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_role("status").filter(has_text="Acknowledged")).to_be_visible()
    expect(current).to_contain_text("acknowledged")

    page.goto(f"{server.url}/hooks/{HOOK}")
    on_hook = page.get_by_role("region", name="Problems")
    expect(on_hook).to_contain_text("status 401")
    visits.check(page, "problems-hook")
    receiver.script("/hubspot-console/", Reply(200))
    on_hook.get_by_role("button", name="Replay affected").click()
    expect(page.get_by_role("status").filter(has_text="Replayed 2 affected")).to_be_visible()
    receiver.wait_for(4, 15.0, path="/hubspot-console/")

    page.goto(f"{server.url}/problems")
    resolved = page.get_by_role("region", name="Recently resolved")
    for _ in range(50):  # bounded, as above
        if HOOK in resolved.inner_text():
            break
        page.wait_for_timeout(200)
        page.reload()
    expect(resolved).to_contain_text("resolved")
    expect(page.get_by_role("region", name="Open and acknowledged")).to_contain_text("No problem")
