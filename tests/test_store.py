"""The store contract, run against every engine (SQLite, PostgreSQL), then SQLite's own promises.

An engine joins the contract suite by adding a param to `ENGINES`. Tests are plain functions
that drive the async store through `run` (one event loop per test), so no plugin is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import StoreFactory, run
from servers import wait_until

from relayhook.core.events import Event
from relayhook.store import (
    IngestResult,
    RequestRecord,
    RequestStatus,
    SQLiteStore,
    Store,
    StoreError,
    StoreUnavailableError,
    base,
    open_store,
)
from relayhook.store.sqlite import SCHEMA_VERSION, schema
from relayhook.store.sqlite.threads import GroupCommitWriter

T = TypeVar("T")

TIME = "2024-05-01T12:00:00.000Z"


def make_request(
    id: str,
    *,
    relay: str = "github",
    status: RequestStatus = "accepted",
    error: str | None = None,
    body: bytes = b'{"ok":true}',
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),),
) -> RequestRecord:
    return RequestRecord(
        id=id,
        relay=relay,
        received_at=TIME,
        method="POST",
        query="a=1&b=2",
        headers=headers,
        body=body,
        status=status,
        error=error,
    )


def make_event(
    id: str,
    *,
    relay: str = "github",
    type: str = "push",
    subject: str | None = None,
    source: str = "https://github.com",
    data: Any = None,
) -> Event:
    data = {"event": id} if data is None else data
    return Event(
        id=id, source=source, type=type, subject=subject, time=TIME, data=data, relay=relay
    )


def linked(event: Event, request_id: str) -> Event:
    """The event as reads return it: with the request that produced it."""
    return dataclasses.replace(event, request_id=request_id)


@contextlib.asynccontextmanager
async def opened(new_store: StoreFactory) -> AsyncIterator[Store]:
    store = new_store()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# -- the contract: every engine


ROLES = [
    base.Lifecycle,
    base.IngestStore,
    base.DeliveryStore,
    base.ConfigStore,
    base.ConsoleStore,
    base.HistoryStore,
    base.OperationsStore,
    base.WatchStore,
    base.PeopleStore,
    base.MaintenanceStore,
]


def methods_of(protocol: type) -> set[str]:
    return {
        name
        for name, value in vars(protocol).items()
        if callable(value) and not name.startswith("_")
    }


def test_the_roles_share_out_the_whole_contract_and_both_engines_implement_it() -> None:
    from relayhook.store.postgres import PostgresStore

    owned = [name for role in ROLES for name in methods_of(role)]
    assert len(owned) == len(set(owned)), "a method belongs to one role"
    assert set(owned) == {name for cls in base.Store.__mro__ for name in methods_of(cls)}
    for engine in (SQLiteStore, PostgresStore):
        missing = [name for name in owned if not callable(getattr(engine, name, None))]
        assert not missing, (engine.__name__, missing)


def test_ingest_then_read_back(store: Store) -> None:
    headers = (("x-hub-signature", "[redacted]"), ("x-tag", "1"), ("x-tag", "2"))
    first = make_request("r1", headers=headers)
    e1 = make_event("e1", data={"text": "héllo ✓", "list": [1, 2.5, None, True], "empty": {}})
    e2 = make_event("e2", subject="repo/1", data=[])
    e3 = make_event("e3", data="just a string")

    assert run(store.ingest(first, [e1, e2])) == IngestResult(accepted=2, duplicates=0)
    assert run(store.ingest(make_request("r2"), [e3])) == IngestResult(accepted=1, duplicates=0)

    requests = run(store.list_requests())
    assert [r.id for r in requests] == ["r2", "r1"]
    assert requests[1] == dataclasses.replace(first, event_ids=("e1", "e2"))
    assert requests[0].event_ids == ("e3",)
    assert run(store.get_request("r1")) == requests[1]
    assert run(store.list_events()) == [linked(e3, "r2"), linked(e2, "r1"), linked(e1, "r1")]


def test_get_request_unknown_is_none(store: Store) -> None:
    assert run(store.get_request("nope")) is None


def seed_requests(store: Store) -> None:
    run(store.ingest(make_request("r1"), []))
    run(store.ingest(make_request("r2", relay="stripe", status="rejected", error="bad"), []))
    run(store.ingest(make_request("r3", status="rejected", error="bad"), []))
    run(store.ingest(make_request("r4"), []))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({}, ["r4", "r3", "r2", "r1"], id="all, newest first"),
        pytest.param({"relay": "github"}, ["r4", "r3", "r1"], id="relay"),
        pytest.param({"status": "rejected"}, ["r3", "r2"], id="status"),
        pytest.param({"relay": "github", "status": "accepted"}, ["r4", "r1"], id="both"),
        pytest.param({"limit": 2}, ["r4", "r3"], id="limit"),
        pytest.param({"before": "r3"}, ["r2", "r1"], id="before"),
        pytest.param({"before": "r3", "relay": "github"}, ["r1"], id="before with a filter"),
        pytest.param({"before": "r1"}, [], id="before the oldest"),
        pytest.param({"before": "unknown"}, [], id="before an unknown id"),
        pytest.param({"relay": "gitlab"}, [], id="no match"),
    ],
)
def test_list_requests_filters(store: Store, filters: dict[str, Any], expected: list[str]) -> None:
    seed_requests(store)
    assert [r.id for r in run(store.list_requests(**filters))] == expected


def seed_events(store: Store) -> None:
    github_push = make_event("e1", subject="a")
    github_issues = make_event("e2", type="issues", subject="b")
    run(store.ingest(make_request("r1"), [github_push, github_issues]))
    stripe = make_event("e3", relay="stripe", source="https://stripe.com", subject="a")
    run(store.ingest(make_request("r2", relay="stripe"), [stripe]))
    run(store.ingest(make_request("r3"), [make_event("e4", subject="b")]))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({}, ["e4", "e3", "e2", "e1"], id="all, newest first"),
        pytest.param({"relay": "github"}, ["e4", "e2", "e1"], id="relay"),
        pytest.param({"type": "push"}, ["e4", "e3", "e1"], id="type"),
        pytest.param({"subject": "a"}, ["e3", "e1"], id="subject"),
        pytest.param({"request_id": "r1"}, ["e2", "e1"], id="request"),
        pytest.param({"relay": "github", "type": "push"}, ["e4", "e1"], id="relay and type"),
        pytest.param({"limit": 1}, ["e4"], id="limit"),
        pytest.param({"before": "e3"}, ["e2", "e1"], id="before"),
        pytest.param({"before": "e3", "type": "push"}, ["e1"], id="before with a filter"),
        pytest.param({"before": "unknown"}, [], id="before an unknown id"),
    ],
)
def test_list_events_filters(store: Store, filters: dict[str, Any], expected: list[str]) -> None:
    seed_events(store)
    assert [e.id for e in run(store.list_events(**filters))] == expected


def test_paging_with_before_walks_every_request_once(store: Store) -> None:
    for i in range(7):
        run(store.ingest(make_request(f"r{i}"), [make_event(f"e{i}")]))
    seen: list[str] = []
    before: str | None = None
    while page := run(store.list_requests(limit=3, before=before)):
        seen += [r.id for r in page]
        before = page[-1].id
    assert seen == [f"r{i}" for i in reversed(range(7))]


def test_count_events(store: Store) -> None:
    assert run(store.count_events()) == 0
    seed_events(store)
    assert run(store.count_events()) == 4
    assert run(store.count_events(relay="github")) == 3
    assert run(store.count_events(source="https://stripe.com")) == 1
    assert run(store.count_events(relay="github", source="https://stripe.com")) == 0


def test_event_type_counts(store: Store) -> None:
    assert run(store.event_type_counts()) == {}
    seed_events(store)
    assert run(store.event_type_counts()) == {"push": 3, "issues": 1}


def test_duplicate_event_across_requests_stays_with_the_first(store: Store) -> None:
    original = make_event("e1", data={"first": True})
    run(store.ingest(make_request("r1"), [original]))

    again = make_event("e1", data={"first": False})
    assert run(store.ingest(make_request("r2"), [again])) == IngestResult(accepted=0, duplicates=1)

    assert run(store.list_events()) == [linked(original, "r1")]
    second = run(store.get_request("r2"))
    # The resend points at the event it repeated, stored by the first request.
    assert second is not None and second.event_ids == ("e1",)
    assert second.duplicate_ids == ("e1",)
    first = run(store.get_request("r1"))
    assert first is not None and (first.event_ids, first.duplicate_ids) == (("e1",), ())


def test_a_request_lists_new_and_repeated_events_in_its_order(store: Store) -> None:
    run(store.ingest(make_request("r1"), [make_event("e1")]))
    run(store.ingest(make_request("r2"), [make_event("e2"), make_event("e1"), make_event("e2")]))
    pages = run(store.list_requests())
    assert [(r.id, r.event_ids, r.duplicate_ids) for r in pages] == [
        ("r2", ("e2", "e1"), ("e1",)),
        ("r1", ("e1",), ()),
    ]


def test_remap_records_the_events_a_request_now_maps_to(store: Store) -> None:
    run(store.ingest(make_request("r1"), [make_event("e1")]))
    run(store.ingest(make_request("r2", status="rejected", error="bad"), []))
    run(store.remap("r2", [make_event("e1"), make_event("e3")], status="accepted", error=None))
    second = run(store.get_request("r2"))
    assert second is not None and second.event_ids == ("e1", "e3")
    assert second.duplicate_ids == ("e1",)


def test_a_test_send_is_history_not_work(store: Store) -> None:
    from relayhook.store import Attempt, DeliveryFilter, NewDelivery, Outcome

    request = dataclasses.replace(make_request("t1"), test=True)
    event = make_event("te1")
    attempt = Attempt(
        "td1", 1, 1000.0, 12.5, {"method": "POST", "url": "http://x/"}, 200, (), b"ok", None, None
    )
    run(
        store.record_test(
            request,
            event,
            NewDelivery("td1", "te1", "zap", None, "pending", 1000.0),
            attempt,
            Outcome("succeeded", response_status=200),
        )
    )
    found = run(store.get_delivery("td1"))
    assert found is not None
    delivery, attempts = found
    assert (delivery.status, delivery.test, delivery.attempts, delivery.hook) == (
        "succeeded",
        True,
        1,
        "zap",
    )
    assert delivery.event is not None and delivery.event.id == "te1"
    assert [a.response_status for a in attempts] == [200]
    assert [d.id for d in run(store.list_deliveries(hook="zap"))] == ["td1"]
    assert run(store.count_deliveries(hook="zap"))["succeeded"] == 0  # history, not work
    stored = run(store.get_request("t1"))
    assert stored is not None and stored.test and stored.event_ids == ("te1",)
    # A hook's replay leaves test sends alone; by its id, one is sent again.
    assert run(store.replay(now=2000.0, hook="zap", statuses=["succeeded"])) == 0
    # The history finds it; a bulk replay's filter (tests=False) does not.
    where = DeliveryFilter(hook="zap", statuses=("succeeded",))
    assert [d.id for d in run(store.find_deliveries(where))] == ["td1"]
    assert run(store.count_found_deliveries(where)) == 1
    no_tests = dataclasses.replace(where, tests=False)
    assert run(store.find_deliveries(no_tests)) == []
    assert run(store.count_found_deliveries(no_tests)) == 0
    assert run(store.replay(now=2000.0, delivery_id="td1")) == 1


def test_duplicate_ids_within_one_ingest_keep_the_first(store: Store) -> None:
    first, repeat = make_event("e1", data=1), make_event("e1", data=2)
    result = run(store.ingest(make_request("r1"), [first, repeat, make_event("e2")]))
    assert result == IngestResult(accepted=2, duplicates=1)
    assert run(store.list_events(request_id="r1")) == [
        linked(make_event("e2"), "r1"),
        linked(first, "r1"),
    ]


def test_rejected_request_keeps_its_error(store: Store) -> None:
    rejected = make_request("r1", status="rejected", error="no rule matches event 'ping'")
    assert run(store.ingest(rejected, [])) == IngestResult(accepted=0, duplicates=0)
    assert run(store.get_request("r1")) == rejected
    assert [r.id for r in run(store.list_requests(status="rejected"))] == ["r1"]


def test_rejected_request_with_events_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="rejected"):
        run(store.ingest(make_request("r1", status="rejected"), [make_event("e1")]))
    assert run(store.get_request("r1")) is None


def test_remap_turns_a_rejected_request_into_accepted(store: Store) -> None:
    run(store.ingest(make_request("r1", status="rejected", error="unknown type"), []))
    events = [make_event("e1"), make_event("e2")]

    result = run(store.remap("r1", events, status="accepted", error=None))

    assert result == IngestResult(accepted=2, duplicates=0)
    remapped = run(store.get_request("r1"))
    assert remapped is not None
    assert (remapped.status, remapped.error, remapped.event_ids) == ("accepted", None, ("e1", "e2"))
    assert run(store.list_events(request_id="r1")) == [linked(e, "r1") for e in reversed(events)]


def test_remap_can_reject_again(store: Store) -> None:
    run(store.ingest(make_request("r1", status="rejected", error="old"), []))
    assert run(store.remap("r1", [], status="rejected", error="new")) == IngestResult(0, 0)
    remapped = run(store.get_request("r1"))
    assert remapped is not None and (remapped.status, remapped.error) == ("rejected", "new")


def test_remap_skips_events_already_stored(store: Store) -> None:
    run(store.ingest(make_request("r1"), [make_event("e1")]))
    run(store.ingest(make_request("r2", status="rejected", error="x"), []))

    events = [make_event("e1"), make_event("e2")]
    result = run(store.remap("r2", events, status="accepted", error=None))

    assert result == IngestResult(accepted=1, duplicates=1)
    assert [(e.id, e.request_id) for e in run(store.list_events())] == [("e2", "r2"), ("e1", "r1")]


def test_remap_unknown_request_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError):
        run(store.remap("nope", [make_event("e1")], status="accepted", error=None))
    assert run(store.count_events()) == 0


def test_auth_failures_are_counted_per_relay(store: Store) -> None:
    assert run(store.auth_failures()) == {}
    run(store.record_auth_failure("github", "2024-05-01T12:00:00.000Z"))
    run(store.record_auth_failure("github", "2024-05-01T12:05:00.000Z"))
    run(store.record_auth_failure("stripe", "2024-05-01T12:01:00.000Z"))
    assert run(store.auth_failures()) == {
        "github": (2, "2024-05-01T12:05:00.000Z"),
        "stripe": (1, "2024-05-01T12:01:00.000Z"),
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00\xff\xfe\x80binary\x00", id="not UTF-8, with NUL"),
        pytest.param("café".encode("latin-1"), id="latin-1"),
        pytest.param(bytes(range(256)) * 4096, id="1 MiB of every byte"),
    ],
)
def test_body_bytes_round_trip_exactly(store: Store, body: bytes) -> None:
    run(store.ingest(make_request("r1", body=body), []))
    stored = run(store.get_request("r1"))
    assert stored is not None and stored.body == body and type(stored.body) is bytes


HARD_TEXT = [
    pytest.param("nul\x00inside", id="NUL"),
    pytest.param("lone \ud800 high", id="lone high surrogate"),
    pytest.param("\udfff", id="lone low surrogate"),
    pytest.param("\ufdd0looks escaped", id="the engines' own mark"),
    pytest.param("plain é ✓ 😀", id="plain UTF-8"),
]


@pytest.mark.parametrize("text", HARD_TEXT)
def test_text_no_database_holds_as_it_is_round_trips_exactly(store: Store, text: str) -> None:
    # Mapped from a provider's JSON ("\u0000", "\ud800"): into ids, subjects, data and errors.
    data = {"value": text, text: [text, {"nested": text}]}
    event = make_event(f"e-{text}", type=f"t.{text}", subject=text, source=f"s/{text}", data=data)
    request = make_request("r1", headers=(("x-value", text),))
    run(store.ingest(dataclasses.replace(request, query=f"q={text}"), [event]))
    run(store.ingest(make_request("r2", status="rejected", error=f"bad {text}"), []))

    assert run(store.list_events(subject=text)) == [linked(event, "r1")]
    assert run(store.list_events(type=f"t.{text}", before="unknown")) == []
    assert run(store.count_events(source=f"s/{text}")) == 1
    stored = run(store.get_request("r1"))
    assert stored is not None
    assert (stored.query, stored.headers, stored.event_ids) == (
        f"q={text}",
        (("x-value", text),),
        (event.id,),
    )
    rejected = run(store.get_request("r2"))
    assert rejected is not None and rejected.error == f"bad {text}"


def ingest_many(store: Store, count: int) -> list[IngestResult | BaseException]:
    async def burst() -> list[IngestResult | BaseException]:
        calls = [store.ingest(make_request(f"r{i}"), [make_event(f"e{i}")]) for i in range(count)]
        return await asyncio.gather(*calls, return_exceptions=True)

    return run(burst())


def test_concurrent_ingests_all_land(store: Store) -> None:
    assert ingest_many(store, 200) == [IngestResult(accepted=1, duplicates=0)] * 200
    assert run(store.count_events()) == 200
    assert len(run(store.list_requests(limit=1000))) == 200


def test_a_failing_write_does_not_sink_concurrent_ones(store: Store) -> None:
    async def burst() -> list[IngestResult | BaseException]:
        calls = [store.ingest(make_request(f"r{i}"), [make_event(f"e{i}")]) for i in range(20)]
        # A lone surrogate is not text any engine can store: this one write fails.
        unstorable = make_request("taken", relay="\ud800")
        calls.insert(10, store.ingest(unstorable, [make_event("lost")]))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = run(burst())

    failed = results.pop(10)
    assert isinstance(failed, StoreError) and not isinstance(failed, StoreUnavailableError)
    assert results == [IngestResult(accepted=1, duplicates=0)] * 20
    assert run(store.count_events()) == 20
    assert "lost" not in {e.id for e in run(store.list_events(limit=100))}


def test_data_survives_close_and_reopen(new_store: StoreFactory) -> None:
    body = b"\xff raw"

    async def write() -> None:
        async with opened(new_store) as store:
            await store.ingest(make_request("r1", body=body), [make_event("e1")])
            await store.record_auth_failure("github", TIME)

    async def read() -> tuple[RequestRecord | None, list[Event], dict[str, tuple[int, str]]]:
        async with opened(new_store) as store:
            request, events = await store.get_request("r1"), await store.list_events()
            return request, events, await store.auth_failures()

    run(write())
    request, events, failures = run(read())
    assert request == dataclasses.replace(make_request("r1", body=body), event_ids=("e1",))
    assert events == [linked(make_event("e1"), "r1")]
    assert failures == {"github": (1, TIME)}


def test_close_finishes_pending_writes(new_store: StoreFactory) -> None:
    async def write_then_close() -> list[IngestResult]:
        store = new_store()
        await store.open()
        calls = [store.ingest(make_request(f"r{i}"), [make_event(f"e{i}")]) for i in range(50)]
        tasks = [asyncio.create_task(call) for call in calls]
        await asyncio.sleep(0)  # every task has handed its write over
        await store.close()
        return await asyncio.gather(*tasks)

    async def count() -> int:
        async with opened(new_store) as store:
            return await store.count_events()

    assert run(write_then_close()) == [IngestResult(accepted=1, duplicates=0)] * 50
    assert run(count()) == 50


def test_close_twice_then_write_is_a_store_error(new_store: StoreFactory) -> None:
    store = new_store()
    run(store.open())
    run(store.close())
    run(store.close())
    with pytest.raises(StoreUnavailableError):
        run(store.ingest(make_request("r1"), []))


def test_a_request_id_met_again_writes_nothing(store: Store) -> None:
    # The spool may hand over a request the store committed just before a crash.
    run(store.ingest(make_request("r1"), [make_event("e1")]))

    again = run(store.ingest(make_request("r1", status="rejected", error="x"), []))
    other = run(store.ingest(make_request("r1"), [make_event("e2")]))

    assert again == other == IngestResult(accepted=0, duplicates=0, already_stored=True)
    assert [e.id for e in run(store.list_events())] == ["e1"]
    stored = run(store.get_request("r1"))
    assert stored is not None and stored.status == "accepted"


# -- SQLite only


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "relayhook.db")
    run(store.open())
    yield store
    run(store.close())


def writer_pragma(store: SQLiteStore, name: str) -> Any:
    """A pragma as the write connection sees it (synchronous is per connection)."""
    return run(store._write(lambda conn: conn.execute(f"PRAGMA {name}").fetchone()[0]))


def test_sqlite_defaults_wal_and_full_sync(sqlite_store: SQLiteStore) -> None:
    assert writer_pragma(sqlite_store, "synchronous") == 2
    assert writer_pragma(sqlite_store, "foreign_keys") == 1
    assert writer_pragma(sqlite_store, "cache_size") == -32 * 1024  # KiB
    with contextlib.closing(sqlite3.connect(sqlite_store.path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert writer_pragma(sqlite_store, "journal_size_limit") == 64 * 1024 * 1024


@pytest.mark.parametrize(("level", "value"), [("NORMAL", 1), ("extra", 3)])
def test_sqlite_synchronous_is_configurable(tmp_path: Path, level: str, value: int) -> None:
    store = SQLiteStore(tmp_path / "relayhook.db", synchronous=level)
    run(store.open())
    try:
        assert writer_pragma(store, "synchronous") == value
    finally:
        run(store.close())


def test_sqlite_refuses_an_unknown_synchronous_level(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NORMAL, FULL, EXTRA"):
        SQLiteStore(tmp_path / "relayhook.db", synchronous="OFF")


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "relayhook.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="upgrade relayhook"):
        run(store.open())
    run(store.close())


def version_1_database(path: Path) -> None:
    """A database as relayhook 0.1 left it: the first migration alone."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.executescript(f"{schema.MIGRATIONS[0].sql} PRAGMA user_version = 1;")
        conn.execute(
            "INSERT INTO requests (id, relay, received_at, method, query, headers, body,"
            " status) VALUES ('r1', 'github', 't', 'POST', '', '[]', x'00', 'accepted')"
        )


