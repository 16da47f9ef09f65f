"""Erase a person (issue 21, item 4), on every engine: a canary subject kept in a request's body
(JSON, escaped and URL-encoded forms too), headers and query, in events about them and about
others, in deliveries, attempts (what was sent and answered), outcomes, problems, samples and
the spool is found nowhere afterwards: not in any table (PostgreSQL), not in the SQLite file
nor its WAL after the checkpoint; the report says what was found and names what it cannot
cover. Others' data stays."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run

from relayhook.core.erasure import Subject, redact_request, scrub_record
from relayhook.core.events import Event
from relayhook.core.records import Attempt, HookOutcome, Outcome, RequestRecord, Sample
from relayhook.erase import NOT_COVERED, erase
from relayhook.spool import Spool
from relayhook.store import NewDelivery, SQLiteStore, Store

CANARY = "Canary.Person+7@Example.com"
FORMS = [CANARY.lower(), "canary.person%2b7%40example.com", "canary.person+7%40example.com"]
TIME = "2026-12-03T14:00:00.000Z"
OTHER = "someone.else@example.com"


def body_of(*identifiers: str) -> bytes:
    rows = [
        {"identifier": i, "variables": {"referrer": CANARY, "note": f"by {i}"}} for i in identifiers
    ]
    return json.dumps({"type": "variables", "data": {"rows": rows}}).encode()


def request(n: int) -> RequestRecord:
    return RequestRecord(
        f"req_{n}",
        "gmetri",
        TIME,
        "POST",
        "email=canary.person%2B7%40example.com&x=1",
        (("content-type", "application/json"), ("x-user", CANARY.upper())),
        body_of(CANARY, OTHER),
        "accepted",
    )


def event(n: int, subject: str) -> Event:
    return Event(
        id=f"evt_{n}_{subject[:6]}",
        source="gmetri/acme",
        type="gmetri.x",
        subject=subject,
        time=TIME,
        data={"referrer": CANARY, "who": subject},
        relay="gmetri",
    )


def seed(store: Store) -> None:
    for n in range(3):
        events = [event(n, CANARY), event(n, OTHER)]
        deliveries = [
            NewDelivery(f"dlv_{e.id}", e.id, "crm", e.subject, "pending", 1.0) for e in events
        ]
        outcomes = [
            HookOutcome(
                f"req_{n}", "crm", "queued", {"queued": 2}, {"queued": f"event about {CANARY}"}, 1.0
            )
        ]
        run(store.ingest(request(n), events, deliveries, outcomes))
    for claimed in run(
        store.claim_due(hook="crm", now=10.0, limit=10, lease_seconds=30, owner="w")
    ):
        sent = {
            "method": "POST",
            "url": "https://crm.example.com/?who=" + CANARY,
            "headers": [],
            "body": json.dumps({"email": CANARY}),
        }
        attempt = Attempt(
            claimed.id,
            1,
            10.0,
            5.0,
            sent,
            500,
            (("x-echo", CANARY),),
            f"unknown user {CANARY}".encode(),
            "status",
            f"refused {CANARY}",
        )
        run(
            store.finish(
                claimed.id,
                owner="w",
                attempt=attempt,
                outcome=Outcome("dead", error=f"refused {CANARY}", response_status=500),
            )
        )
    pinned = Sample(
        "canary sample", "request", "req_0", (event(0, CANARY), event(0, OTHER)), request(0), 2.0
    )
    run(store.save_sample(pinned))


def everything_text(store: Store, tmp_path: Path) -> str:
    """All the engine keeps, as text: the SQLite files' bytes, or every PostgreSQL row."""
    if isinstance(store, SQLiteStore):
        path = store.path
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        parts = [path, path.with_name(path.name + "-wal")]
        return "".join(p.read_bytes().decode("latin-1") for p in parts if p.exists()).lower()
    return run(pg_dump(store)).lower()


async def pg_dump(store: Store) -> str:
    pool = store._pool  # type: ignore[attr-defined]
    async with pool.acquire() as conn:
        tables = [
            r[0]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        ]
        rows = []
        for table in tables:
            rows += [
                str(r[0])
                for r in await conn.fetch(f"SELECT row_to_json(t)::text FROM {table} AS t")
            ]
            rows += [
                bytes(r[0]).decode("latin-1")
                for r in await conn.fetch(f"SELECT convert_to(t::text, 'UTF8') FROM {table} AS t")
            ]
    return "\n".join(rows).replace("\\\\x", "")


def decoded_bodies(store: Store) -> str:
    """Request bodies and sample payloads as the store gives them back (bytea, base64)."""
    requests = run(store.list_requests(limit=100))
    samples = run(store.list_samples())
    return "".join(
        [r.body.decode() for r in requests]
        + [s.request.body.decode() for s in samples if s.request]
    ).lower()


