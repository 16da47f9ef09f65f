"""Operations in SQLite: pruning by age, the delivery backlog for metrics, online backup.

Pruning finds candidates on a reader (so the scan, which passes over requests held by an
unfinished delivery every time, never holds the write lock) and deletes them in writer jobs of
at most `batch` rows, each re-checking its candidates (a delivery may have been replayed, a
rejected request remapped, in between). A cursor walks each table once per `prune` call.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from relayhook.core.events import format_time
from relayhook.core.records import FINAL_STATUSES
from relayhook.store.base import BacklogEntry, Cutoffs, PruneResult, StoreError
from relayhook.store.sqlite.deliveries import CLAIMABLE, one_of
from relayhook.store.sqlite.rows import dumps

T = TypeVar("T")
FINAL = one_of("status", FINAL_STATUSES)
STUCK = one_of("status", ("dead", "paused"))
WAITING = one_of("status", CLAIMABLE)  # as the partial index deliveries_claimable has it

# Schema version 3: what pruning and the backlog read, so that neither scans the history.
INDEXES_V5 = f"""
CREATE INDEX IF NOT EXISTS requests_received_at ON requests (received_at);
CREATE INDEX IF NOT EXISTS deliveries_finished ON deliveries (updated_at) WHERE {FINAL};
CREATE INDEX IF NOT EXISTS deliveries_stuck ON deliveries (hook, status) WHERE {STUCK};
"""
# Past this, the WAL file is cut back after a checkpoint (a big prune can grow it for a while).
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
NEVER = -1.0e308  # a cutoff nothing is older than

Read = Callable[[Callable[[sqlite3.Connection], Any]], Any]
Write = Callable[[Callable[[sqlite3.Connection], Any]], Any]


def _case(column: str, overrides: Mapping[str, Any], default: Any) -> tuple[str, list[Any]]:
    """`CASE column WHEN ? THEN ? ... ELSE ? END` and its parameters."""
    if not overrides:
        return "?", [default]
    params: list[Any] = []
    whens = ""
    for name, value in overrides.items():
        whens += " WHEN ? THEN ?"
        params += [name, value]
    return f"CASE {column}{whens} ELSE ? END", [*params, default]


def _text_time(seconds: float | None) -> str:
    """A request cutoff as stored (RFC 3339 text sorts as time); "" for never."""
    return "" if seconds is None else format_time(datetime.fromtimestamp(seconds, UTC))


def _real_time(seconds: float | None) -> float:
    return NEVER if seconds is None else seconds


class Pruner:
    """One `prune` call: walks the finished deliveries, then the requests, in cursor order."""

    def __init__(self, cutoffs: Cutoffs, batch: int) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        self.batch = batch
        hook_case, self.hook_params = _case(
            "hook",
            {k: _real_time(v) for k, v in cutoffs.hooks.items()},
            _real_time(cutoffs.default),
        )
        relay_case, self.relay_params = _case(
            "relay",
            {k: _text_time(v) for k, v in cutoffs.relays.items()},
            _text_time(cutoffs.default),
        )
        self.delivery_check = f"{FINAL} AND updated_at < {hook_case}"
        self.request_check = (
            f"received_at < {relay_case} AND NOT EXISTS (SELECT 1 FROM events AS e"
            " JOIN deliveries AS d ON d.event_id = e.id WHERE e.request_id = requests.id)"
        )
        hook_times = [_real_time(v) for v in (cutoffs.default, *cutoffs.hooks.values())]
        relay_times = [_text_time(v) for v in (cutoffs.default, *cutoffs.relays.values())]
        self.delivery_upper, self.request_upper = max(hook_times), max(relay_times)

    async def run(self, read: Read, write: Write) -> PruneResult:
        total = PruneResult()
        steps = (
            (self._deliveries_after, self._delete_deliveries, (NEVER, 0)),
            (self._requests_after, self._delete_requests, ("", 0)),
        )
        for scan, delete, start in steps:
            cursor: tuple[Any, int] = start
            while True:  # bounded: the cursor only moves forward, through a finite table
                found, cursor = await read(partial(scan, cursor=cursor))
                if found:
                    total += await write(partial(delete, ids=found))
                if len(found) < self.batch:
                    break
        return total

    def _deliveries_after(
        self, conn: sqlite3.Connection, cursor: tuple[Any, int]
    ) -> tuple[list[str], tuple[Any, int]]:
        sql = (
            f"SELECT id, updated_at, seq FROM deliveries WHERE {FINAL}"
            " AND updated_at < ? AND (updated_at, seq) > (?, ?)"
            f" AND {self.delivery_check} ORDER BY updated_at, seq LIMIT ?"
        )
        rows = conn.execute(
            sql, [self.delivery_upper, *cursor, *self.hook_params, self.batch]
        ).fetchall()
        return [row[0] for row in rows], (rows[-1][1], rows[-1][2]) if rows else cursor

    def _requests_after(
        self, conn: sqlite3.Connection, cursor: tuple[Any, int]
    ) -> tuple[list[str], tuple[Any, int]]:
        sql = (
            "SELECT id, received_at, seq FROM requests WHERE received_at < ?"
            f" AND (received_at, seq) > (?, ?) AND {self.request_check}"
            " ORDER BY received_at, seq LIMIT ?"
        )
        rows = conn.execute(
            sql, [self.request_upper, *cursor, *self.relay_params, self.batch]
        ).fetchall()
        return [row[0] for row in rows], (rows[-1][1], rows[-1][2]) if rows else cursor

    def _delete_deliveries(self, conn: sqlite3.Connection, ids: Sequence[str]) -> PruneResult:
        still = _still(conn, "deliveries", self.delivery_check, self.hook_params, ids)
        attempts = _delete_in(conn, "attempts", "delivery_id", still)
        return PruneResult(
            deliveries=_delete_in(conn, "deliveries", "id", still), attempts=attempts
        )

    def _delete_requests(self, conn: sqlite3.Connection, ids: Sequence[str]) -> PruneResult:
        still = _still(conn, "requests", self.request_check, self.relay_params, ids)
        events = _delete_in(conn, "events", "request_id", still)
        _delete_in(conn, "outcomes", "request_id", still)  # kept as long as their request
        return PruneResult(requests=_delete_in(conn, "requests", "id", still), events=events)


def _still(
    conn: sqlite3.Connection, table: str, check: str, params: list[Any], ids: Sequence[str]
) -> str:
    """Those of `ids` that still pass `check` (a delivery replayed meanwhile, a request
    remapped meanwhile, does not), as a JSON array."""
    sql = f"SELECT id FROM {table} WHERE id IN (SELECT value FROM json_each(?)) AND {check}"
    return dumps([row[0] for row in conn.execute(sql, [dumps(ids), *params])])


def _delete_in(conn: sqlite3.Connection, table: str, column: str, ids: str) -> int:
    sql = f"DELETE FROM {table} WHERE {column} IN (SELECT value FROM json_each(?))"
    deleted: int = conn.execute(sql, (ids,)).rowcount
    return deleted


def checkpoint(path: Path) -> None:
    """A passive WAL checkpoint on a connection of its own: it waits for nobody, and lets the
    writer start the WAL over (and cut it to JOURNAL_SIZE_LIMIT) at its next write."""
    with contextlib.closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as conn:
        with contextlib.suppress(sqlite3.OperationalError):  # busy: the next one will do
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


# -- the backlog, for metrics


def backlog(conn: sqlite3.Connection) -> list[BacklogEntry]:
    waiting = conn.execute(
        # INDEXED BY: unanalysed, the planner prefers a covering index of every delivery.
        "SELECT hook, status, count(*), min(seq) FROM deliveries INDEXED BY deliveries_claimable"
        f" WHERE {WAITING} GROUP BY hook, status"
    ).fetchall()
    oldest_sql = "SELECT created_at FROM deliveries WHERE seq = ?"
    entries = [
        BacklogEntry(hook, status, count, conn.execute(oldest_sql, (seq,)).fetchone()[0])
        for hook, status, count, seq in waiting
    ]
    stuck = conn.execute(
        "SELECT hook, status, count(*) FROM deliveries INDEXED BY deliveries_stuck"
        f" WHERE {STUCK} GROUP BY hook, status"
    )
    entries += [BacklogEntry(hook, status, count) for hook, status, count in stuck]
    return entries


# -- online backup


def backup(connect: Callable[[], sqlite3.Connection], target: Path) -> None:
    """Copy the database into the new file `target` with SQLite's online backup API, in one
    step: one read snapshot, so the copy is consistent, and writers are not held up (WAL).
    The copy is a single file (rollback journal mode), fsync'd before it takes its name."""
    if target.exists():
        raise FileExistsError(f"{target} exists: give a new file")
    partial = target.with_name(target.name + ".partial")
    try:
        with (
            contextlib.closing(connect()) as source,
            contextlib.closing(sqlite3.connect(partial, isolation_level=None)) as copy,
        ):
            source.backup(copy)
            copy.execute("PRAGMA journal_mode = DELETE")
            result = copy.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise StoreError(f"the copy in {partial} fails its check: {result}")
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot back up into {target}: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
