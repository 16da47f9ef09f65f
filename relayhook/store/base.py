"""The store contract: what the ingress, the CLI and (later) the dispatcher need from storage.

One contract, several engines (SQLite now; PostgreSQL behind the same methods later). Every write
method is durable when it returns: the caller may acknowledge the provider right after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from relayhook.events import Event

RequestStatus = Literal["accepted", "rejected"]
REQUEST_STATUSES: tuple[RequestStatus, ...] = ("accepted", "rejected")


class StoreError(Exception):
    """Storage failed; nothing of the write it belongs to was kept."""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One raw request as a provider sent it (credentials redacted), and what became of it.

    `headers` are (lower-cased name, value) pairs in the order received; `query` is the raw query
    string; `body` the exact bytes. `error` says why a `rejected` request could not be mapped.
    `truncated` marks a body cut at the size limit: kept for inspection, never mapped.
    `event_ids` is filled in by reads: the events this request produced (first seen here).
    """

    id: str
    relay: str
    received_at: str
    method: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    status: RequestStatus
    error: str | None = None
    truncated: bool = False
    event_ids: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What a write kept: `accepted` new events, `duplicates` events whose id was already stored."""

    accepted: int
    duplicates: int


class Store(Protocol):
    async def open(self) -> None:
        """Connect and create or migrate the schema. Called once before any other method."""

    async def close(self) -> None:
        """Finish pending writes and release connections. Safe to call twice."""

    async def ingest(self, request: RequestRecord, events: Sequence[Event]) -> IngestResult:
        """Store one raw request and its events in a single transaction, durably.

        Events whose id is already stored (a repeated de-duplication key) are skipped and
        counted as duplicates. A `rejected` request comes with no events (else ValueError).
        Either all of it is kept or nothing is (then `StoreError`). A caller cancelled while
        waiting may still have its write committed.
        """

    async def remap(
        self,
        request_id: str,
        events: Sequence[Event],
        *,
        status: RequestStatus,
        error: str | None,
    ) -> IngestResult:
        """Record the outcome of mapping a stored request again: set its status and error and add
        its events (skipping stored ids), in one transaction. `KeyError` for an unknown id."""

    async def record_auth_failure(self, relay: str, at: str) -> None:
        """Count one request refused for missing or wrong credentials (nothing else is kept)."""

    async def auth_failures(self) -> dict[str, tuple[int, str]]:
        """Per relay name: (refused requests so far, time of the last one)."""

    async def get_request(self, request_id: str) -> RequestRecord | None:
        """One stored request with its `event_ids`, or None."""

    async def list_requests(
        self,
        *,
        relay: str | None = None,
        status: RequestStatus | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[RequestRecord]:
        """Stored requests, newest first, each with its `event_ids`; `before` is a request id to
        page from (exclusive)."""

    async def list_events(
        self,
        *,
        relay: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        request_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Event]:
        """Stored events, newest first, each with the `request_id` that produced it; `before` is
        an event id to page from (exclusive)."""

    async def count_events(self, *, relay: str | None = None, source: str | None = None) -> int:
        """How many events are stored (optionally for one relay or source)."""
