"""The operations service (relayhook/operations.py) through the console, the API and the CLI,
in process (tests/web.py): test sends, replays, problems, samples.

The bug this pins: the console's Send test event stored its request with relay "(test)" and
`test = False`, so a failing test was a dead delivery like any other: with `[alerts]
disable_after = 1` one failed console test opened problems and switched the hook off.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
from conftest import run
from servers import RelayConfig
from web import MakeWebApp, WebApp

from relayhook.cli import main as cli_main
from relayhook.core.records import DeliveryFilter, Outcome
from relayhook.operations import REPLAY_PAGE, ReplayJob
from relayhook.store import Store

GMETRI = RelayConfig("gmetri", "gmetri", "tok-gmetri-000000000001", "gm-secret-0123456789")
HOOK = {
    "name": "crm",
    "events": ["gmetri.*"],
    "url": "https://crm.example/in",
    "retry": {"schedule": [0]},
}


def app_with_failing_receiver(web_app: MakeWebApp) -> WebApp:
    app = web_app(relays=[GMETRI], hooks=[HOOK], alerts={"disable_after": 1})
    app.outbound.status = 500
    return app


def assert_counted_nowhere(app: WebApp, delivery_id: str) -> None:
    """A failed test is history: no problem, the hook still on, no streak, shown as a test."""
    detail = app.api("GET", f"/api/deliveries/{delivery_id}")
    assert (detail["status"], detail["test"]) == ("dead", True)
    assert detail["attempts"][0]["response_status"] == 500
    assert app.api("GET", "/api/problems")["items"] == []
    assert app.parts.live.active()["crm"] is True
    hooks = {h["name"]: h for h in app.api("GET", "/api/hooks")["items"]}
    assert hooks["crm"]["active"] is True
    assert hooks["crm"]["deliveries"]["dead"] == 0  # a test is history, not work
    (relay,) = app.api("GET", "/api/relays")["items"]
    assert relay["last_24h"].get("accepted", 0) == 0  # nor traffic the relay received


def test_a_failed_console_test_send_is_a_test_and_switches_nothing_off(web_app: MakeWebApp) -> None:
    app = app_with_failing_receiver(web_app)
    app.sign_in()

    page = app.console_post("/hooks/crm/test", {"sample": ""})

    assert page.status_code == 200
    assert "Test event sent to the hook" in page.text
    delivery_id = page.url.path.rsplit("/", 1)[1]
    (sent,) = app.outbound.sent  # sent at once, through the Sender seam: no worker needed
    assert sent.url == "https://crm.example/in"
    assert sent.headers["webhook-id"] == delivery_id
    assert_counted_nowhere(app, delivery_id)
    assert 'class="tag tag-test">test</span>' in page.text
    history = app.get("/hooks/crm")
    assert history.text.count('class="tag tag-test">test</span>') == 1


def test_a_failed_cli_send_test_is_a_test_and_switches_nothing_off(
    web_app: MakeWebApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_with_failing_receiver(web_app)
    transport = app.parts.operations._transport
    # The CLI builds its own parts; give it the same stub network as the app.
    from relayhook import assembly

    real = assembly.assemble
    monkeypatch.setattr(
        assembly, "assemble", lambda settings, **kw: real(settings, transport=transport, **kw)
    )
    out = io.StringIO()

    code = cli_main(["send-test", "--config", str(app.config_path), "crm"], out)

    assert code == 1, out.getvalue()
    delivery_id = out.getvalue().rsplit(" ", 1)[1].strip()
    assert "\n< 500\n" in out.getvalue()
    run(app.parts.live.refresh(app.store, force=True))
    assert_counted_nowhere(app, delivery_id)


def test_a_console_test_send_with_a_sample_that_is_gone_says_so(web_app: MakeWebApp) -> None:
    app = web_app(relays=[GMETRI], hooks=[HOOK])
    app.sign_in()

    page = app.console_post("/hooks/crm/test", {"sample": "nothing"})

    assert "no sample named &#39;nothing&#39;" in page.text
    assert app.outbound.sent == []


# --- replay -------------------------------------------------------------------------------


def post_rows(app: WebApp, count: int) -> str:
    """`count` events from the relay (each a delivery to the hook); the request's id."""
    post = app.request(
        "POST",
        f"/in/{GMETRI.token}",
        headers={"Authorization": f"Basic {GMETRI.secret}"},
        content=json.dumps(gmetri_rows(count)),
    )
    assert post.status_code == 200, post.text
    request_id: str = app.api("GET", "/api/requests?limit=1")["items"][0]["id"]
    return request_id


def finish_all(app: WebApp, outcome: Outcome) -> list[str]:
    """Every due delivery of the hook finished as `outcome`, as a dispatcher would."""
    claimed = run(
        app.store.claim_due(
            hook="crm", now=app.clock().timestamp() + 1, limit=1000, owner="w", lease_seconds=60
        )
    )
    for delivery in claimed:
        run(app.store.finish(delivery.id, owner="w", outcome=outcome, attempt=None))
    return [d.id for d in claimed]


def dead_deliveries(app: WebApp, count: int) -> list[str]:
    """`count` dead deliveries of the hook, stored as the dispatcher leaves them."""
    post_rows(app, count)
    ids = finish_all(app, Outcome("dead", error="gone"))
    assert len(ids) == count
    return ids


def gmetri_rows(count: int) -> dict[str, Any]:
    rows = [{"identifier": f"user{n}@example.com", "variables": {"score": n}} for n in range(count)]
    return {"type": "variables", "data": {"orgSlug": "o", "depSlug": "d", "rows": rows}}


def statuses(app: WebApp) -> dict[str, int]:
    return run(app.store.count_deliveries(hook="crm"))


