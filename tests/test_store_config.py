"""The live-configuration part of the store contract: relays and hooks as data, the version
counter, and the SQLite migration from version 1. Runs on every engine of conftest.ENGINES."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from test_store import make_event, make_request, run

from relayhook.store import NewDelivery, SQLiteStore, Store, StoredHook, StoredRelay
from relayhook.store.sqlite import SCHEMA_VERSION

NOW = 1_700_000_000.0
FIXTURES = Path(__file__).parent / "fixtures"


def relay(name: str = "shop", sealed: str = "sealed-1") -> StoredRelay:
    return StoredRelay(name, "generic", "api", sealed, NOW, NOW)


def hook(name: str = "crm", url: str = "https://crm.example/in") -> StoredHook:
    return StoredHook(name, "api", {"name": name, "events": ["*"], "url": url}, "s", NOW)


def test_every_change_moves_the_config_version(store: Store) -> None:
    seen = [run(store.config_version())]
    changes = [
        store.create_relay(relay()),
        store.update_relay("shop", sealed="sealed-2", at=NOW + 1),
        store.put_hook(hook(), create=True),
        store.put_hook(hook(url="https://crm.example/v2"), create=False),
        store.set_hook_active("crm", False, "paused by a person", NOW),
        store.save_hooks("config", {"cfg": {"name": "cfg"}}, NOW),
        store.delete_hook("crm", at=NOW),
        store.delete_relay("shop"),
    ]
    for change in changes:
        run(change)
        seen.append(run(store.config_version()))
    assert seen == sorted(set(seen)), "every change moves the version forward, never back"


def test_failed_changes_leave_the_version_alone(store: Store) -> None:
    run(store.create_relay(relay()))
    run(store.put_hook(hook(), create=True))
    before = run(store.config_version())
    assert run(store.create_relay(relay(sealed="other"))) is False  # name taken
    assert run(store.update_relay("nope", sealed="x", at=NOW)) is False
    assert run(store.delete_relay("nope")) is False
    assert run(store.put_hook(hook(), create=True)) is False
    assert run(store.put_hook(hook("nope"), create=False)) is False
    assert run(store.delete_hook("nope", at=NOW)) is None
    assert run(store.config_version()) == before


def test_relays_are_kept_sealed_and_listed_by_name(store: Store) -> None:
    run(store.create_relay(relay("b", "sealed-b")))
    run(store.create_relay(relay("a", "sealed-a")))
    run(store.update_relay("b", sealed="sealed-b2", at=NOW + 5))
    assert run(store.list_relays()) == [
        relay("a", "sealed-a"),
        StoredRelay("b", "generic", "api", "sealed-b2", NOW, NOW + 5),
    ]
    assert run(store.delete_relay("a")) is True
    assert [r.name for r in run(store.list_relays())] == ["b"]


def test_a_hook_replaced_keeps_its_source_and_a_config_hook_is_not_replaced(store: Store) -> None:
    run(store.save_hooks("config", {"cfg": {"name": "cfg"}}, NOW))
    run(store.put_hook(hook(), create=True))
    assert run(store.put_hook(hook(url="https://crm.example/v2"), create=False)) is True
    assert run(store.put_hook(StoredHook("cfg", "api", {}, None, NOW), create=False)) is False
    by_name = {h.name: h for h in run(store.list_hooks())}
    assert by_name["crm"].spec["url"] == "https://crm.example/v2"
    assert by_name["crm"].source == "api" and by_name["crm"].sealed == "s"
    assert by_name["cfg"].source == "config" and by_name["cfg"].sealed is None


def test_deleting_a_hook_cancels_what_it_had_not_sent_and_keeps_the_history(store: Store) -> None:
    run(store.put_hook(hook(), create=True))
    events = [make_event(f"e{n}") for n in range(3)]
    deliveries = [
        NewDelivery(f"d{n}", e.id, "crm", None, "pending", NOW) for n, e in enumerate(events)
    ]
    run(store.ingest(make_request("r1"), events, deliveries))
    run(store.set_hook_active("crm", False, "a person", NOW))
    assert run(store.delete_hook("crm", at=NOW + 1)) == 3
    counts = run(store.count_deliveries(hook="crm"))
    assert {status: n for status, n in counts.items() if n} == {"cancelled": 3}
    assert "crm" not in run(store.hook_states())
    assert run(store.list_hooks()) == []


def test_sqlite_migrates_a_version_1_file_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "relayhook.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript((FIXTURES / "schema_v1.sql").read_text() + "PRAGMA user_version = 1;")
        conn.execute(
            "INSERT INTO requests (id, relay, received_at, method, query, headers, body,"
            " status) VALUES ('r1', 'shop', '2026-01-01T00:00:00Z', 'POST', '', '[]',"
            " x'7b7d', 'accepted')"
        )
        conn.execute(
            "INSERT INTO events (id, request_id, relay, type, source, time, data)"
            " VALUES ('e1', 'r1', 'shop', 't', 's', '2026-01-01T00:00:00Z', '{}')"
        )
        conn.execute(
            "INSERT INTO deliveries (id, event_id, hook, relay, status, due_at,"
            " created_at, updated_at) VALUES ('d1', 'e1', 'crm', 'shop', 'dead', 1, 1, 1)"
        )
        conn.execute(
            "INSERT INTO attempts VALUES ('d1', 1, 1, 2.5, '{}', 500, '[]', x'', NULL, NULL)"
        )
        conn.execute("INSERT INTO hooks VALUES ('crm', 'config', '{}', 1)")
        conn.commit()
    store = SQLiteStore(path)
    run(store.open())
    try:
        assert run(store.count_deliveries(hook="crm"))["dead"] == 1
        found = run(store.get_delivery("d1"))
        assert found is not None and [a.response_status for a in found[1]] == [500]
        assert run(store.list_hooks()) == [StoredHook("crm", "config", {}, None, 1)]
        run(store.put_hook(hook(), create=True))
        assert run(store.delete_hook("crm", at=NOW)) == 0  # the dead one is final: kept as is
        assert run(store.create_relay(relay())) is True
    finally:
        run(store.close())
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries'"
            )
        }
        assert {"deliveries_claimable", "deliveries_unfinished"} <= indexes


@pytest.mark.parametrize("status", ["succeeded", "dead", "skipped"])
def test_a_deleted_hooks_finished_deliveries_stay_as_they_were(store: Store, status: str) -> None:
    run(store.put_hook(hook(), create=True))
    event = make_event("e1")
    run(
        store.ingest(
            make_request("r1"), [event], [NewDelivery("d1", "e1", "crm", None, "pending", NOW)]
        )
    )
    run(store.replay(now=NOW, delivery_id="d1"))  # make it due, then finish it as `status`
    claimed = run(store.claim_due(hook="crm", now=NOW, limit=1, lease_seconds=30, owner="w"))
    from relayhook.store import Outcome

    run(
        store.finish(
            claimed[0].id,
            owner="w",
            outcome=Outcome(status),  # type: ignore[arg-type]
            attempt=None,
        )
    )
    assert run(store.delete_hook("crm", at=NOW)) == 0
    counts = run(store.count_deliveries(hook="crm"))
    assert {status: n for status, n in counts.items() if n} == {status: 1}
