"""Storage: the `Store` contract and its engines, chosen by a database URL.

`store = open_store("sqlite:///relayhook.db", base_dir=config_dir)`, then `await store.open()`;
`open_store("postgresql://relayhook@db:5432/relayhook")` for several processes on one database.
"""

from __future__ import annotations

from pathlib import Path

from relayhook.core.records import (
    DELIVERY_STATUSES,
    FINAL_STATUSES,
    REQUEST_STATUSES,
    ActivityRow,
    Attempt,
    Delivery,
    DeliveryFilter,
    DeliveryStatus,
    HookOutcome,
    IngestResult,
    NewDelivery,
    Outcome,
    RequestRecord,
    RequestStatus,
)
from relayhook.store.base import (
    BACKLOG_STATUSES,
    BacklogEntry,
    Cutoffs,
    PruneResult,
    Resealed,
    Store,
    StoredHook,
    StoredRelay,
    StoreError,
    StoreUnavailableError,
)
from relayhook.store.sqlite import SQLiteStore

__all__ = [
    "Resealed",
    "BACKLOG_STATUSES",
    "DELIVERY_STATUSES",
    "FINAL_STATUSES",
    "REQUEST_STATUSES",
    "ActivityRow",
    "Attempt",
    "BacklogEntry",
    "Cutoffs",
    "Delivery",
    "DeliveryFilter",
    "DeliveryStatus",
    "IngestResult",
    "HookOutcome",
    "NewDelivery",
    "Outcome",
    "PruneResult",
    "RequestRecord",
    "RequestStatus",
    "SQLiteStore",
    "Store",
    "StoreError",
    "StoredHook",
    "StoredRelay",
    "StoreUnavailableError",
    "open_store",
    "sqlite_path",
]

SUPPORTED_URLS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db"
    " or postgresql://user@host:5432/database"
)


def open_store(
    url: str,
    *,
    base_dir: Path | None = None,
    synchronous: str = "FULL",
    busy_timeout: float | None = None,
) -> Store:
    """The store a URL names, not yet opened (the caller awaits `open()`).

    `sqlite:///relayhook.db` is relative to `base_dir` (default: the working directory),
    `sqlite:////var/lib/relayhook/relayhook.db` is absolute.
    """
    scheme, separator, _ = url.partition("://")
    if separator and scheme.lower() in ("postgresql", "postgres"):
        from relayhook.store.postgres import PostgresStore  # asyncpg only where it is used

        return PostgresStore(url)
    path = sqlite_path(url, base_dir=base_dir)
    if busy_timeout is None:
        return SQLiteStore(path, synchronous=synchronous)
    return SQLiteStore(path, synchronous=synchronous, busy_timeout=busy_timeout)


def sqlite_path(url: str, *, base_dir: Path | None = None) -> Path:
    """The file a `sqlite:///` URL names; ValueError for any other URL."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() != "sqlite":
        raise ValueError(f"unsupported store URL {url!r}: use {SUPPORTED_URLS}")
    # After "sqlite://" comes an empty host, then "/" and the path: "//abs" or "rel".
    if not rest.startswith("/") or rest == "/":
        raise ValueError(f"store URL {url!r} names no file: use {SUPPORTED_URLS}")
    path = Path(rest[1:])
    if not path.is_absolute():
        path = (base_dir if base_dir is not None else Path.cwd()) / path
    return path
