"""The problems part of the store contract, on every engine of conftest.ENGINES: failures of a
hook grouped by signature in `finish`, acknowledged, resolved by a success, Replay affected."""

from __future__ import annotations

from test_store import make_event, make_request, run

from relayhook.core.records import Attempt, Outcome
from relayhook.store import NewDelivery, Store

NOW = 1_700_000_000.0


def attempt(delivery_id: str, status: int | None, error_class: str | None = None) -> Attempt:
    return Attempt(
        delivery_id,
        1,
        NOW,
        5.0,
        {},
        status,
        (),
        b"",
        error_class,
        "cannot connect: refused" if error_class else None,
    )


def seed(store: Store, hook: str, count: int) -> list[str]:
    events = [make_event(f"e{hook}{i}") for i in range(count)]
    deliveries = [
        NewDelivery(f"d{hook}{i}", e.id, hook, None, "pending", NOW) for i, e in enumerate(events)
    ]
    run(store.ingest(make_request(f"r{hook}"), events, deliveries))
    return [d.id for d in deliveries]


def finish(
    store: Store, hook: str, outcome: Outcome, status: int | None, error_class: str | None = None
) -> str:
    (claimed,) = run(
        store.claim_due(hook=hook, now=NOW + 1e6, limit=1, lease_seconds=30, owner="w")
    )
    run(
        store.finish(
            claimed.id, owner="w", outcome=outcome, attempt=attempt(claimed.id, status, error_class)
        )
    )
    return claimed.id


def test_failures_group_by_hook_and_signature_and_a_success_resolves_them(store: Store) -> None:
    seed(store, "crm", 4)
    seed(store, "zap", 1)
    first = finish(store, "crm", Outcome("dead", response_status=401), 401)
    finish(store, "crm", Outcome("failed", due_at=NOW + 2e6, response_status=401), 401)
    finish(store, "crm", Outcome("failed", due_at=NOW + 2e6), None, "connect")
    finish(store, "zap", Outcome("dead", response_status=401), 401)
    problems = run(store.list_problems(hook="crm"))
    assert {(p.signature, p.deliveries, p.status) for p in problems} == {
        ("status 401", 2, "open"),
        ("connect", 1, "open"),
    }
    assert len(run(store.list_problems())) == 3
    (unauthorized,) = [p for p in problems if p.signature == "status 401"]
    assert unauthorized.error is None and not unauthorized.notified

    assert run(store.acknowledge_problem(unauthorized.id, at=NOW + 5))
    assert not run(store.acknowledge_problem(unauthorized.id, at=NOW + 6))  # open ones only
    got = run(store.get_problem(unauthorized.id))
    assert got is not None and got.status == "acknowledged" and got.acknowledged_at == NOW + 5
    assert run(store.get_problem("prb_nothing")) is None

    # Replay affected: the 401s still dead or failed, once each; the other problem's stay.
    assert run(store.replay_problem(unauthorized.id, now=NOW + 1e6)) == 2
    found = run(store.get_delivery(first))
    assert found is not None and found[0].status == "pending" and found[0].tries == 0

    finish(store, "crm", Outcome("succeeded", response_status=200), 200)
    assert run(store.list_problems(hook="crm")) == []
    resolved = run(store.list_problems(hook="crm", statuses=("resolved",)))
    assert len(resolved) == 2 and all(p.resolved_at is not None for p in resolved)
    assert [p.hook for p in run(store.list_problems())] == ["zap"]  # another hook's stays open

    # After it was resolved, the same failure opens a new problem.
    finish(store, "crm", Outcome("dead", response_status=401), 401)
    (again,) = run(store.list_problems(hook="crm"))
    assert again.id != unauthorized.id and again.deliveries == 1


def test_a_skipped_delivery_is_no_problem_and_a_retry_counts_once(store: Store) -> None:
    (delivery,) = seed(store, "crm", 1)
    run(store.claim_due(hook="crm", now=NOW, limit=1, lease_seconds=30, owner="w"))
    run(
        store.finish(
            delivery, owner="w", outcome=Outcome("skipped", error="condition false"), attempt=None
        )
    )
    assert run(store.list_problems()) == []
    run(store.replay(now=NOW + 1, delivery_id=delivery))
    for _ in range(2):
        finish(store, "crm", Outcome("failed", due_at=NOW, response_status=500), 500)
    (problem,) = run(store.list_problems())
    assert problem.deliveries == 1 and problem.signature == "status 500"


def test_one_caller_marks_a_problem_notified(store: Store) -> None:
    seed(store, "crm", 1)
    finish(store, "crm", Outcome("dead", response_status=410), 410)
    (problem,) = run(store.list_problems())
    assert not problem.notified
    assert run(store.mark_problem_notified(problem.id))
    assert not run(store.mark_problem_notified(problem.id))
    got = run(store.get_problem(problem.id))
    assert got is not None and got.notified
