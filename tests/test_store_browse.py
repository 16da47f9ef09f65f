"""What the console and the API browse with, run against every engine (today SQLite): filtered
history, activity per hour, body search, the console's own values. An engine joins through the
`store` fixture of conftest."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from test_store import make_event, make_request, run
from test_store_deliveries import NOW, claim, make_attempt, new_deliveries, seed

from relayhook.store import DeliveryFilter, Outcome, SQLiteStore, Store
from relayhook.store.sqlite import SCHEMA_VERSION, schema


def finish(store: Store, delivery_id: str, status: int, outcome: str = "failed") -> None:
    claimed = claim(store, "h1", limit=1000)
    assert delivery_id in [d.id for d in claimed]
    run(
        store.finish(
            delivery_id,
            owner="w1",
            outcome=Outcome(outcome, due_at=NOW + 60, response_status=status),  # type: ignore[arg-type]
            attempt=make_attempt(delivery_id, status=status),
        )
    )
    for other in claimed:  # give the others back
        if other.id != delivery_id:
            run(
                store.finish(
                    other.id, owner="w1", outcome=Outcome("failed", due_at=NOW), attempt=None
                )
            )


def found(store: Store, **where: object) -> list[str]:
    return [d.id for d in run(store.find_deliveries(DeliveryFilter(**where)))]  # type: ignore[arg-type]


def test_find_deliveries_filters_by_status_code_text_and_request(store: Store) -> None:
    seed(store, "r1", [make_event("e1", subject="amit@gmetri.com", data={"order": "1234"})])
    seed(store, "r2", [make_event("e2", subject="mitul@gmetri.com", type="rule")])
    seed(store, "r3", [make_event("e3")], ("h2",))
    finish(store, "e1.h1", 500)
    finish(store, "e2.h1", 404, "dead")
    assert found(store, hook="h1") == ["e2.h1", "e1.h1"]  # newest first
    assert found(store, hook="h1", statuses=("failed", "dead")) == ["e2.h1", "e1.h1"]
    assert found(store, hook="h1", statuses=("dead",)) == ["e2.h1"]
    assert found(store, min_code=500, max_code=599) == ["e1.h1"]
    assert found(store, text="1234") == ["e1.h1"]  # inside data
    assert found(store, text="AMIT@") == ["e1.h1"]  # any case
    assert found(store, text="mitul") == ["e2.h1"]  # the subject
    assert found(store, text="50%") == []  # % is a character, not a wildcard
    assert found(store, request_id="r3") == ["e3.h2"]
    assert found(store, event_id="e2") == ["e2.h1"]
    assert found(store, since=NOW + 1) == []
    assert found(store, until=NOW + 1, hook="h2") == ["e3.h2"]
    assert run(store.count_found_deliveries(DeliveryFilter(hook="h1"))) == 2
    page = run(store.find_deliveries(DeliveryFilter(), limit=1, before="e3.h2"))
    assert [d.id for d in page] == ["e2.h1"] and page[0].event is not None


def test_activity_counts_per_hour_and_status(store: Store) -> None:
    events = [make_event(f"e{i}") for i in range(3)]
    run(store.ingest(make_request("r1"), events[:2], new_deliveries(events[:2], due_at=NOW + 10)))
    run(store.ingest(make_request("r2"), events[2:], new_deliveries(events[2:], due_at=NOW + 7200)))
    rows = run(store.delivery_activity(since=NOW, bucket_seconds=3600))
    assert sorted(rows) == [("h1", 0, "pending", 2), ("h1", 2, "pending", 1)]
    assert run(store.delivery_activity(since=NOW + 3600, bucket_seconds=3600)) == [
        ("h1", 1, "pending", 1)
    ]
    # make_request's received_at is 2024-05-01T12:00:00.000Z
    since = 1_714_564_800.0 - 1800
    run(store.ingest(make_request("r3", status="rejected", error="bad"), ()))
    assert sorted(run(store.request_activity(since=since, bucket_seconds=3600))) == [
        ("github", 0, "accepted", 2),
        ("github", 0, "rejected", 1),
    ]


def test_list_requests_searches_inside_bodies(store: Store) -> None:
    run(store.ingest(make_request("r1", body=b'{"order": 1234}'), ()))
    run(store.ingest(make_request("r2", body=b'{"order": 99}'), ()))
    assert [r.id for r in run(store.list_requests(text='"ORDER": 1234'))] == ["r1"]
    assert [r.id for r in run(store.list_requests(text="order"))] == ["r2", "r1"]


def test_admin_values_first_writer_wins_unless_replacing(store: Store) -> None:
    assert run(store.get_admin_value("password_hash")) is None
    assert run(store.set_admin_value("password_hash", "a", NOW, replace=False))
    assert not run(store.set_admin_value("password_hash", "b", NOW, replace=False))
    assert run(store.get_admin_value("password_hash")) == "a"
    assert run(store.set_admin_value("password_hash", "c", NOW))
    assert run(store.get_admin_value("password_hash")) == "c"


def test_sqlite_migrates_a_version_2_file(tmp_path: Path) -> None:
    path = tmp_path / "relayhook.db"
    fixture = Path(__file__).parent / "fixtures" / "schema_v1.sql"
    with contextlib.closing(sqlite3.connect(path)) as conn:  # a real version 1 file ...
        conn.executescript(fixture.read_text() + "PRAGMA user_version = 1;")
    # ... as version 2 left it
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        schema.migrate(conn, path, apply=True, upto=2)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    again = SQLiteStore(path)
    run(again.open())
    try:
        assert run(again.set_admin_value("session_key", "k", NOW))
    finally:
        run(again.close())
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.parametrize("text", ["_", "\\"])
def test_like_wildcards_are_plain_characters(store: Store, text: str) -> None:
    run(store.ingest(make_request("r1", body=b'{"a": 1}'), ()))
    assert run(store.list_requests(text=text)) == []