def test_sqlite_migrates_an_older_database_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "relayhook.db"
    version_1_database(path)
    store = SQLiteStore(path)
    run(store.open())
    try:
        assert [m.version for m in store.migrations_applied] == list(range(2, schema.LATEST + 1))
        request = run(store.get_request("r1"))
        assert request is not None and request.body == b"\x00"
    finally:
        run(store.close())
    again = SQLiteStore(path)
    run(again.open())
    assert again.migrations_applied == []
    run(again.close())


def test_sqlite_without_migrate_refuses_an_older_database(tmp_path: Path) -> None:
    path = tmp_path / "relayhook.db"
    version_1_database(path)
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="version 1; .*run `relayhook migrate`"):
        run(store.open(migrate=False))
    run(store.close())
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1


def test_sqlite_creates_missing_directories(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "new" / "dir" / "relayhook.db")
    run(store.open())
    run(store.close())
    assert store.path.is_file()


def test_sqlite_group_commit_uses_fewer_transactions_than_calls(sqlite_store: SQLiteStore) -> None:
    before = sqlite_store.commits
    assert ingest_many(sqlite_store, 200) == [IngestResult(accepted=1, duplicates=0)] * 200
    assert 1 <= sqlite_store.commits - before < 200


async def while_writer_holds(
    store: SQLiteStore, queued: int, calls: list[Coroutine[Any, Any, Any]]
) -> list[Any]:
    """Run `calls` so that their writes are committed together, as one batch.

    A first job keeps the writer busy until `queued` more jobs wait behind it."""
    started = threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        started.set()
        deadline = time.monotonic() + 10
        while store._writer.queued() < queued and time.monotonic() < deadline:
            time.sleep(0.001)

    holding = asyncio.create_task(store._write(hold))
    await asyncio.to_thread(started.wait, 10)
    results = await asyncio.gather(*calls, return_exceptions=True)
    await holding
    return results


