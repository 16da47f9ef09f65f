"""`[alerts] disable_after` in the store contract, on every engine of conftest.ENGINES: a hook's
dead deliveries in a row are counted in `finish` (by every process together, across restarts);
one before the threshold opens the warning problem, at it the hook is switched off; a success or
switching the hook on starts the count again."""

from __future__ import annotations

import asyncio

from conftest import StoreFactory
from test_store import make_event, make_request, run
from test_store_problems import attempt

from relayhook.core.records import Outcome
from relayhook.store import NewDelivery, Store

NOW = 1_700_000_000.0
DEAD = Outcome("dead", response_status=500)
WARNING = "will deactivate: 2 dead in a row"
DEACTIVATED = "deactivated: 3 dead in a row"


def seed(store: Store, hook: str, count: int, tag: str = "") -> list[str]:
    events = [make_event(f"e{hook}{tag}{i}") for i in range(count)]
    deliveries = [
        NewDelivery(f"d{hook}{tag}{i}", e.id, hook, None, "pending", NOW)
        for i, e in enumerate(events)
    ]
    run(store.ingest(make_request(f"r{hook}{tag}"), events, deliveries))
    return [d.id for d in deliveries]


async def end(
    store: Store, hook: str, outcome: Outcome, disable_after: int = 3, owner: str = "w"
) -> str:
    """Claim one due delivery of `hook` and finish it with `outcome`."""
    (claimed,) = await store.claim_due(
        hook=hook, now=NOW + 1e6, limit=1, lease_seconds=30, owner=owner
    )
    status = outcome.response_status
    await store.finish(
        claimed.id,
        owner=owner,
        outcome=outcome,
        attempt=attempt(claimed.id, status),
        disable_after=disable_after,
    )
    return claimed.id


def streak_problems(store: Store, hook: str = "crm") -> dict[str, str]:
    """The hook's problems of `disable_after` (any status): signature -> status."""
    found = run(store.list_problems(hook=hook, statuses=("open", "acknowledged", "resolved")))
    return {p.signature: p.status for p in found if "in a row" in p.signature}


def state(store: Store, hook: str = "crm") -> tuple[bool, str | None] | None:
    found = run(store.hook_states()).get(hook)
    return None if found is None else found[:2]


def test_one_dead_delivery_before_the_threshold_warns_and_at_it_the_hook_is_switched_off(
    store: Store,
) -> None:
    seed(store, "crm", 5)
    version = run(store.config_version())
    run(end(store, "crm", DEAD))
    assert streak_problems(store) == {}
    run(end(store, "crm", DEAD))
    assert streak_problems(store) == {WARNING: "open"}
    assert state(store) is None  # still active: nothing switched it
    run(end(store, "crm", DEAD))
    assert streak_problems(store) == {WARNING: "open", DEACTIVATED: "open"}
    assert state(store) == (False, "deactivated after 3 dead deliveries in a row")
    assert run(store.config_version()) > version  # every process reads the switch
    # Its other deliveries wait, paused, as after a 410 or a person's switch.
    assert (
        run(store.claim_due(hook="crm", now=NOW + 1e6, limit=5, lease_seconds=30, owner="w")) == []
    )
    assert run(store.count_deliveries(hook="crm", status="paused")) == {"paused": 2}
    (deactivated,) = [p for p in run(store.list_problems(hook="crm")) if p.signature == DEACTIVATED]
    assert deactivated.error == "status 500" and not deactivated.notified  # its cause


def test_a_success_starts_the_count_again_and_a_new_crossing_warns_again(store: Store) -> None:
    seed(store, "crm", 6)
    run(end(store, "crm", DEAD))
    run(end(store, "crm", DEAD))
    assert streak_problems(store) == {WARNING: "open"}
    run(end(store, "crm", Outcome("succeeded", response_status=200)))
    assert streak_problems(store) == {WARNING: "resolved"}
    run(end(store, "crm", DEAD))
    assert set(streak_problems(store).values()) == {"resolved"}  # one in a row: nothing yet
    run(end(store, "crm", DEAD))
    warnings = [p for p in run(store.list_problems(hook="crm")) if p.signature == WARNING]
    assert len(warnings) == 1 and warnings[0].status == "open"  # a new one: alerted anew
    assert state(store) is None


