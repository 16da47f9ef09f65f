"""Issue 21 in a browser (headless Chromium, found by role and label, axe-checked like
tests/test_console_browser.py): a provider that changes a field's type shows as a problem on the
relay's page, whose Fields tab lists what it sends; the hook form's "What would change" shows,
before Save, which deliveries a new condition drops; Erase a person erases and reports.
"""

from __future__ import annotations

from typing import Any

import test_console_browser as console_tests
from receiver import Receiver
from servers import RelayhookProcess, http_client, wait_until
from test_console_browser import SCREENSHOTS, WIDE, Visits, expect, sign_in
from test_outcomes_browser import api_post

from relayhook.core.shapes import LEARN

pytestmark = console_tests.pytestmark
server, browser, receiver = console_tests.server, console_tests.browser, console_tests.receiver

PERSON = "ann.watch@example.org"


def test_shapes_what_would_change_and_erase_in_the_console(
    server: RelayhookProcess, receiver: Receiver, browser: Any
) -> None:
    relay = api_post(server, "/api/relays", {"name": "scores", "connector": "generic"})
    api_post(
        server,
        "/api/hooks?accept_findings=true",  # no event has a score yet: diagnostics says so
        {
            "name": "Scores to CRM",
            "events": ["*"],
            "url": receiver.url + "/crm/",
            "body": {"score": "{{ event.data.score }}"},
        },
    )
    with http_client() as client:
        for n in range(LEARN):
            body = {"email": PERSON if n == 0 else f"p{n}@example.org", "score": n}
            assert client.post(relay["url"], json=body).status_code == 200
        assert (
            client.post(relay["url"], json={"email": "z@example.org", "score": "high"}).status_code
            == 200
        )
    receiver.wait_for(LEARN + 1, 15.0, path="/crm/")
    with http_client(headers={"Authorization": f"Bearer {console_tests.ADMIN_TOKEN}"}) as api:
        wait_until(
            lambda: api.get(server.url + "/api/problems", params={"relay": "scores"}).json()[
                "items"
            ],
            timeout=10,
            what="the shape problem",
        )

    visits = Visits(SCREENSHOTS)
    page = browser.new_context(viewport={"width": WIDE, "height": 900}).new_page()
    sign_in(page, server)
    page.goto(f"{server.url}/relays/scores")
    problems = page.get_by_role("region", name="Problems")
    expect(problems).to_contain_text("`data.score` is now a text")
    expect(problems).to_contain_text("read by hook 'Scores to CRM'")
    visits.check(page, "relay-shape-problem")
    page.get_by_role("link", name="Fields").click()
    fields = page.get_by_role("region", name="Fields received")
    expect(fields).to_contain_text("data.score")
    expect(fields).to_contain_text("number, string")
    visits.check(page, "relay-fields")

    page.goto(f"{server.url}/hooks/Scores to CRM/edit")
    page.get_by_text("Advanced: condition, timing, retries, signing").click()  # folded away
    page.get_by_label("Condition").fill("{{ event.data.score == 'high' }}")
    page.get_by_role("button", name="What would change").click()
    panel = page.get_by_role("region", name="What would change")
    expect(panel).to_contain_text(f"{LEARN} would change")
    expect(panel).to_contain_text("Nothing is saved until you press Save hook")
    visits.check(page, "what-would-change")

    page.goto(f"{server.url}/erase")
    page.get_by_label("E-mail address or id").fill(PERSON)
    page.get_by_role("button", name="Erase").click()
    expect(page.get_by_role("alert")).to_contain_text("Tick the box")
    page.get_by_label("E-mail address or id").fill(PERSON)
    page.get_by_label("I understand that this cannot be undone").check()
    page.get_by_role("button", name="Erase").click()
    report = page.get_by_role("region", name="What was erased")
    expect(report).to_contain_text(f"held {PERSON}")
    expect(report).to_contain_text("backups")
    visits.check(page, "erase")
    page.goto(f"{server.url}/relays/scores?tab=example")
    assert PERSON not in page.content()
    assert visits.problems == []
