"""Saved samples in a browser (headless Chromium, found by role and label, axe-checked like
tests/test_console_browser.py): a request is pinned as a sample on its page; the hook form
tries a condition over the last events ("would have matched 2 of the last 3") and previews
with the sample; saved, Send test event sends the sample's event to a real receiver (through
the dispatcher, so the saved condition holds for it).
"""

from __future__ import annotations

import json
from typing import Any

import test_console_browser as console_tests
from receiver import Receiver
from servers import RelayhookProcess, http_client
from test_console_browser import SCREENSHOTS, WIDE, Visits, expect, sign_in
from test_outcomes_browser import api_post

pytestmark = console_tests.pytestmark
server, browser, receiver = console_tests.server, console_tests.browser, console_tests.receiver

HOOK = "Sampled"


def test_pin_a_sample_try_a_condition_and_send_the_sample_as_a_test(
    server: RelayhookProcess, receiver: Receiver, browser: Any
) -> None:
    relay = api_post(server, "/api/relays", {"name": "quizzes", "connector": "generic"})
    # No event of a `sampled.` type exists yet, and only the generic connector (a type from
    # the query) could make one: saved despite diagnostics' error, as a person would.
    api_post(
        server,
        "/api/hooks?accept_findings=true",
        {
            "name": HOOK,
            "events": ["sampled.*"],
            "url": receiver.url + "/sampled/",
            "when": "{{ event.data.score > 1000 }}",
            "body": {"score": "{{ event.data.score }}"},
            "retry": {"schedule": [0], "jitter": 0},
        },
    )
    ids = []
    with http_client() as client:
        for score in (10, 70, 90):
            answer = client.post(relay["url"] + "?type=sampled.quiz", json={"score": score})
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["request_id"])

    visits = Visits(SCREENSHOTS)
    page = browser.new_context(viewport={"width": WIDE, "height": 900}).new_page()
    sign_in(page, server)
    page.goto(f"{server.url}/requests/{ids[1]}")
    page.get_by_label("Sample name").fill("Seventy")
    page.get_by_role("button", name="Pin as sample").click()
    expect(page.get_by_role("status").filter(has_text="Pinned")).to_contain_text(
        "Pinned as sample 'Seventy'"
    )
    visits.check(page, "samples-request")

    page.goto(f"{server.url}/hooks/{HOOK}/edit")
    page.get_by_label("Condition").fill("{{ event.data.score > 50 }}")
    page.get_by_role("button", name="Try the condition").click()
    expect(page.get_by_role("status").filter(has_text="would have matched")).to_have_text(
        "This condition would have matched 2 of the last 3 events."
    )
    page.get_by_label("Preview with").select_option("Seventy")
    page.get_by_role("button", name="Preview", exact=True).click()
    expect(page.locator("#preview-source")).to_contain_text("sample 'Seventy'")
    expect(page.locator("#preview-curl")).to_contain_text('"score":70')
    visits.check(page, "samples-hook-form")
    page.get_by_role("button", name="Save hook").click()
    expect(page.get_by_role("heading", name=f"Hook {HOOK}")).to_be_visible()

    page.get_by_label("Test with").select_option("Seventy")
    page.get_by_role("button", name="Send test event").click()
    (sent,) = receiver.wait_for(1, 15.0, path="/sampled/")
    assert json.loads(sent.body) == {"score": 70}
    assert not visits.problems, visits.problems