def test_switching_the_hook_on_starts_the_count_again_and_resolves_its_problems(
    store: Store,
) -> None:
    seed(store, "crm", 3)
    for _ in range(3):
        run(end(store, "crm", DEAD))
    assert state(store) == (False, "deactivated after 3 dead deliveries in a row")
    assert run(store.set_hook_active("crm", True, None, NOW + 10)) == 0  # nothing was paused
    assert streak_problems(store) == {WARNING: "resolved", DEACTIVATED: "resolved"}
    failing = [p for p in run(store.list_problems(hook="crm")) if p.signature == "status 500"]
    assert len(failing) == 1  # the cause itself stays open until a success
    seed(store, "crm", 2, tag="b")
    run(end(store, "crm", DEAD))
    assert state(store) == (True, None)
    run(end(store, "crm", DEAD))
    assert state(store) == (True, None)  # two in a row since it was switched on: a warning
    assert [
        p.signature for p in run(store.list_problems(hook="crm")) if "in a row" in p.signature
    ] == [WARNING]


def test_the_count_survives_a_restart(new_store: StoreFactory) -> None:
    store = new_store()
    run(store.open())
    seed(store, "crm", 3)
    run(end(store, "crm", DEAD))
    run(end(store, "crm", DEAD))
    run(store.close())
    again = new_store()
    run(again.open())
    try:
        run(end(again, "crm", DEAD))
        assert state(again) == (False, "deactivated after 3 dead deliveries in a row")
    finally:
        run(again.close())


def test_processes_finishing_at_once_count_every_dead_delivery_once(
    new_store: StoreFactory,
) -> None:
    """Two stores over one database stand for two worker processes: of six dead deliveries
    finished at once, exactly the second warns and the third switches the hook off."""
    first, second = new_store(), new_store()
    run(first.open())
    run(second.open())
    try:
        seed(first, "crm", 6)
        claimed = run(
            first.claim_due(hook="crm", now=NOW + 1e6, limit=6, lease_seconds=30, owner="w")
        )
        assert len(claimed) == 6

        async def finish_all() -> None:
            await asyncio.gather(
                *(
                    (first if n % 2 else second).finish(
                        delivery.id,
                        owner="w",
                        outcome=DEAD,
                        attempt=attempt(delivery.id, 500),
                        disable_after=3,
                    )
                    for n, delivery in enumerate(claimed)
                )
            )

        run(finish_all())
        found = run(second.list_problems(hook="crm"))
        assert sorted(p.signature for p in found) == [DEACTIVATED, "status 500", WARNING]
        assert state(first) == (False, "deactivated after 3 dead deliveries in a row")
    finally:
        run(second.close())
        run(first.close())


def test_without_a_threshold_nothing_is_switched_off(store: Store) -> None:
    seed(store, "crm", 4)
    for _ in range(4):
        run(end(store, "crm", DEAD, disable_after=0))
    assert streak_problems(store) == {} and state(store) is None


def test_a_threshold_of_one_switches_off_at_the_first_dead_delivery_without_warning(
    store: Store,
) -> None:
    seed(store, "crm", 2)
    seed(store, "zap", 1)
    run(
        end(store, "zap", Outcome("failed", due_at=NOW + 2e6, response_status=500), disable_after=1)
    )
    assert state(store, "zap") is None  # failed, not dead: retried, not counted
    run(end(store, "crm", DEAD, disable_after=1))
    assert streak_problems(store) == {"deactivated: 1 dead in a row": "open"}
    assert state(store) == (False, "deactivated after 1 dead deliveries in a row")


def test_an_inactive_hook_is_not_switched_off_again(store: Store) -> None:
    seed(store, "crm", 3)
    claimed = run(store.claim_due(hook="crm", now=NOW + 1e6, limit=3, lease_seconds=30, owner="w"))
    run(store.set_hook_active("crm", False, "switched off by a person", NOW))
    for delivery in claimed:  # in flight when it was switched off
        run(
            store.finish(
                delivery.id,
                owner="w",
                outcome=DEAD,
                attempt=attempt(delivery.id, 500),
                disable_after=2,
            )
        )
    assert streak_problems(store) == {}
    assert state(store) == (False, "switched off by a person")
