"""The delivery half of the store contract, run against every engine (SQLite, PostgreSQL).

Routing at ingest, claims with a lease (ordered or not), finishing, pausing a hook and replay.
An engine joins by adding a param to `ENGINES` and a branch to `new_store` in conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from conftest import StoreFactory
from test_store import linked, make_event, make_request, run

from relayhook.core.events import Event
from relayhook.core.hooks import RateLimitSpec
from relayhook.store import (
    FINAL_STATUSES,
    Attempt,
    Delivery,
    DeliveryStatus,
    IngestResult,
    NewDelivery,
    Outcome,
    SQLiteStore,
    Store,
    StoredHook,
    StoreError,
)

NOW = 1_700_000_000.0
LEASE = 30.0
ALL_ZERO = dict.fromkeys(
    ("pending", "failed", "claimed", "succeeded", "dead", "skipped", "paused", "cancelled"), 0
)


def new_deliveries(
    events: Sequence[Event],
    hooks: Sequence[str] = ("h1",),
    *,
    status: Literal["pending", "paused"] = "pending",
    due_at: float = NOW,
) -> list[NewDelivery]:
    """One per event and hook, with the id `{event}.{hook}`."""
    return [
        NewDelivery(f"{e.id}.{hook}", e.id, hook, e.subject, status, due_at)
        for e in events
        for hook in hooks
    ]


def seed(
    store: Store,
    request_id: str,
    events: Sequence[Event],
    hooks: Sequence[str] = ("h1",),
    **kwargs: Any,
) -> IngestResult:
    return run(
        store.ingest(make_request(request_id), events, new_deliveries(events, hooks, **kwargs))
    )


def seed_pending(store: Store, count: int, *, hook: str = "h1", due_at: float = NOW) -> list[str]:
    """`count` pending deliveries of `hook`, oldest first, each event in its own request."""
    for i in range(count):
        seed(store, f"r-{hook}-{i}", [make_event(f"e-{hook}-{i}")], (hook,), due_at=due_at)
    return [f"e-{hook}-{i}.{hook}" for i in range(count)]


def claim(
    store: Store,
    hook: str = "h1",
    *,
    now: float = NOW,
    limit: int = 100,
    owner: str = "w1",
    ordered: bool = False,
) -> list[Delivery]:
    return run(
        store.claim_due(
            hook=hook, now=now, limit=limit, lease_seconds=LEASE, owner=owner, ordered=ordered
        )
    )


def ids(deliveries: Sequence[Delivery]) -> list[str]:
    return [d.id for d in deliveries]


def make_attempt(
    delivery_id: str,
    number: int = 1,
    *,
    started_at: float = NOW,
    status: int | None = 500,
    body: bytes = b"oops",
) -> Attempt:
    return Attempt(
        delivery_id=delivery_id,
        number=number,
        started_at=started_at,
        duration_ms=250.0,
        request={
            "method": "POST",
            "url": "https://hooks.example/catch/1",
            "headers": [["content-type", "application/json"], ["x-key", "[redacted]"]],
            "body": '{"ok":true}',
        },
        response_status=status,
        response_headers=(("content-type", "text/plain"), ("set-cookie", "a"), ("set-cookie", "b")),
        response_body=body,
        error_class=None if status is not None else "timeout",
        error=None if status is not None else "read timed out after 10 s",
    )


def finish(
    store: Store,
    delivery_id: str,
    status: str,
    *,
    owner: str = "w1",
    attempt: Attempt | None = None,
    due_at: float | None = None,
    error: str | None = None,
    response_status: int | None = None,
) -> bool:
    outcome = Outcome(status, due_at=due_at, error=error, response_status=response_status)  # type: ignore[arg-type]
    return run(store.finish(delivery_id, owner=owner, outcome=outcome, attempt=attempt))


def get(store: Store, delivery_id: str) -> tuple[Delivery, list[Attempt]]:
    found = run(store.get_delivery(delivery_id))
    assert found is not None
    return found


def status_of(store: Store, delivery_id: str) -> DeliveryStatus:
    return get(store, delivery_id)[0].status


def make_dead(store: Store, delivery_ids: Sequence[str], *, hook: str = "h1") -> None:
    claimed = claim(store, hook, limit=len(delivery_ids))
    assert set(ids(claimed)) >= set(delivery_ids)
    for delivery_id in delivery_ids:
        assert finish(store, delivery_id, "dead", error="410 Gone", response_status=410)


# -- routing at ingest


def test_ingest_creates_a_delivery_per_event_and_hook(store: Store) -> None:
    e1 = make_event("e1", relay="gmetri", subject="viewer-1")
    e2 = make_event("e2", relay="gmetri", subject=None)
    request = make_request("r1", relay="gmetri")
    deliveries = new_deliveries([e1, e2], ("zapier", "crm"), due_at=NOW)

    result = run(store.ingest(request, [e1, e2], deliveries))

    assert result == IngestResult(accepted=2, duplicates=0, deliveries=4)
    stored = run(store.list_deliveries())
    assert ids(stored) == ["e2.crm", "e2.zapier", "e1.crm", "e1.zapier"]  # newest first
    assert stored[-1] == Delivery(
        id="e1.zapier",
        event_id="e1",
        hook="zapier",
        relay="gmetri",  # the event's
        subject="viewer-1",
        status="pending",
        tries=0,
        attempts=0,
        due_at=NOW,
        lease_until=None,
        last_status=None,
        last_error=None,
        created_at=NOW,
        updated_at=NOW,
    )
    assert stored[0].subject is None


def test_a_duplicate_event_gets_no_second_round_of_deliveries(store: Store) -> None:
    seed(store, "r1", [make_event("e1")], ("h1", "h2"))

    again = [make_event("e1"), make_event("e2")]
    deliveries = [
        NewDelivery("again.e1.h1", "e1", "h1", None, "pending", NOW + 5),
        NewDelivery("e2.h1", "e2", "h1", None, "pending", NOW + 5),
    ]
    result = run(store.ingest(make_request("r2"), again, deliveries))

    assert result == IngestResult(accepted=1, duplicates=1, deliveries=1)
    assert ids(run(store.list_deliveries())) == ["e2.h1", "e1.h2", "e1.h1"]
    assert run(store.list_deliveries(event_id="e1")) == run(
        store.list_deliveries(event_id="e1", hook=None)
    )
    assert len(run(store.list_deliveries(event_id="e1"))) == 2


def test_an_event_repeated_in_one_write_is_routed_once(store: Store) -> None:
    first, repeat = make_event("e1", data=1), make_event("e1", data=2)
    deliveries = [
        NewDelivery("d1", "e1", "h1", None, "pending", NOW),
        NewDelivery("d2", "e1", "h1", None, "pending", NOW),  # the router saw e1 twice
    ]
    result = run(store.ingest(make_request("r1"), [first, repeat], deliveries))
    assert result == IngestResult(accepted=1, duplicates=1, deliveries=1)
    assert ids(run(store.list_deliveries())) == ["d1"]


def test_a_delivery_of_an_inactive_hook_is_stored_paused(store: Store) -> None:
    result = seed(store, "r1", [make_event("e1")], ("h1",), status="paused")
    assert result.deliveries == 1
    assert status_of(store, "e1.h1") == "paused"
    assert claim(store) == []


def test_remap_routes_only_the_new_events(store: Store) -> None:
    seed(store, "r1", [make_event("e1")])
    run(store.ingest(make_request("r2", status="rejected", error="unknown type"), []))

    events = [make_event("e1"), make_event("e2")]
    result = run(
        store.remap("r2", events, status="accepted", error=None, deliveries=new_deliveries(events))
    )

    assert result == IngestResult(accepted=1, duplicates=1, deliveries=1)
    assert ids(run(store.list_deliveries())) == ["e2.h1", "e1.h1"]


def test_a_delivery_of_an_event_not_in_the_write_is_refused(store: Store) -> None:
    stray = NewDelivery("d1", "elsewhere", "h1", None, "pending", NOW)
    with pytest.raises(ValueError, match="elsewhere"):
        run(store.ingest(make_request("r1"), [make_event("e1")], [stray]))
    assert run(store.get_request("r1")) is None


def test_a_failed_ingest_keeps_no_deliveries(store: Store) -> None:
    # The second event's time fails the write (times are engine-made text, never escaped).
    events = [make_event("e1"), dataclasses.replace(make_event("e2"), time="\ud800")]
    with pytest.raises(StoreError):
        run(store.ingest(make_request("r1"), events, new_deliveries(events)))
    assert run(store.count_events()) == 0
    assert run(store.list_deliveries()) == []


# -- claiming


def test_claim_takes_the_oldest_due_first_up_to_the_limit(store: Store) -> None:
    expected = seed_pending(store, 5)
    seed(store, "r-later", [make_event("later")], due_at=NOW + 10)  # not due yet
    seed(store, "r-other", [make_event("other")], ("h2",))  # another hook's

    first = claim(store, limit=3, owner="w1")
    second = claim(store, limit=3, owner="w2")

    assert ids(first) == expected[:3]
    assert ids(second) == expected[3:]
    assert claim(store) == []
    d = first[0]
    assert (d.status, d.lease_until, d.updated_at, d.tries) == ("claimed", NOW + LEASE, NOW, 0)
    assert d.event == linked(make_event("e-h1-0"), "r-h1-0")
    assert ids(claim(store, now=NOW + 10, limit=10)) == ["later.h1"]  # leases still run
    assert ids(claim(store, "h2")) == ["other.h2"]


def test_claim_with_limit_zero_claims_nothing(store: Store) -> None:
    seed_pending(store, 2)
    assert claim(store, limit=0) == []
    assert run(store.count_deliveries(status="pending")) == {"pending": 2}


def test_a_failed_delivery_is_due_again_at_its_due_at(store: Store) -> None:
    (delivery_id,) = seed_pending(store, 1)
    claim(store)
    attempt = make_attempt(delivery_id)
    assert finish(
        store, delivery_id, "failed", attempt=attempt, due_at=NOW + 5, response_status=500
    )

    assert claim(store, now=NOW + 4.9) == []
    again = claim(store, now=NOW + 5)
    assert ids(again) == [delivery_id]
    assert (again[0].tries, again[0].attempts, again[0].last_status) == (1, 1, 500)


def test_an_expired_lease_is_claimed_again(store: Store) -> None:
    delivery_ids = seed_pending(store, 2)
    assert ids(claim(store, owner="w1")) == delivery_ids

    assert claim(store, now=NOW + LEASE - 0.001, owner="w2") == []
    taken = claim(store, now=NOW + LEASE, owner="w2")  # lease_until <= now: expired

    assert ids(taken) == delivery_ids
    assert taken[0].lease_until == NOW + 2 * LEASE
    assert not finish(store, delivery_ids[0], "succeeded", owner="w1")
    assert finish(store, delivery_ids[0], "succeeded", owner="w2")


def test_a_lease_that_ran_out_is_held_until_another_claims(store: Store) -> None:
    (delivery_id,) = seed_pending(store, 1)
    claim(store, owner="w1")
    late = make_attempt(delivery_id, started_at=NOW + 2 * LEASE, status=200)
    assert finish(store, delivery_id, "succeeded", owner="w1", attempt=late)
    assert status_of(store, delivery_id) == "succeeded"


@pytest.mark.parametrize(
    ("limit", "lease_seconds"),
    [pytest.param(-1, LEASE, id="limit"), pytest.param(1, 0, id="lease")],
)
def test_claim_refuses_a_negative_limit_or_no_lease(
    store: Store, limit: int, lease_seconds: float
) -> None:
    with pytest.raises(ValueError):
        run(
            store.claim_due(hook="h1", now=NOW, limit=limit, lease_seconds=lease_seconds, owner="w")
        )


@pytest.mark.parametrize(("claims", "limit"), [(2, 30), (10, 7)])
def test_concurrent_claims_are_disjoint_and_miss_nothing(
    store: Store, claims: int, limit: int
) -> None:
    expected = seed_pending(store, 50)

    async def race() -> list[list[Delivery]]:
        calls = [
            store.claim_due(hook="h1", now=NOW, limit=limit, lease_seconds=LEASE, owner=f"w{i}")
            for i in range(claims)
        ]
        return await asyncio.gather(*calls)

    batches = run(race())

    claimed = [d.id for batch in batches for d in batch]
    assert len(claimed) == len(set(claimed)) == 50
    assert sorted(claimed) == sorted(expected)
    for i, batch in enumerate(batches):
        assert all(d.id in expected for d in batch)
        owners = {d.id: f"w{i}" for d in batch}
        for delivery_id, owner in owners.items():  # each held by the one that got it
            assert not finish(store, delivery_id, "succeeded", owner="nobody")
            assert finish(store, delivery_id, "succeeded", owner=owner)


def test_claims_from_two_stores_on_one_database_are_disjoint(new_store: StoreFactory) -> None:
    """Two processes on one database, as two stores: no delivery is claimed twice."""

    async def race() -> list[list[Delivery]]:
        first, second = new_store(), new_store()
        await first.open()
        await second.open()
        try:
            calls = [
                store.claim_due(hook="h1", now=NOW, limit=7, lease_seconds=LEASE, owner=f"w{i}")
                for i in range(10)
                for store in (first, second)
            ]
            return await asyncio.gather(*calls)
        finally:
            await first.close()
            await second.close()

    with opened_store(new_store) as store:
        expected = seed_pending(store, 50)
    claimed = [d.id for batch in run(race()) for d in batch]
    assert sorted(claimed) == sorted(expected)


def test_claims_under_a_concurrency_count_every_owners_deliveries(store: Store) -> None:
    seed_pending(store, 10)

    def claim_at_most(owner: str, limit: int, now: float = NOW) -> list[Delivery]:
        return run(
            store.claim_due(
                hook="h1", now=now, limit=limit, lease_seconds=LEASE, owner=owner, concurrency=3
            )
        )

    assert len(claim_at_most("w1", 2)) == 2
    assert len(claim_at_most("w2", 5)) == 1  # 2 claimed by w1 + 1 = 3
    assert claim_at_most("w3", 5) == []
    done = claim(store, limit=0)  # nothing: limit 0
    assert done == []
    # A claim whose lease ran out is in flight no more (its owner may be dead).
    assert len(claim_at_most("w4", 5, now=NOW + LEASE)) == 3
    assert len(claim(store, owner="w5")) == 7 - 0  # without concurrency: whatever is due


def test_a_claimers_answered_deliveries_leave_the_concurrency_count_only_while_claimed(
    store: Store,
) -> None:
    """`answered`: the claimer's deliveries whose request is over are not in flight to the
    receiver; left out of the count exactly while they are still claimed by it."""
    seed_pending(store, 6)

    def claim_one(owner: str, answered: Sequence[str] = ()) -> list[str]:
        return ids(
            run(
                store.claim_due(
                    hook="h1",
                    now=NOW,
                    limit=5,
                    lease_seconds=LEASE,
                    owner=owner,
                    concurrency=2,
                    answered=answered,
                )
            )
        )

    first = claim_one("w1")
    assert len(first) == 2
    assert claim_one("w1") == []  # 2 of 2 in flight
    assert len(claim_one("w1", answered=first[:1])) == 1  # one answered: one slot free
    # Another owner's answered ids are not the claimer's: they still count.
    assert claim_one("w2", answered=first) == []
    # Once finished, an answered delivery is no longer claimed: nothing more is freed by it.
    assert finish(store, first[0], "succeeded")
    assert claim_one("w1", answered=first[:1]) == []  # still 2 claimed: first[1] and the third


def test_pacing_is_shared_by_every_store_on_the_database(new_store: StoreFactory) -> None:
    limit = RateLimitSpec(per_second=10)

    async def book() -> list[float]:
        first, second = new_store(), new_store()
        await first.open()
        await second.open()
        try:
            assert await first.pacing_wait("h1", limit, NOW) == 0
            times = await first.reserve_sends("h1", limit, NOW, 3)
            times += await second.reserve_sends("h1", limit, NOW, 2)
            wait = await second.pacing_wait("h1", limit, NOW)
            other = await second.reserve_sends("h2", limit, NOW, 1)
            assert await first.reserve_sends("h1", limit, NOW, 0) == []
            return [*times, wait, *other]
        finally:
            await first.close()
            await second.close()

    *times, wait, other = run(book())
    assert times == pytest.approx([NOW + 0.1 * n for n in range(5)])
    assert wait == pytest.approx(0.5)
    assert other == NOW  # another hook's pacing is its own


def test_pacing_keeps_a_window_limit_across_reservations(store: Store) -> None:
    limit = RateLimitSpec(requests=2, window=60)
    first = run(store.reserve_sends("h1", limit, NOW, 2))
    later = run(store.reserve_sends("h1", limit, NOW + 1, 1))
    assert first == [NOW, NOW] and later == [NOW + 60]
    assert run(store.pacing_wait("h1", limit, NOW + 1)) == pytest.approx(59)  # NOW + 60


@contextlib.contextmanager
def opened_store(new_store: StoreFactory) -> Iterator[Store]:
    store = new_store()
    run(store.open())
    try:
        yield store
    finally:
        run(store.close())


# -- ordered claims


def seed_session(store: Store) -> None:
    """SynthesisVR-like: A's create and delete, and B's create, in that order."""
    a_create = make_event("a-create", subject="A")
    a_delete = make_event("a-delete", subject="A")
    seed(store, "r1", [a_create, a_delete])
    seed(store, "r2", [make_event("b-create", subject="B")])


def test_ordered_claims_only_the_first_unfinished_of_each_subject(store: Store) -> None:
    seed_session(store)

    assert ids(claim(store, ordered=True)) == ["a-create.h1", "b-create.h1"]
    assert claim(store, ordered=True) == []  # A's create is claimed: its delete waits
    assert finish(store, "a-create.h1", "succeeded", attempt=make_attempt("a-create.h1"))
    assert ids(claim(store, ordered=True)) == ["a-delete.h1"]


def test_unordered_claims_ignore_subjects(store: Store) -> None:
    seed_session(store)
    assert ids(claim(store)) == ["a-create.h1", "a-delete.h1", "b-create.h1"]


def test_ordered_a_failed_earlier_delivery_still_blocks(store: Store) -> None:
    seed_session(store)
    claim(store, ordered=True)
    attempt = make_attempt("a-create.h1")
    assert finish(store, "a-create.h1", "failed", attempt=attempt, due_at=NOW + 60)
    assert finish(store, "b-create.h1", "succeeded")

    assert claim(store, now=NOW + 1, ordered=True) == []
    assert ids(claim(store, now=NOW + 60, ordered=True)) == ["a-create.h1"]


@pytest.mark.parametrize("final", FINAL_STATUSES)
def test_ordered_a_finished_earlier_delivery_does_not_block(
    store: Store, final: DeliveryStatus
) -> None:
    seed_session(store)
    claim(store, ordered=True)
    assert finish(store, "a-create.h1", final)
    assert ids(claim(store, ordered=True)) == ["a-delete.h1"]


def test_ordered_a_paused_earlier_delivery_blocks(store: Store) -> None:
    seed(store, "r1", [make_event("first", subject="A")], status="paused")
    seed(store, "r2", [make_event("second", subject="A")])
    assert claim(store, ordered=True) == []
    assert ids(claim(store)) == ["second.h1"]


def test_ordered_no_subject_is_one_subject(store: Store) -> None:
    seed(store, "r1", [make_event("n1"), make_event("n2"), make_event("s1", subject="S")])
    assert ids(claim(store, ordered=True)) == ["n1.h1", "s1.h1"]


def test_ordered_is_per_hook(store: Store) -> None:
    seed(store, "r1", [make_event("a1", subject="A"), make_event("a2", subject="A")], ("h1", "h2"))
    assert ids(claim(store, "h1", ordered=True)) == ["a1.h1"]
    assert ids(claim(store, "h2", ordered=True)) == ["a1.h2"]


def test_ordered_an_expired_lease_is_claimed_again_before_later_ones(store: Store) -> None:
    seed_session(store)
    claim(store, ordered=True, owner="w1")
    again = claim(store, now=NOW + LEASE, ordered=True, owner="w2")
    assert ids(again) == ["a-create.h1", "b-create.h1"]


# -- finishing


def test_finish_records_the_attempt_and_the_outcome(store: Store) -> None:
    (delivery_id,) = seed_pending(store, 1)
    claim(store)
    body = b"\x00\xff\xfe\x80not utf-8\r\n" + bytes(range(256))
    first = make_attempt(delivery_id, 1, status=503, body=body)

    assert finish(
        store,
        delivery_id,
        "failed",
        attempt=first,
        due_at=NOW + 5,
        error="503 Service Unavailable",
        response_status=503,
    )

    delivery, attempts = get(store, delivery_id)
    assert attempts == [first]
    assert type(attempts[0].response_body) is bytes and attempts[0].response_body == body
    assert (delivery.status, delivery.tries, delivery.attempts) == ("failed", 1, 1)
    assert (delivery.due_at, delivery.lease_until) == (NOW + 5, None)
    assert (delivery.last_status, delivery.last_error) == (503, "503 Service Unavailable")
    assert delivery.event == linked(make_event("e-h1-0"), "r-h1-0")

    claim(store, now=NOW + 5)
    second = make_attempt(delivery_id, 2, started_at=NOW + 5, status=200, body=b"")
    assert finish(store, delivery_id, "succeeded", attempt=second, response_status=200)

    delivery, attempts = get(store, delivery_id)
    assert attempts == [first, second]
    assert (delivery.status, delivery.tries, delivery.attempts) == ("succeeded", 2, 2)
    assert (delivery.due_at, delivery.last_status, delivery.last_error) == (NOW + 5, 200, None)
    assert delivery.updated_at == pytest.approx(NOW + 5.25)  # the attempt's end


def test_finish_an_attempt_that_never_got_an_answer(store: Store) -> None:
    (delivery_id,) = seed_pending(store, 1)
    claim(store)
    timeout = make_attempt(delivery_id, status=None, body=b"")
    assert finish(store, delivery_id, "failed", attempt=timeout, due_at=NOW + 5, error="timeout")
    _, attempts = get(store, delivery_id)
    assert attempts == [timeout]
    assert (attempts[0].error_class, attempts[0].response_status) == ("timeout", None)


def test_finish_without_an_attempt_counts_no_try(store: Store) -> None:
    (delivery_id,) = seed_pending(store, 1)
    claim(store)
    assert finish(store, delivery_id, "skipped")
    delivery, attempts = get(store, delivery_id)
    assert (delivery.status, delivery.tries, delivery.attempts, attempts) == ("skipped", 0, 0, [])


def test_finish_by_one_that_lost_the_claim_keeps_only_its_attempt(store: Store) -> None:
    (delivery_id,) = seed_pending(store, 1)
    claim(store, owner="w1")
    claim(store, now=NOW + LEASE, owner="w2")  # w1 was too slow: its lease ran out

    late = make_attempt(delivery_id, 1, status=200, body=b"late")
    assert not finish(store, delivery_id, "succeeded", owner="w1", attempt=late)

    delivery, attempts = get(store, delivery_id)
    assert attempts == [late]  # every attempt made is on record
    assert (delivery.status, delivery.lease_until) == ("claimed", NOW + 2 * LEASE)
    assert (delivery.tries, delivery.attempts) == (0, 1)  # counted, but not a try of w2's

    # w2 numbers its attempt from what it claimed (1); it is stored as the next one, 2.
    mine = make_attempt(delivery_id, 1, started_at=NOW + LEASE, status=200, body=b"mine")
    assert finish(store, delivery_id, "succeeded", owner="w2", attempt=mine)
    delivery, attempts = get(store, delivery_id)
    assert [(a.number, a.response_body) for a in attempts] == [(1, b"late"), (2, b"mine")]
    assert (delivery.status, delivery.tries, delivery.attempts) == ("succeeded", 1, 2)


def test_finish_of_a_delivery_that_is_not_claimed_returns_false(store: Store) -> None:
    (delivery_id,) = seed_pending(store, 1)
    assert not finish(store, delivery_id, "succeeded")
    assert status_of(store, delivery_id) == "pending"
    claim(store)
    assert finish(store, delivery_id, "succeeded")
    assert not finish(store, delivery_id, "dead")  # finished already
    assert status_of(store, delivery_id) == "succeeded"


def test_finish_of_an_unknown_delivery_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError):
        finish(store, "nope", "succeeded", attempt=make_attempt("nope"))


@pytest.mark.parametrize(
    ("outcome", "attempt", "message"),
    [
        pytest.param(Outcome("failed"), None, "due again", id="failed without due_at"),
        pytest.param(Outcome("succeeded"), make_attempt("other"), "other", id="another's"),
        pytest.param(Outcome("succeeded"), make_attempt("d", 0), "from 1", id="number 0"),
    ],
)
def test_finish_refuses_an_inconsistent_call(
    store: Store, outcome: Outcome, attempt: Attempt | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run(store.finish("d", owner="w1", outcome=outcome, attempt=attempt))


def test_finish_paused_keeps_the_delivery_for_later(store: Store) -> None:
    (delivery_id,) = seed_pending(store, 1)
    claim(store)
    assert finish(store, delivery_id, "paused", error="hook disabled: 410 Gone")
    assert status_of(store, delivery_id) == "paused"
    assert run(store.set_hook_active("h1", True, None, NOW + 1)) == 1
    assert ids(claim(store, now=NOW + 1)) == [delivery_id]


# -- hooks on and off


def test_pausing_a_hook_holds_its_unfinished_deliveries(store: Store) -> None:
    failed, pending, claimed, done = seed_pending(store, 4)
    seed(store, "r-other", [make_event("other")], ("h2",))
    claim(store)
    assert finish(store, failed, "failed", attempt=make_attempt(failed), due_at=NOW + 5)
    assert finish(store, pending, "dead")
    assert run(store.replay(now=NOW, delivery_id=pending)) == 1
    assert finish(store, done, "succeeded")

    changed = run(store.set_hook_active("h1", False, "410 Gone from the receiver", NOW + 1))

    assert changed == 2  # pending and failed; claimed stays with its dispatcher
    assert run(store.count_deliveries(hook="h1")) == {
        **ALL_ZERO,
        "paused": 2,
        "claimed": 1,
        "succeeded": 1,
    }
    assert run(store.hook_states()) == {"h1": (False, "410 Gone from the receiver", NOW + 1)}
    assert claim(store, now=NOW + 100) == []  # nor the claimed one once its lease runs out
    assert status_of(store, "other.h2") == "pending"  # another hook's
    run(store.set_hook_active("h1", True, None, NOW + 100))
    assert ids(claim(store, now=NOW + 100)) == [failed, pending, claimed]


def test_resuming_a_hook_makes_its_paused_deliveries_pending_again(store: Store) -> None:
    seed_pending(store, 2, due_at=NOW - 10)
    seed(store, "r-new", [make_event("new")], status="paused", due_at=NOW)
    assert run(store.set_hook_active("h1", False, "maintenance", NOW)) == 2

    assert run(store.set_hook_active("h1", True, None, NOW + 60)) == 3

    assert run(store.count_deliveries(hook="h1")) == {**ALL_ZERO, "pending": 3}
    assert run(store.hook_states()) == {"h1": (True, None, NOW + 60)}
    delivery, _ = get(store, "e-h1-0.h1")
    assert (delivery.due_at, delivery.updated_at) == (NOW - 10, NOW + 60)  # due_at kept
    assert ids(claim(store, now=NOW + 60)) == ["e-h1-0.h1", "e-h1-1.h1", "new.h1"]


def test_hook_states_lists_every_hook_set(store: Store) -> None:
    assert run(store.hook_states()) == {}
    assert run(store.set_hook_active("b", False, "why", NOW)) == 0
    assert run(store.set_hook_active("a", True, None, NOW + 1)) == 0
    assert run(store.hook_states()) == {"a": (True, None, NOW + 1), "b": (False, "why", NOW)}


# -- replay


def test_replay_pages_through_a_hooks_dead_deliveries(store: Store) -> None:
    delivery_ids = seed_pending(store, 5)
    seed(store, "r-other", [make_event("other")], ("h2",))
    make_dead(store, delivery_ids)
    make_dead(store, ["other.h2"], hook="h2")

    pages = []
    while replayed := run(store.replay(now=NOW + 100, hook="h1", limit=2)):
        pages.append(replayed)

    assert pages == [2, 2, 1]
    assert run(store.count_deliveries(hook="h1")) == {**ALL_ZERO, "pending": 5}
    delivery, _ = get(store, delivery_ids[0])
    assert (delivery.tries, delivery.attempts, delivery.due_at) == (0, 0, NOW + 100)
    assert (delivery.last_status, delivery.last_error) == (410, "410 Gone")  # history kept
    assert status_of(store, "other.h2") == "dead"
    assert ids(claim(store, now=NOW + 100)) == delivery_ids


def test_replay_counts_tries_from_zero_but_keeps_attempts(store: Store) -> None:
    (delivery_id,) = seed_pending(store, 1)
    claim(store)
    assert finish(store, delivery_id, "dead", attempt=make_attempt(delivery_id))
    assert run(store.replay(now=NOW + 1, hook="h1")) == 1
    delivery, attempts = get(store, delivery_id)
    assert (delivery.status, delivery.tries, delivery.attempts, len(attempts)) == (
        "pending",
        0,
        1,
        1,
    )


def test_replay_since_takes_the_deliveries_created_from_then(store: Store) -> None:
    seed(store, "r1", [make_event("old")], due_at=NOW - 100)
    seed(store, "r2", [make_event("edge")], due_at=NOW - 50)
    seed(store, "r3", [make_event("new")], due_at=NOW)
    make_dead(store, ["old.h1", "edge.h1", "new.h1"])

    assert run(store.replay(now=NOW + 1, hook="h1", since=NOW - 50)) == 2

    assert [status_of(store, f"{e}.h1") for e in ("old", "edge", "new")] == [
        "dead",
        "pending",
        "pending",
    ]


def test_replay_of_other_statuses(store: Store) -> None:
    failed, succeeded, dead = seed_pending(store, 3)
    claim(store)
    assert finish(store, failed, "failed", due_at=NOW + 3600)
    assert finish(store, succeeded, "succeeded")
    assert finish(store, dead, "dead")

    replayed = run(store.replay(now=NOW + 1, hook="h1", statuses=("failed", "succeeded")))

    assert replayed == 2
    assert [status_of(store, d) for d in (failed, succeeded, dead)] == [
        "pending",
        "pending",
        "dead",
    ]
    assert get(store, failed)[0].due_at == NOW + 1


def test_replay_paging_ends_when_replayed_ones_still_match(store: Store) -> None:
    delivery_ids = seed_pending(store, 3, due_at=NOW - 5)
    total = 0
    for _ in range(10):  # a loop that would not end if replayed ones matched again
        replayed = run(store.replay(now=NOW, hook="h1", statuses=("pending",), limit=2))
        if not replayed:
            break
        total += replayed
    assert total == 3
    assert {get(store, d)[0].due_at for d in delivery_ids} == {NOW}


def test_replay_one_delivery_by_id_whatever_its_status(store: Store) -> None:
    succeeded, claimed = seed_pending(store, 2)
    claim(store)
    assert finish(store, succeeded, "succeeded")

    assert run(store.replay(now=NOW + 1, delivery_id=succeeded)) == 1
    assert run(store.replay(now=NOW + 1, delivery_id=claimed)) == 0  # its dispatcher holds it
    assert run(store.replay(now=NOW + 1, delivery_id="unknown")) == 0

    assert status_of(store, succeeded) == "pending"
    assert status_of(store, claimed) == "claimed"


def test_replay_on_an_inactive_hook_pauses(store: Store) -> None:
    first, second = seed_pending(store, 2)
    make_dead(store, [first, second])
    run(store.set_hook_active("h1", False, "disabled by hand", NOW))

    assert run(store.replay(now=NOW + 1, hook="h1", limit=1)) == 1
    assert run(store.replay(now=NOW + 1, delivery_id=second)) == 1

    assert run(store.count_deliveries(hook="h1")) == {**ALL_ZERO, "paused": 2}
    assert run(store.set_hook_active("h1", True, None, NOW + 2)) == 2
    assert ids(claim(store, now=NOW + 2)) == [first, second]


def test_replay_without_a_hook_takes_every_hooks(store: Store) -> None:
    seed(store, "r1", [make_event("e1")], ("h1", "h2"))
    make_dead(store, ["e1.h1"], hook="h1")
    make_dead(store, ["e1.h2"], hook="h2")
    assert run(store.replay(now=NOW + 1)) == 2
    assert run(store.count_deliveries()) == {**ALL_ZERO, "pending": 2}


def test_replay_refuses_claimed_and_unknown_statuses(store: Store) -> None:
    with pytest.raises(ValueError, match="claimed"):
        run(store.replay(now=NOW, hook="h1", statuses=("dead", "claimed")))
    with pytest.raises(ValueError, match="unknown"):
        run(store.replay(now=NOW, hook="h1", statuses=("gone",)))  # type: ignore[arg-type]


# -- inspection


def seed_mixed(store: Store) -> None:
    """d1..d3 of h1 (d2 dead), d4 of h2; all of e1/e2/e3/e4 in that order."""
    seed(store, "r1", [make_event("e1")], ("h1",))
    seed(store, "r2", [make_event("e2")], ("h1",))
    seed(store, "r3", [make_event("e3")], ("h1", "h2"))
    claim(store, limit=2)
    assert finish(store, "e1.h1", "failed", due_at=NOW + 60)
    assert finish(store, "e2.h1", "dead")


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({}, ["e3.h2", "e3.h1", "e2.h1", "e1.h1"], id="all, newest first"),
        pytest.param({"hook": "h1"}, ["e3.h1", "e2.h1", "e1.h1"], id="hook"),
        pytest.param({"status": "dead"}, ["e2.h1"], id="status"),
        pytest.param({"hook": "h2", "status": "pending"}, ["e3.h2"], id="hook and status"),
        pytest.param({"event_id": "e3"}, ["e3.h2", "e3.h1"], id="event"),
        pytest.param({"limit": 1}, ["e3.h2"], id="limit"),
        pytest.param({"before": "e3.h1"}, ["e2.h1", "e1.h1"], id="before"),
        pytest.param({"before": "e3.h2", "hook": "h1"}, ["e3.h1", "e2.h1", "e1.h1"], id="b+h"),
        pytest.param({"before": "unknown"}, [], id="before an unknown id"),
    ],
)
def test_list_deliveries_filters(
    store: Store, filters: dict[str, Any], expected: list[str]
) -> None:
    seed_mixed(store)
    listed = run(store.list_deliveries(**filters))
    assert ids(listed) == expected
    assert all(d.event is None for d in listed)


def test_paging_walks_every_delivery_once(store: Store) -> None:
    expected = seed_pending(store, 7)
    seen: list[str] = []
    before: str | None = None
    while page := run(store.list_deliveries(limit=3, before=before)):
        seen += ids(page)
        before = page[-1].id
    assert seen == list(reversed(expected))


def test_count_deliveries(store: Store) -> None:
    assert run(store.count_deliveries()) == ALL_ZERO
    seed_mixed(store)
    assert run(store.count_deliveries()) == {**ALL_ZERO, "pending": 2, "failed": 1, "dead": 1}
    assert run(store.count_deliveries(hook="h2")) == {**ALL_ZERO, "pending": 1}
    assert run(store.count_deliveries(status="pending")) == {"pending": 2}
    assert run(store.count_deliveries(hook="h2", status="dead")) == {"dead": 0}


def test_get_delivery_unknown_is_none(store: Store) -> None:
    assert run(store.get_delivery("nope")) is None


def test_get_delivery_has_its_event_and_attempts_oldest_first(store: Store) -> None:
    event = make_event("e1", subject="viewer", data={"score": 75, "name": "Zoë"})
    seed(store, "r1", [event])
    attempts = []
    for number in (1, 2, 3):
        claim(store, now=NOW + number)
        attempt = make_attempt("e1.h1", number, started_at=NOW + number, body=b"%d" % number)
        attempts.append(attempt)
        assert finish(store, "e1.h1", "failed", attempt=attempt, due_at=NOW + number + 1)

    delivery, stored = get(store, "e1.h1")

    assert stored == attempts
    assert delivery.event == linked(event, "r1")
    assert dataclasses.replace(delivery, event=None) in run(store.list_deliveries())


def test_deliveries_survive_close_and_reopen(new_store: StoreFactory) -> None:
    async def write() -> None:
        store = new_store()
        await store.open()
        try:
            events = [make_event("e1")]
            await store.ingest(make_request("r1"), events, new_deliveries(events))
            await store.claim_due(hook="h1", now=NOW, limit=1, lease_seconds=LEASE, owner="w")
            attempt = make_attempt("e1.h1", body=b"\x00kept")
            outcome = Outcome("failed", due_at=NOW + 5, response_status=500)
            await store.finish("e1.h1", owner="w", outcome=outcome, attempt=attempt)
            await store.set_hook_active("h1", False, "off", NOW)
        finally:
            await store.close()

    async def read() -> tuple[tuple[Delivery, list[Attempt]] | None, dict[str, Any]]:
        store = new_store()
        await store.open()
        try:
            return await store.get_delivery("e1.h1"), await store.hook_states()
        finally:
            await store.close()

    run(write())
    found, states = run(read())
    assert found is not None
    delivery, attempts = found
    assert (delivery.status, delivery.tries) == ("paused", 1)
    assert [a.response_body for a in attempts] == [b"\x00kept"]
    assert states == {"h1": (False, "off", NOW)}


# -- SQLite only


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "relayhook.db")
    run(store.open())
    yield store
    run(store.close())


def gmetri_batch(size: int, hooks: Sequence[str]) -> tuple[list[Event], list[NewDelivery]]:
    events = [
        make_event(f"row-{i}", relay="gmetri", subject=f"viewer-{i % 50}", data={"score": i})
        for i in range(size)
    ]
    return events, new_deliveries(events, hooks)


def test_sqlite_a_gmetri_batch_routes_to_every_hook(sqlite_store: SQLiteStore) -> None:
    """The shape of the routing benchmark (timings are measured outside the tests)."""
    events, deliveries = gmetri_batch(500, ("zapier", "crm"))

    result = run(sqlite_store.ingest(make_request("r1", relay="gmetri"), events, deliveries))

    assert result == IngestResult(accepted=500, duplicates=0, deliveries=1000)
    assert run(sqlite_store.count_deliveries(hook="zapier")) == {**ALL_ZERO, "pending": 500}
    assert len(claim(sqlite_store, "crm", limit=1000)) == 500
    assert len(claim(sqlite_store, "zapier", limit=1000, ordered=True)) == 50  # one per viewer


def test_sqlite_claims_from_two_stores_on_one_file_are_disjoint(tmp_path: Path) -> None:
    """Two processes (the server and the CLI) share a file: BEGIN IMMEDIATE keeps claims apart."""
    path = tmp_path / "relayhook.db"

    async def race() -> list[list[Delivery]]:
        first, second = SQLiteStore(path), SQLiteStore(path)
        await first.open()
        await second.open()
        try:
            for i in range(60):
                events = [make_event(f"e{i}")]
                await first.ingest(make_request(f"r{i}"), events, new_deliveries(events))
            calls = [
                s.claim_due(hook="h1", now=NOW, limit=4, lease_seconds=LEASE, owner=f"w{n}")
                for n in range(10)
                for s in (first, second)
            ]
            return await asyncio.gather(*calls)
        finally:
            await first.close()
            await second.close()

    claimed = [d.id for batch in run(race()) for d in batch]
    assert len(claimed) == len(set(claimed)) == 60


def query_plan(store: SQLiteStore, sql: str, params: dict[str, Any]) -> str:
    with contextlib.closing(sqlite3.connect(store.path)) as conn:
        return "\n".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


def test_sqlite_claims_the_earliest_due_first(sqlite_store: SQLiteStore) -> None:
    """A retry due later waits behind deliveries stored after it but due before it."""
    (retried,) = seed_pending(sqlite_store, 1)
    claim(sqlite_store)
    assert finish(sqlite_store, retried, "failed", attempt=make_attempt(retried), due_at=NOW + 5)
    seed(sqlite_store, "r-new", [make_event("new")], due_at=NOW + 1)
    assert ids(claim(sqlite_store, now=NOW + 10, limit=1)) == ["new.h1"]
    assert ids(claim(sqlite_store, now=NOW + 10)) == [retried]


def test_sqlite_claims_read_the_partial_indexes(sqlite_store: SQLiteStore) -> None:
    """A partial index is used only when the query repeats its condition: keep them in step."""
    from relayhook.store.sqlite import deliveries as sql

    params = {"hook": "h", "now": NOW, "limit": 10, "lease_until": NOW, "owner": "w"}
    plain = query_plan(sqlite_store, sql.CLAIM_ANY, params)
    ordered = query_plan(sqlite_store, sql.CLAIM_ORDERED, params)

    for plan in (plain, ordered):
        # Two range seeks, each in its index's order (no sort of the backlog, which may be a
        # million deliveries waiting for a receiver that is down); only the <= 2 x limit rows
        # they give are sorted together.
        assert "INDEX deliveries_due (hook=? AND due_at<?)" in plan
        assert "INDEX deliveries_leased (hook=? AND lease_until<?)" in plan
        assert plan.count("TEMP B-TREE") == 1 and plan.endswith("USE TEMP B-TREE FOR ORDER BY")
    assert "INDEX deliveries_unfinished (hook=? AND subject=? AND seq<?)" in ordered


# -- hook definitions


def test_saved_hooks_replace_those_of_the_same_source(store: Store) -> None:
    run(store.save_hooks("config", {"a": {"url": "https://a"}, "b": {"url": "https://b"}}, NOW))
    run(store.save_hooks("ui", {"c": {"url": "https://c"}}, NOW))
    run(store.save_hooks("config", {"b": {"url": "https://b2"}}, NOW + 1))
    assert run(store.list_hooks()) == [
        StoredHook("b", "config", {"url": "https://b2"}, None, NOW + 1),
        StoredHook("c", "ui", {"url": "https://c"}, None, NOW),
    ]