def test_sqlite_failing_jobs_are_rolled_back_alone(sqlite_store: SQLiteStore) -> None:
    run(sqlite_store.ingest(make_request("taken"), []))
    before = sqlite_store.commits

    def write_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO auth_failures VALUES ('half-done', 1, 't')")
        raise RuntimeError("boom")

    calls = [
        sqlite_store.ingest(make_request("r1"), [make_event("e1")]),
        sqlite_store.ingest(make_request("taken"), [make_event("lost")]),
        sqlite_store._write(write_then_fail),
        sqlite_store.ingest(make_request("r2"), [make_event("e2")]),
    ]

    good, again, half_done, other = run(while_writer_holds(sqlite_store, 4, calls))

    assert sqlite_store.commits - before == 2  # the holding job, then the four together
    assert good == other == IngestResult(accepted=1, duplicates=0)
    assert again == IngestResult(accepted=0, duplicates=0, already_stored=True)
    assert isinstance(half_done, StoreError) and isinstance(half_done.__cause__, RuntimeError)
    assert not isinstance(half_done, StoreUnavailableError)
    assert [e.id for e in run(sqlite_store.list_events())] == ["e2", "e1"]
    assert run(sqlite_store.auth_failures()) == {}


def test_sqlite_failed_commit_fails_the_whole_batch(sqlite_store: SQLiteStore) -> None:
    def orphan_event(conn: sqlite3.Connection) -> None:
        # A deferred foreign key is checked at COMMIT only: the job passes, the COMMIT fails.
        conn.execute("PRAGMA defer_foreign_keys = ON")
        conn.execute(
            "INSERT INTO events (id, request_id, relay, type, source, time, data)"
            " VALUES ('orphan', 'nowhere', 'github', 'push', 's', 't', '{}')"
        )

    calls = [
        sqlite_store._write(orphan_event),
        sqlite_store.ingest(make_request("r1"), [make_event("e1")]),
    ]
    results = run(while_writer_holds(sqlite_store, 2, calls))

    assert all(isinstance(result, StoreError) for result in results)
    assert run(sqlite_store.count_events()) == 0
    # The writer rolled back and goes on.
    assert run(sqlite_store.ingest(make_request("r1"), [make_event("e1")])) == IngestResult(1, 0)


