"""Deliveries in SQLite: the SQL of routing, claiming, finishing, pausing and replaying.

Every function here takes the connection it runs on: the ones that write are jobs for the writer
thread (so they run inside its transaction, behind BEGIN IMMEDIATE: that is what makes two claims
disjoint, even from two processes), the others run on a reader. Arguments are checked and rows
built in the caller's thread, so the writer thread does little more than run SQL.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from relayhook.core.events import Event
from relayhook.core.pacing import book_sends
from relayhook.core.records import (
    DELIVERY_STATUSES,
    Attempt,
    Delivery,
    DeliveryStatus,
    NewDelivery,
    Outcome,
)
from relayhook.store.base import check_new_deliveries, finished_at
from relayhook.store.rows import (
    ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    attempt_row,
    prefixed,
    to_attempt,
    to_delivery_with_event,
)
from relayhook.store.sqlite.rows import dumps, where
from relayhook.store.text import from_column, loads, to_column

if TYPE_CHECKING:  # hooks -> retry -> store -> here: types only
    from relayhook.core.hooks import RateLimitSpec

CLAIMABLE: tuple[DeliveryStatus, ...] = ("pending", "failed", "claimed")
UNFINISHED: tuple[DeliveryStatus, ...] = ("pending", "failed", "claimed", "paused")


def one_of(column: str, values: Sequence[str]) -> str:
    """`(column = 'a' OR column = 'b' ...)`, for the status sets of a CHECK constraint or a
    partial index. Not `IN (...)`: there SQLite builds the list anew for every row written (some
    microseconds a row each on 3.40: more than the indexes themselves). A query uses a partial
    index only when its WHERE holds the index's condition as written, so queries use this too."""
    return "(" + " OR ".join(f"{column} = '{value}'" for value in values) + ")"


WITH_EVENT = (
    f"SELECT {prefixed('d', DELIVERY_COLUMNS)}, {prefixed('e', EVENT_COLUMNS)}"
    " FROM deliveries AS d JOIN events AS e ON e.id = d.event_id"
)


# -- routing at ingest

# Plain VALUES, one row a statement: an INSERT ... SELECT (which would look the relay up itself)
# may write several rows, so SQLite gives each execution a statement journal, which about doubled
# the cost of routing a GMetri batch.
INSERT_DELIVERY = """
INSERT INTO deliveries (id, event_id, hook, relay, subject, status, due_at, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id, hook) DO NOTHING
"""
NewRow = tuple[str, str, str, str | None, str, float]  # NewDelivery less the relay


def delivery_rows(deliveries: Sequence[NewDelivery], events: Sequence[Event]) -> list[NewRow]:
    """Rows to route (the relay is the stored event's); ValueError for a delivery of no event
    given or with a status a new delivery cannot have."""
    check_new_deliveries(deliveries, events)
    return [
        (d.id, to_column(d.event_id), d.hook, to_column(d.subject), d.status, float(d.due_at))
        for d in deliveries
    ]


def last_event_seq(conn: sqlite3.Connection) -> int:
    seq: int = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    return seq


def insert_deliveries(conn: sqlite3.Connection, rows: list[NewRow], after_seq: int) -> int:
    """Insert the deliveries of the events stored after `after_seq` (AUTOINCREMENT never hands
    out a lower seq, so those are the events new in this transaction); how many were inserted."""
    if not rows:
        return 0
    sql = "SELECT id, relay FROM events WHERE seq > ?"
    relays: dict[str, str] = dict(conn.execute(sql, (after_seq,)).fetchall())
    new = [
        (id_, event_id, hook, relays[event_id], subject, status, due_at, due_at, due_at)
        for id_, event_id, hook, subject, status, due_at in rows
        if event_id in relays
    ]
    inserted: int = conn.executemany(INSERT_DELIVERY, new).rowcount if new else 0
    return inserted


# -- claiming

