"""The outcomes part of the store contract, on every engine of conftest.ENGINES: one outcome per
request x hook, kept with its request, replaced by a remap, and Run again without duplicates."""

from __future__ import annotations

from test_store import make_event, make_request, run

from relayhook.core.records import HookOutcome, Outcome
from relayhook.store import NewDelivery, Store
from relayhook.store.base import Cutoffs

NOW = 1_700_000_000.0


def outcome(request_id: str, hook: str, kind: str, **detail: object) -> HookOutcome:
    return HookOutcome(request_id, hook, kind, {kind: 1}, {kind: detail} if detail else {}, NOW)


def test_outcomes_are_kept_with_their_request_and_read_per_request_and_per_hook(
    store: Store,
) -> None:
    event = make_event("e1")
    kept = [
        outcome("r1", "crm", "queued"),
        outcome("r1", "zap", "condition_false", values={"event.data.score": "\x00\ud800"}),
    ]
    run(
        store.ingest(
            make_request("r1"),
            [event],
            [NewDelivery("d1", "e1", "crm", None, "pending", NOW)],
            kept,
        )
    )
    assert run(store.request_outcomes("r1")) == kept  # by hook name; hostile text round-trips
    run(store.ingest(make_request("r2"), (), (), [outcome("r2", "zap", "no_event")]))
    assert [o.request_id for o in run(store.hook_outcomes("zap"))] == ["r2", "r1"]
    assert [o.request_id for o in run(store.hook_outcomes("zap", kinds=["no_event"]))] == ["r2"]
    assert [o.request_id for o in run(store.hook_outcomes("zap", exclude=["no_event"]))] == ["r1"]
    assert [o.request_id for o in run(store.hook_outcomes("zap", limit=1))] == ["r2"]


def test_a_request_stored_again_keeps_its_first_outcomes(store: Store) -> None:
    run(store.ingest(make_request("r1"), (), (), [outcome("r1", "crm", "no_event")]))
    again = run(store.ingest(make_request("r1"), (), (), [outcome("r1", "crm", "queued")]))
    assert again.already_stored
    assert [o.kind for o in run(store.request_outcomes("r1"))] == ["no_event"]


def test_remap_replaces_the_outcome_of_each_hook_it_routes(store: Store) -> None:
    run(
        store.ingest(
            make_request("r1", status="rejected", error="bad"),
            (),
            (),
            [outcome("r1", "crm", "no_event"), outcome("r1", "zap", "no_event")],
        )
    )
    event = make_event("e1")
    run(
        store.remap(
            "r1",
            [event],
            status="accepted",
            error=None,
            deliveries=[NewDelivery("d1", "e1", "crm", None, "pending", NOW)],
            outcomes=[outcome("r1", "crm", "queued")],
        )
    )
    kinds = {o.hook: o.kind for o in run(store.request_outcomes("r1"))}
    assert kinds == {"crm": "queued", "zap": "no_event"}


def test_run_again_creates_what_is_missing_requeues_what_was_skipped_and_no_more(
    store: Store,
) -> None:
    events = [make_event("e1"), make_event("e2")]
    run(
        store.ingest(
            make_request("r1"),
            events,
            [NewDelivery("d1", "e1", "crm", None, "pending", NOW)],
            [outcome("r1", "crm", "queued"), outcome("r1", "zap", "condition_false")],
        )
    )
    (claimed,) = run(store.claim_due(hook="crm", now=NOW, limit=1, lease_seconds=30, owner="w"))
    run(
        store.finish(claimed.id, owner="w", outcome=Outcome("skipped", error="false"), attempt=None)
    )
    again = [
        NewDelivery("d1-again", "e1", "crm", None, "pending", NOW),
        NewDelivery("d2", "e2", "zap", None, "pending", NOW),
    ]
    fixed = [outcome("r1", "crm", "queued"), outcome("r1", "zap", "queued")]
    assert run(store.rerun("r1", again, fixed, now=NOW + 5)) == (1, 1)
    assert run(store.rerun("r1", again, fixed, now=NOW + 6)) == (0, 0)  # nothing twice
    assert {o.hook: o.kind for o in run(store.request_outcomes("r1"))} == {
        "crm": "queued",
        "zap": "queued",
    }
    crm = run(store.count_deliveries(hook="crm"))
    zap = run(store.count_deliveries(hook="zap"))
    assert (crm["pending"], crm["skipped"], zap["pending"]) == (1, 0, 1)


def test_retention_prunes_outcomes_with_their_request(store: Store) -> None:
    run(store.ingest(make_request("r1"), (), (), [outcome("r1", "crm", "no_event")]))
    result = run(store.prune(Cutoffs(default=4_000_000_000.0)))
    assert result.requests == 1
    assert run(store.request_outcomes("r1")) == []