def test_sqlite_reads_do_not_wait_for_an_open_write(sqlite_store: SQLiteStore) -> None:
    run(sqlite_store.ingest(make_request("r1"), []))
    started, release = threading.Event(), threading.Event()

    def hold_open(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO auth_failures VALUES ('held', 1, 't')")
        started.set()
        release.wait(10)

    async def read_meanwhile() -> tuple[RequestRecord | None, dict[str, tuple[int, str]]]:
        holding = asyncio.create_task(sqlite_store._write(hold_open))
        await asyncio.to_thread(started.wait, 10)
        try:
            request = await asyncio.wait_for(sqlite_store.get_request("r1"), 5)
            failures = await asyncio.wait_for(sqlite_store.auth_failures(), 5)
        finally:
            release.set()
            await holding
        return request, failures

    request, failures = run(read_meanwhile())
    assert request is not None and failures == {}  # the last commit, not the open write


def test_sqlite_cancelled_caller_keeps_its_write(sqlite_store: SQLiteStore) -> None:
    async def cancel_one() -> None:
        task = asyncio.create_task(sqlite_store.ingest(make_request("r1"), [make_event("e1")]))
        await asyncio.sleep(0)  # handed over to the writer
        task.cancel()
        await sqlite_store.ingest(make_request("r2"), [make_event("e2")])

    run(cancel_one())
    assert run(sqlite_store.count_events()) == 2


def crash(self: GroupCommitWriter, conn: sqlite3.Connection, batch: list[Any]) -> None:
    raise RuntimeError("the writer thread crashed")


def test_sqlite_crashed_writer_answers_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashes: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", crashes.append)
    monkeypatch.setattr(GroupCommitWriter, "_commit_batch", crash)
    store = SQLiteStore(tmp_path / "relayhook.db")

    async def write_after_crash() -> list[Any]:
        await store.open()
        calls = [store.record_auth_failure("github", TIME) for _ in range(5)]
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
        with pytest.raises(StoreError, match="closed"):
            await store.record_auth_failure("github", TIME)
        await store.close()
        return results

    assert all(isinstance(result, StoreError) for result in run(write_after_crash()))
    # The thread reports its crash as it ends, which may be just after close() returns.
    wait_until(lambda: crashes, timeout=5.0, what="the writer thread's crash report")
    assert [str(crash.exc_value) for crash in crashes] == ["the writer thread crashed"]


# -- open_store


def test_open_store_relative_path_is_under_base_dir(tmp_path: Path) -> None:
    store = open_store("sqlite:///data/relayhook.db", base_dir=tmp_path)
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "data" / "relayhook.db"


def test_open_store_relative_path_defaults_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///relayhook.db", synchronous="NORMAL")
    assert isinstance(store, SQLiteStore)
    assert (store.path, store.synchronous) == (tmp_path / "relayhook.db", "NORMAL")


def test_open_store_absolute_path(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/relayhook.db", base_dir=Path("/elsewhere"))
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "relayhook.db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("mysql://db/relayhook", "unsupported", id="another database"),
        pytest.param("relayhook.db", "unsupported", id="no scheme"),
        pytest.param("sqlite://host/relayhook.db", "names no file", id="a host"),
        pytest.param("sqlite:///", "names no file", id="no path"),
    ],
)
def test_open_store_refuses_other_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(url)