WAITING: tuple[DeliveryStatus, ...] = ("pending", "failed")
# The claim scan reads two short index ranges, never a hook's whole backlog: waiting deliveries
# by the time they are due, and claims whose lease ran out by when it did; then the earliest
# due of those first (a claim that ran out keeps its due_at), seq breaking ties. With
# a million deliveries waiting for a receiver that is down, finding that none is due is one
# index seek (a scan in seq order read them all: ~70 ms a round, in the writer thread).
INDEXES_V10 = f"""
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (hook, due_at, seq)
    WHERE {one_of("status", WAITING)};
CREATE INDEX IF NOT EXISTS deliveries_leased ON deliveries (hook, lease_until, seq)
    WHERE status = 'claimed';
"""
# Nothing is due for a hook made inactive, not even a delivery whose claim ran out: that one is
# claimed again when the hook is active again.
DUE = f"""
SELECT seq FROM (
  SELECT * FROM (
    SELECT d.seq, d.due_at AS at FROM deliveries AS d INDEXED BY deliveries_due
    WHERE d.hook = :hook AND {one_of("d.status", WAITING)} AND d.due_at <= :now {{ordered}}
    ORDER BY d.due_at, d.seq LIMIT :limit)
  UNION ALL
  SELECT * FROM (
    SELECT d.seq, d.due_at AS at FROM deliveries AS d INDEXED BY deliveries_leased
    WHERE d.hook = :hook AND d.status = 'claimed' AND d.lease_until <= :now {{ordered}}
    ORDER BY d.lease_until, d.seq LIMIT :limit)
)
WHERE NOT EXISTS (SELECT 1 FROM hook_states WHERE hook = :hook AND NOT active)
ORDER BY at, seq LIMIT :limit
"""
# `IS`: a NULL subject is one subject like any other.
NO_EARLIER_UNFINISHED = f"""
  AND NOT EXISTS (
    SELECT 1 FROM deliveries AS p
    WHERE p.hook = d.hook AND p.subject IS d.subject AND p.seq < d.seq
      AND {one_of("p.status", UNFINISHED)}
  )"""
CLAIM = """
UPDATE deliveries SET status = 'claimed', lease_until = :lease_until, lease_owner = :owner,
    updated_at = :now
WHERE seq IN ({due}) RETURNING seq
"""
CLAIM_ANY = CLAIM.format(due=DUE.format(ordered=""))
CLAIM_ORDERED = CLAIM.format(due=DUE.format(ordered=NO_EARLIER_UNFINISHED))


# A hook's deliveries in flight, by every process: claimed under a lease that has not run out.
IN_FLIGHT = (
    "SELECT count(*) FROM deliveries WHERE hook = ? AND status = 'claimed' AND lease_until > ?"
)
# Of those, the claimer's own whose request is over (`answered`): not in flight to the receiver.
ANSWERED = (
    "SELECT count(*) FROM deliveries WHERE id IN (SELECT value FROM json_each(?))"
    " AND status = 'claimed' AND lease_owner = ? AND lease_until > ?"
)


def claim_due(
    conn: sqlite3.Connection,
    *,
    hook: str,
    now: float,
    limit: int,
    lease_until: float,
    owner: str,
    ordered: bool,
    concurrency: int | None,
    answered: Sequence[str] = (),
) -> list[Delivery]:
    if concurrency is not None:
        in_flight: int = conn.execute(IN_FLIGHT, (hook, now)).fetchone()[0]
        if answered:
            in_flight -= conn.execute(ANSWERED, (dumps(list(answered)), owner, now)).fetchone()[0]
        limit = min(limit, concurrency - in_flight)
        if limit <= 0:
            return []
    params = {"hook": hook, "now": now, "limit": limit, "lease_until": lease_until, "owner": owner}
    seqs = [seq for (seq,) in conn.execute(CLAIM_ORDERED if ordered else CLAIM_ANY, params)]
    if not seqs:
        return []
    sql = f"{WITH_EVENT} WHERE d.seq IN (SELECT value FROM json_each(?)) ORDER BY d.seq"
    return [to_delivery_with_event(row) for row in conn.execute(sql, (dumps(seqs),))]