def test_erase_leaves_the_canary_nowhere_in_the_store(store: Store, tmp_path: Path) -> None:
    seed(store)
    text = everything_text(store, tmp_path)
    assert any(form in text for form in FORMS)  # the check sees it before

    report = run(erase(store, CANARY.upper()))
    found = report.to_json()
    assert found["deleted"]["events"] == 3 and found["deleted"]["deliveries"] == 3
    assert found["deleted"]["attempts"] == 3
    assert found["overwritten"]["requests"] == 3
    assert found["overwritten"]["events"] == 3  # the others' events that mention the canary
    assert found["overwritten"]["attempts"] == 3 and found["overwritten"]["outcomes"] == 3
    assert found["overwritten"]["problems"] == 1 and found["samples"] == 1
    assert report.not_covered == NOT_COVERED and "backups" in report.text()

    text = everything_text(store, tmp_path)
    for form in FORMS:
        assert form not in text, form
    assert CANARY.lower() not in decoded_bodies(store)
    # Others' data stays, and what was JSON is still JSON.
    (kept,) = run(store.list_requests(limit=1))
    rows = json.loads(kept.body)["data"]["rows"]
    assert [r["identifier"] for r in rows] == ["[erased]", OTHER]
    assert rows[1]["variables"]["referrer"] == "[erased]"
    assert dict(kept.headers)["x-user"] == "[erased]"
    assert kept.query == "email=%5Berased%5D&x=1"
    others = run(store.list_events(limit=10))
    assert {e.subject for e in others} == {OTHER}
    assert all(e.data["referrer"] == "[erased]" for e in others)
    (sample,) = run(store.list_samples())
    assert [e.subject for e in sample.events] == [OTHER]

    again = run(erase(store, CANARY))
    assert again.total() == 0


def test_the_spool_is_scrubbed_and_stays_usable(tmp_path: Path, store: Store) -> None:
    spool = Spool(tmp_path / "relayhook.spool")
    spool.open()
    try:
        for n in range(3):
            spool.append(request(n))
        (token, first), *_ = spool.read(limit=1)
        report = run(erase(store, CANARY, spool=spool))
        assert report.spool == 3
        spool.drained(token, 1)  # a drain that read before the erase: void, handed over again
        assert CANARY.lower() not in (tmp_path / "relayhook.spool").read_bytes().decode().lower()
        again = spool.read()
        assert [r.id for _, r in again] == ["req_0", "req_1", "req_2"]
        assert all(CANARY.lower() not in r.body.decode().lower() for _, r in again)
        spool.drained(again[-1][0], 3)
        assert spool.depth == 0
    finally:
        spool.close()


@pytest.mark.parametrize("value", [CANARY, CANARY.upper(), f"  {CANARY.lower()} "])
def test_scrub_record_finds_every_form(value: str) -> None:
    scrubbed = scrub_record(Subject.of(value), request(1))
    assert scrubbed is not None
    assert CANARY.lower() not in scrubbed.body.decode().lower()
    assert scrubbed.query == "email=%5Berased%5D&x=1"
    assert scrub_record(Subject.of("nobody@example.com"), request(1)) is None


def test_a_subject_too_short_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        Subject.of(" a ")


def redact_case(
    body: object, query: str = "", headers: tuple[tuple[str, str], ...] = ()
) -> RequestRecord:
    return RequestRecord(
        "r", "x", TIME, "POST", query, headers, json.dumps(body).encode(), "accepted"
    )


@pytest.mark.parametrize(
    ("redact", "drop", "body", "expected"),
    [
        pytest.param(
            ["data.email"],
            [],
            {"data": {"email": "a@b.c", "n": 1}},
            {"data": {"email": "[redacted]", "n": 1}},
            id="a body field written over",
        ),
        pytest.param(
            [],
            ["data.email"],
            {"data": {"email": "a@b.c", "n": 1}},
            {"data": {"n": 1}},
            id="a body field dropped",
        ),
        pytest.param(
            ["rows[].email"],
            [],
            {"rows": [{"email": "a"}, {"email": "b", "k": 2}]},
            {"rows": [{"email": "[redacted]"}, {"email": "[redacted]", "k": 2}]},
            id="in each item of a list",
        ),
        pytest.param(
            ["data.missing"],
            [],
            {"data": {"n": 1}},
            {"data": {"n": 1}},
            id="a field that is not there",
        ),
        pytest.param(
            ["body.headers.x"],
            [],
            {"headers": {"x": "1"}},
            {"headers": {"x": "[redacted]"}},
            id="a body field named like the headers",
        ),
    ],
)
def test_redact_request_body(
    redact: list[str], drop: list[str], body: object, expected: object
) -> None:
    assert json.loads(redact_request(redact_case(body), redact, drop).body) == expected


def test_redact_request_headers_query_and_a_body_that_is_not_json() -> None:
    record = RequestRecord(
        "r",
        "x",
        TIME,
        "POST",
        "token=abc&keep=1",
        (("X-Token", "secret"), ("accept", "*/*")),
        b"not json",
        "accepted",
    )
    done = redact_request(record, ["headers.x-token", "data.email"], ["query.token"])
    assert done.headers == (("X-Token", "[redacted]"), ("accept", "*/*"))
    assert done.query == "keep=1" and done.body == b"not json"
