"""A provider that goes quiet (issue 21, item 1), on every engine: the quiet watch learns a
relay's weekly pattern from stored requests, opens its `quiet` problem (alerted like any other)
when the relay receives far less than usual for the configured window, and resolves it when
traffic returns. The clock is injected; the pure rules are tested in tables."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import pytest
from conftest import run
from test_store import make_request

from relayhook.core.events import format_time
from relayhook.core.problems import alert_kind, describe_problem, problem_json
from relayhook.core.quiet import HOUR, WEEK, WEEK_HOURS, Fixed, Learned, Traffic, judge, recovered
from relayhook.core.records import Problem
from relayhook.delivery.alerts import Alerter, alert_body
from relayhook.delivery.watch import QuietWatch
from relayhook.relays import Relay
from relayhook.settings import WatchSettings
from relayhook.store import Store

NOW = 1796306400.0  # Thursday 2026-12-03 14:00 UTC
SILENCE = NOW - HOUR  # the provider's last request comes just before this


def relay(name: str, expect: tuple[int, float] | None = None) -> Relay:
    return Relay(name, None, "t" * 16, "", expect=expect)  # type: ignore[arg-type]


def received(store: Store, name: str, at: float, n: int, spread: float = 0.0) -> None:
    """`n` requests from `at` on, evenly over `spread` seconds."""
    for i in range(n):
        stamp = format_time(datetime.fromtimestamp(at + i * spread / n, UTC))
        record = dataclasses.replace(
            make_request(f"{name}-{at}-{i}", relay=name), received_at=stamp
        )
        run(store.ingest(record, []))


def weekly_pattern(store: Store, name: str) -> None:
    """40-60 an hour around this hour of the week, four weeks back, then this week up to the
    silence: what a busy provider sends."""
    for week in range(4, -1, -1):
        for hour in range(-6, 6):
            at = NOW - week * WEEK + hour * HOUR
            if at + HOUR <= SILENCE:
                received(store, name, at, 40 + (week * 7 + hour) % 21, spread=HOUR)


def test_a_relay_gone_quiet_opens_its_problem_in_the_window_and_resolves_when_traffic_returns(
    store: Store,
) -> None:
    weekly_pattern(store, "gmetri-prod")
    received(store, "rare", NOW - 3 * WEEK, 1)  # two a month: never "usually" enough to watch
    now = [NOW]
    watch = QuietWatch(
        store, lambda: [relay("gmetri-prod"), relay("rare")], WatchSettings(), clock=lambda: now[0]
    )
    opened_at = None
    for step in range(40):  # every 5 minutes for 3 h 20 min
        now[0] = NOW + step * 300
        if watch_found := run(watch.check()):
            assert watch_found == ["gmetri-prod"]
            opened_at = now[0]
            break
    assert opened_at is not None
    silent = opened_at - SILENCE
    # Window 2 h, ratio 0.1: what is left in the window of the last busy hour falls under a
    # tenth of the usual after 108 min of silence.
    assert 0.9 * 2 * HOUR <= silent <= 2 * HOUR + 300

    (problem,) = run(store.list_problems(relay="gmetri-prod"))
    assert problem.status == "open" and problem.hook == "" and problem.signature == "quiet"
    assert re.fullmatch(
        r"gmetri-prod: only \d requests in the last 2 h, none for 1 h \d+ min;"
        r" usually \d\d-\d\d an hour on Thursdays at this time \(UTC\)",
        describe_problem(problem),
    )
    assert run(store.list_problems(relay="rare")) == []
    assert run(store.list_problems(hook="gmetri-prod")) == []

    # The existing alerter sends it, once, as a relay's problem.
    sent: list[Problem] = []

    class Channel:
        name = "test"

        async def send(self, problem: Problem) -> None:
            sent.append(problem)

    assert run(Alerter(store, [Channel()]).alert_new()) == 1
    assert [p.id for p in sent] == [problem.id]
    body = alert_body(sent[0])
    assert body["type"] == "relayhook.relay.problem"
    assert problem_json(sent[0])["relay"] == "gmetri-prod"

    # Still quiet an hour later: the same problem, its text up to date.
    now[0] += HOUR
    assert run(watch.check()) == ["gmetri-prod"]
    (again,) = run(store.list_problems(relay="gmetri-prod"))
    assert again.id == problem.id
    assert re.fullmatch(
        r"gmetri-prod: no request for 2 h \d+ min; usually \d\d-\d\d an hour on"
        r" Thursdays at this time \(UTC\)",
        describe_problem(again),
    )

    # Traffic returns: resolved at the next look.
    received(store, "gmetri-prod", now[0] + 30, 3)
    now[0] += 60
    assert run(watch.check()) == []
    assert run(store.list_problems(relay="gmetri-prod")) == []
    (resolved,) = run(store.list_problems(relay="gmetri-prod", statuses=("resolved",)))
    assert resolved.id == problem.id and resolved.resolved_at == now[0]


def test_a_fixed_rule_watches_a_new_relay(store: Store) -> None:
    now = [NOW]
    fresh = relay("new-shop", expect=(3, 10))
    watch = QuietWatch(store, lambda: [fresh], WatchSettings(), clock=lambda: now[0])
    received(store, "new-shop", NOW - 300, 3, spread=240)
    assert run(watch.check()) == []
    now[0] = NOW + 301  # one of the three left the 10 minutes
    assert run(watch.check()) == ["new-shop"]
    (problem,) = run(store.list_problems(relay="new-shop"))
    assert problem.error == "only 2 requests in the last 10 min; expected at least 3 per 10 min"
    received(store, "new-shop", now[0] + 1, 1)
    now[0] += 60
    assert run(watch.check()) == []
    assert run(store.list_problems(relay="new-shop")) == []

    # A relay deleted while quiet: its problem is let go.
    now[0] += 601
    assert run(watch.check()) == ["new-shop"]
    gone = QuietWatch(store, lambda: [], WatchSettings(), clock=lambda: now[0])
    assert run(gone.check()) == []
    assert run(store.list_problems(relay="new-shop")) == []


def flat(per_hour: int, weeks: int = 4) -> Traffic:
    return Traffic(0.0, {h: per_hour for h in range(weeks * WEEK_HOURS)})


@pytest.mark.parametrize(
    ("rule", "traffic", "recent", "quiet"),
    [
        pytest.param(Learned(), flat(50), 0, True, id="silence where 100 are usual"),
        pytest.param(Learned(), flat(50), 10, True, id="a tenth of the usual is far less"),
        pytest.param(Learned(), flat(50), 11, False, id="more than a tenth is not"),
        pytest.param(Learned(), flat(4), 0, None, id="too little usual traffic to tell"),
        pytest.param(Learned(), flat(50, weeks=1), 0, None, id="one week of history is too new"),
        pytest.param(Fixed(10, 60), Traffic(0.0, {}), 9, True, id="fixed rule: under N"),
        pytest.param(Fixed(10, 60), Traffic(0.0, {}), 10, False, id="fixed rule: N is enough"),
    ],
)
def test_judge(rule: Learned | Fixed, traffic: Traffic, recent: int, quiet: bool | None) -> None:
    now = 4 * WEEK
    verdict = judge(rule, traffic, now=now, recent=recent, last_at=now - 3 * HOUR)
    assert (None if verdict is None else verdict.quiet) is quiet


def test_recovery_needs_traffic_above_the_threshold_since_it_returned() -> None:
    rule, traffic, now = Learned(), flat(60), 4 * WEEK
    assert not recovered(rule, traffic, now=now, returned_at=None, since_returned=0)
    assert recovered(rule, traffic, now=now, returned_at=now - 600, since_returned=1)
    assert not recovered(rule, traffic, now=now, returned_at=now - 3600, since_returned=2)
    assert recovered(Fixed(3, 10), traffic, now=now, returned_at=now - 60, since_returned=1)
    assert not recovered(Fixed(30, 10), traffic, now=now, returned_at=now - 60, since_returned=2)


def test_a_relay_problem_alerts_as_such() -> None:
    assert alert_kind("quiet", "gmetri-prod") == "relay.problem"
    assert alert_kind("quiet") == "problem.opened"