# -- finishing

FINISH = """
UPDATE deliveries SET status = :status, due_at = coalesce(:due_at, due_at),
    last_status = :last_status, last_error = :last_error, lease_until = NULL, lease_owner = NULL,
    tries = tries + :tried, attempts = attempts + :tried, updated_at = :now
WHERE id = :id AND status = 'claimed' AND lease_owner = :owner
"""
INSERT_ATTEMPT = f"INSERT INTO attempts ({ATTEMPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
NEXT_ATTEMPT = "SELECT coalesce(max(number), 0) + 1 FROM attempts WHERE delivery_id = ?"


def finish(
    conn: sqlite3.Connection,
    delivery_id: str,
    *,
    owner: str,
    outcome: Outcome,
    attempt: Attempt | None,
) -> bool:
    """The claim is `owner`'s while the delivery is claimed by it, even past its lease, until
    another claims it. The attempt is recorded (and counted in `attempts`, not in `tries`) even
    when the claim was lost: it was made. It takes the next free number, which is the caller's
    unless a lost claim's attempt came first. KeyError for an unknown delivery."""
    if conn.execute("SELECT 1 FROM deliveries WHERE id = ?", (delivery_id,)).fetchone() is None:
        raise KeyError(delivery_id)
    if attempt is not None:
        number: int = conn.execute(NEXT_ATTEMPT, (delivery_id,)).fetchone()[0]
        conn.execute(INSERT_ATTEMPT, attempt_row(attempt, number))
    params = {
        "id": delivery_id,
        "owner": owner,
        "status": outcome.status,
        "due_at": outcome.due_at,
        "last_status": outcome.response_status,
        "last_error": to_column(outcome.error),
        "tried": int(attempt is not None),
        "now": finished_at(attempt, time.time),
    }
    if conn.execute(FINISH, params).rowcount == 1:
        return True
    if attempt is not None:
        count = "UPDATE deliveries SET attempts = attempts + 1 WHERE id = ?"
        conn.execute(count, (delivery_id,))
    return False


# -- pacing shared by every dispatcher

PACING_STATE = "SELECT state FROM hook_pacing WHERE hook = ?"
SAVE_PACING = """
INSERT INTO hook_pacing (hook, state, updated_at) VALUES (?, ?, ?)
ON CONFLICT (hook) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at
"""


def pacing_state(conn: sqlite3.Connection, hook: str) -> dict[str, Any]:
    row = conn.execute(PACING_STATE, (hook,)).fetchone()
    state: dict[str, Any] = loads(row[0]) if row is not None else {}
    return state


def reserve_sends(
    conn: sqlite3.Connection, hook: str, rate_limit: RateLimitSpec | None, now: float, count: int
) -> list[float]:
    state, times = book_sends(rate_limit, pacing_state(conn, hook), now, count)
    conn.execute(SAVE_PACING, (hook, dumps(state), now))
    return times


# -- hooks on and off

SET_HOOK_STATE = """
INSERT INTO hook_states (hook, active, reason, at) VALUES (?, ?, ?, ?)
ON CONFLICT (hook) DO UPDATE
    SET active = excluded.active, reason = excluded.reason, at = excluded.at
"""
PAUSE = (
    "UPDATE deliveries SET status = 'paused', updated_at = ?"
    " WHERE hook = ? AND status IN ('pending', 'failed')"
)
RESUME = (
    "UPDATE deliveries SET status = 'pending', updated_at = ? WHERE hook = ? AND status = 'paused'"
)