def test_the_api_replays_one_delivery_and_a_hooks_dead_ones_in_pages(web_app: MakeWebApp) -> None:
    app = web_app(relays=[GMETRI], hooks=[HOOK])
    ids = dead_deliveries(app, REPLAY_PAGE + 3)

    assert app.api("POST", f"/api/deliveries/{ids[0]}/replay") == {"replayed": 1}
    assert app.api("POST", "/api/deliveries/nope/replay", status=404) == {
        "error": "no such delivery"
    }
    assert app.api("POST", "/api/hooks/crm/replay?status=dead") == {"replayed": REPLAY_PAGE + 2}
    assert statuses(app)["pending"] == REPLAY_PAGE + 3
    assert statuses(app)["dead"] == 0


def test_a_bulk_replay_and_a_test_send_on_either_engine(web_app: MakeWebApp, store: Store) -> None:
    app = web_app(relays=[GMETRI], hooks=[HOOK], store=store)  # each engine of conftest
    app.outbound.status = 500
    hook = app.parts.live.hooks["crm"]
    chosen = run(app.parts.operations.choose_event(hook))
    test = run(app.parts.operations.send_test(hook, chosen.event))
    dead_deliveries(app, 3)

    assert app.api("POST", "/api/hooks/crm/replay?status=dead") == {"replayed": 3}
    assert statuses(app)["pending"] == 3
    assert run(store.get_delivery(test.delivery_id))[0].status == "dead"  # type: ignore[index]


def test_the_console_replays_what_matches_with_the_count_first_then_progress(
    web_app: MakeWebApp,
) -> None:
    app = web_app(relays=[GMETRI], hooks=[HOOK])
    dead_deliveries(app, 5)
    app.sign_in()

    confirm = app.console_post("/hooks/crm/replay", {"status": "dead"})
    assert "5" in confirm.text and statuses(app)["dead"] == 5
    job_page = app.console_post("/hooks/crm/replay", {"status": "dead", "confirm": "yes"})
    job_id = job_page.url.path.rsplit("/", 1)[1]
    job = app.parts.operations.replay_job(job_id)
    if job.task is not None:
        run(asyncio.wait_for(job.task, 10))
    assert (job.done, job.total, job.finished) == (5, 5, True)
    assert statuses(app)["pending"] == 5


def test_the_cli_replays_through_the_same_service(web_app: MakeWebApp) -> None:
    app = web_app(relays=[GMETRI], hooks=[HOOK])
    dead_deliveries(app, 3)
    out = io.StringIO()

    code = cli_main(["replay", "--config", str(app.config_path), "--hook", "crm"], out)

    assert code == 0
    assert out.getvalue().startswith("replayed 3 deliveries of hook 'crm'")
    assert statuses(app)["pending"] == 3


def test_a_bulk_replay_leaves_test_sends_and_stops_when_cancelled(web_app: MakeWebApp) -> None:
    app = web_app(relays=[GMETRI], hooks=[HOOK])
    app.outbound.status = 500
    hook = app.parts.live.hooks["crm"]
    operations = app.parts.operations
    chosen = run(operations.choose_event(hook))
    test = run(operations.send_test(hook, chosen.event))
    dead_deliveries(app, 2)
    where = DeliveryFilter(hook="crm", statuses=("dead",))

    async def start_and_cancel() -> ReplayJob:
        job = operations.start_replay(where, 3)
        job.cancelled = True  # before its first page
        return job

    job = run(start_and_cancel())
    run(operations.cancel_replay(job.id))
    assert (job.done, job.finished) == (0, True)
    assert run(operations.replay_matching(where)) == 2
    assert run(app.store.get_delivery(test.delivery_id))[0].status == "dead"  # type: ignore


# --- problems and samples -------------------------------------------------------------------


def test_problems_are_acknowledged_and_replayed_through_the_api_and_the_console(
    web_app: MakeWebApp,
) -> None:
    app = web_app(relays=[GMETRI], hooks=[HOOK])
    post_rows(app, 2)
    finish_all(app, Outcome("dead", response_status=401, error="HTTP 401"))
    (problem,) = app.api("GET", "/api/problems")["items"]

    acknowledged = app.api("POST", f"/api/problems/{problem['id']}/acknowledge")
    assert acknowledged["status"] == "acknowledged"
    again = app.api("POST", f"/api/problems/{problem['id']}/acknowledge", status=409)
    assert again == {"error": "only an open problem is acknowledged"}
    app.sign_in()
    page = app.console_post(f"/problems/{problem['id']}/acknowledge", {})
    assert "It is acknowledged already." in page.text
    page = app.console_post(f"/problems/{problem['id']}/replay", {})
    assert "Replayed 2 affected deliveries of hook crm" in page.text
    assert app.api("POST", "/api/problems/nope/replay", status=404) == {"error": "no such problem"}


def test_a_sample_is_pinned_from_the_console_and_the_api_alike(web_app: MakeWebApp) -> None:
    app = web_app(relays=[GMETRI], hooks=[HOOK])
    request_id = post_rows(app, 1)
    app.sign_in()

    page = app.console_post(f"/requests/{request_id}/pin", {"name": "Ana"})
    assert "Pinned as sample &#39;Ana&#39;" in page.text
    taken = app.api(
        "POST", "/api/samples", json={"name": "Ana", "request_id": request_id}, status=409
    )
    assert taken == {"error": "a sample named 'Ana' exists already"}
    trial = app.api(
        "POST", "/api/hooks/dry-run", json={"hook": "crm", "when": "{{ event.data.score > 5 }}"}
    )
    assert trial["summary"].startswith("This condition would have matched 0 of the last 1")
