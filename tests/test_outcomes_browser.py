"""Why didn't this fire, in a browser (headless Chromium, found by role and label, axe-checked
and captured at 1280 and 390 px like tests/test_console_browser.py): a hook whose condition is
false for a posted event says "condition false" with the value; fixed in the hook's form, Run
again delivers the event to a real receiver once; the delivery shows the event beside the
request sent, with the fields the hook's templates read marked.
"""

from __future__ import annotations

import json
from typing import Any

import test_console_browser as console_tests
from receiver import Receiver
from servers import RelayhookProcess, http_client
from test_console_browser import ADMIN_TOKEN, SCREENSHOTS, WIDE, Visits, expect, sign_in

pytestmark = console_tests.pytestmark
# The console tests' fixtures: a server with no relay, Chromium, a receiver.
server, browser, receiver = console_tests.server, console_tests.browser, console_tests.receiver

HOOK = "High scores"


def api_post(server: RelayhookProcess, path: str, body: dict[str, Any]) -> Any:
    with http_client(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        response = client.post(server.url + path, json=body)
        assert response.status_code in (200, 201), response.text
        return response.json()


def test_condition_false_shows_the_value_and_run_again_delivers_after_the_fix(
    server: RelayhookProcess, receiver: Receiver, browser: Any
) -> None:
    relay = api_post(server, "/api/relays", {"name": "scores", "connector": "generic"})
    api_post(
        server,
        "/api/hooks",
        {
            "name": HOOK,
            "events": ["*"],
            "url": receiver.url + "/scores/",
            # `default`: a hook on every type meets events without a score (diagnostics says so)
            "when": "{{ event.data.score | default(0) > 50 }}",
            "body": {"who": "{{ event.subject | default('') }}"},
            "retry": {"schedule": [0], "jitter": 0},
        },
    )
    with http_client() as client:
        answer = client.post(relay["url"] + "?subject=amit", json={"score": 42, "level": 3})
    assert answer.status_code == 200, answer.text
    request_id = answer.json()["request_id"]

    visits = Visits(SCREENSHOTS)
    page = browser.new_context(viewport={"width": WIDE, "height": 900}).new_page()
    sign_in(page, server)
    page.goto(f"{server.url}/requests/{request_id}")
    outcomes = page.get_by_role("region", name="Outcome per hook")
    row = outcomes.get_by_role("row").filter(has_text=HOOK)
    expect(row).to_contain_text("filtered out")
    expect(row).to_contain_text("condition false: event.data.score = 42")
    visits.check(page, "outcomes-request")

    page.goto(f"{server.url}/hooks/{HOOK}")
    skipped = page.get_by_role("region", name="Requests it did not take, and why")
    expect(skipped).to_contain_text("condition false: event.data.score = 42")
    visits.check(page, "outcomes-hook")

    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Condition").fill("{{ event.data.score | default(0) > 40 }}")
    page.get_by_role("button", name="Save hook").click()
    expect(page.get_by_role("heading", name=f"Hook {HOOK}")).to_be_visible()

    page.goto(f"{server.url}/requests/{request_id}")
    page.get_by_role("button", name="Run again").click()
    expect(page.get_by_role("status").filter(has_text="Run again")).to_contain_text(
        "1 new deliveries"
    )
    (sent,) = receiver.wait_for(1, 15.0, path="/scores/")
    assert json.loads(sent.body) == {"who": "amit"}
    row = (
        page.get_by_role("region", name="Outcome per hook").get_by_role("row").filter(has_text=HOOK)
    )
    for _ in range(50):  # bounded: the page shows what the store says when it is loaded
        page.reload()
        if "delivered" in row.inner_text():
            break
        page.wait_for_timeout(200)
    expect(row).to_contain_text("delivered")

    page.get_by_role("link", name=f"Delivery to hook {HOOK}").click()
    event_fields = page.get_by_role("region", name="The event's fields")
    expect(event_fields.get_by_role("row").filter(has_text="event.data.score")).to_contain_text(
        "read"
    )
    expect(event_fields.get_by_role("row").filter(has_text="event.data.level")).not_to_contain_text(
        "read"
    )
    expect(
        page.get_by_role("heading", name="The request sent (attempt 1, secrets redacted)")
    ).to_be_visible()
    visits.check(page, "outcomes-delivery")

    page.goto(f"{server.url}/requests/{request_id}")
    page.get_by_role("button", name="Run again").click()
    expect(page.get_by_text("0 new deliveries")).to_be_visible()
    assert receiver.count("/scores/") == 1
    assert not visits.problems, visits.problems