def set_hook_active(
    conn: sqlite3.Connection, hook: str, active: bool, reason: str | None, at: float
) -> int:
    conn.execute(SET_HOOK_STATE, (hook, int(active), to_column(reason), at))
    changed: int = conn.execute(RESUME if active else PAUSE, (at, hook)).rowcount
    return changed


def hook_states(conn: sqlite3.Connection) -> dict[str, tuple[bool, str | None, float]]:
    rows = conn.execute("SELECT hook, active, reason, at FROM hook_states ORDER BY hook")
    return {hook: (bool(active), from_column(reason), at) for hook, active, reason, at in rows}


# -- replay

# Paused, not pending, where the hook is inactive (as hook_states has it).
REPLAYED_STATUS = (
    "CASE WHEN hook IN (SELECT hook FROM hook_states WHERE NOT active)"
    " THEN 'paused' ELSE 'pending' END"
)
REPLAY = f"""
UPDATE deliveries SET status = {REPLAYED_STATUS}, tries = 0, due_at = :now,
    lease_until = NULL, lease_owner = NULL, updated_at = :now
WHERE seq IN (SELECT seq FROM deliveries WHERE {{where}} ORDER BY seq LIMIT :limit)
"""
# A delivery replayed at `now` already is left out, so that a caller paging with one `now` ends
# even when `statuses` holds the status replayed deliveries get.
NOT_REPLAYED_YET = f"NOT (status = {REPLAYED_STATUS} AND tries = 0 AND due_at = :now)"


def replay(
    conn: sqlite3.Connection,
    *,
    now: float,
    delivery_id: str | None,
    hook: str | None,
    statuses: Sequence[DeliveryStatus],
    since: float | None,
    limit: int,
) -> int:
    where, params = _replay_filter(delivery_id, hook, statuses, since)
    params.update(now=now, limit=limit)
    replayed: int = conn.execute(REPLAY.format(where=where), params).rowcount
    return replayed


def _replay_filter(
    delivery_id: str | None,
    hook: str | None,
    statuses: Sequence[DeliveryStatus],
    since: float | None,
) -> tuple[str, dict[str, object]]:
    """The WHERE of the deliveries to replay (never a claimed one), and its parameters."""
    conditions = ["status <> 'claimed'"]
    params: dict[str, object] = {"hook": hook, "id": delivery_id, "since": since}
    if hook is not None:
        conditions.append("hook = :hook")
    if delivery_id is not None:
        return " AND ".join([*conditions, "id = :id"]), params
    named = {f"status{i}": status for i, status in enumerate(statuses)}
    conditions.append("test = 0")  # a test send is replayed by its id only
    conditions.append(f"status IN ({', '.join(':' + name for name in named) or 'NULL'})")
    conditions.append(NOT_REPLAYED_YET)
    if since is not None:
        conditions.append("created_at >= :since")
    return " AND ".join(conditions), {**params, **named}


# -- reads


def get_delivery(
    conn: sqlite3.Connection, delivery_id: str
) -> tuple[Delivery, list[Attempt]] | None:
    row = conn.execute(f"{WITH_EVENT} WHERE d.id = ?", (delivery_id,)).fetchone()
    if row is None:
        return None
    sql = f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE delivery_id = ? ORDER BY number"
    return to_delivery_with_event(row), [to_attempt(a) for a in conn.execute(sql, (delivery_id,))]


def count_deliveries(
    conn: sqlite3.Connection, hook: str | None, status: DeliveryStatus | None
) -> dict[str, int]:
    """Every status (or the one asked for), with 0 for those no delivery has; test sends are
    history, not work: they are not counted."""
    clause, params = where([("hook = ?", hook), ("status = ?", status), ("test = ?", 0)])
    counts: dict[str, int] = dict.fromkeys(DELIVERY_STATUSES if status is None else (status,), 0)
    sql = f"SELECT status, count(*) FROM deliveries {clause} GROUP BY status"
    counts.update(conn.execute(sql, params).fetchall())
    return counts
