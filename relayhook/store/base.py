"""The store contract: what the ingress, the CLI and the dispatcher need from storage.

One contract, two engines (SQLite, PostgreSQL), one contract test suite. Every write method is
durable when it returns: the caller may acknowledge the provider right after it. Several
processes may share one database: claims, a hook's concurrency and its pacing hold across them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from relayhook.errors import RelayhookError
from relayhook.events import Event

if TYPE_CHECKING:  # hooks imports retry, which imports this module
    from relayhook.hooks import RateLimitSpec
    from relayhook.store.migrations import Migration

RequestStatus = Literal["accepted", "rejected"]
REQUEST_STATUSES: tuple[RequestStatus, ...] = ("accepted", "rejected")


class StoreError(RelayhookError):
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
    """What a write kept: `accepted` new events, `duplicates` events whose id was already stored,
    `deliveries` deliveries created (only for the new events)."""

    accepted: int
    duplicates: int
    deliveries: int = 0


DeliveryStatus = Literal["pending", "failed", "claimed", "succeeded", "dead", "skipped", "paused"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = (
    "pending",  # due at `due_at`, never tried (or replayed)
    "failed",  # tried and failed; due again at `due_at`
    "claimed",  # a dispatcher holds it until `lease_until`
    "succeeded",  # the receiver answered 2xx
    "dead",  # no more tries: the schedule ran out, or the failure cannot heal by itself
    "skipped",  # the hook's `when` was false for this event
    "paused",  # its hook is inactive; due again when the hook is active
)
FINAL_STATUSES: tuple[DeliveryStatus, ...] = ("succeeded", "dead", "skipped")


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """One event x one hook, made by routing at ingest. `due_at` is epoch seconds."""

    id: str
    event_id: str
    hook: str
    subject: str | None
    status: Literal["pending", "paused"]
    due_at: float


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery and where it stands. `tries` counts attempts since it was created or last
    replayed (it indexes the retry schedule); `attempts` counts them all. Times are epoch
    seconds. `event` is filled in by `claim_due` and `get_delivery`."""

    id: str
    event_id: str
    hook: str
    relay: str
    subject: str | None
    status: DeliveryStatus
    tries: int
    attempts: int
    due_at: float
    lease_until: float | None
    last_status: int | None
    last_error: str | None
    created_at: float
    updated_at: float
    event: Event | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a delivery, as sent and as answered. `request` holds method, url, headers
    (secrets redacted) and body (text, or base64 with body_encoding); `response_body` is at most
    the first 64 KiB. `error_class` is None for an HTTP answer, else e.g. timeout, connect,
    destination, render."""

    delivery_id: str
    number: int
    started_at: float
    duration_ms: float
    request: dict[str, Any]
    response_status: int | None
    response_headers: tuple[tuple[str, str], ...]
    response_body: bytes
    error_class: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What becomes of a claimed delivery: `succeeded`, `failed` (due again at `due_at`),
    `dead`, `skipped` or `paused`."""

    status: Literal["succeeded", "failed", "dead", "skipped", "paused"]
    due_at: float | None = None
    error: str | None = None
    response_status: int | None = None


Topic = Literal["deliveries", "config"]


class Store(Protocol):
    schema_version: int  # the schema version of the open database
    migrations_applied: Sequence[Migration]  # by `open`

    async def open(self, *, migrate: bool = True) -> None:
        """Connect and bring the schema to this relayhook's version, applying pending
        migrations. Called once before any other method. StoreError for a database newer than
        this relayhook, and, without `migrate`, for one with migrations pending."""

    async def close(self) -> None:
        """Finish pending writes and release connections. Safe to call twice."""

    async def ingest(
        self,
        request: RequestRecord,
        events: Sequence[Event],
        deliveries: Sequence[NewDelivery] = (),
    ) -> IngestResult:
        """Store one raw request, its events and their deliveries in a single transaction,
        durably. A delivery is created only if its event is new in this transaction.

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
        deliveries: Sequence[NewDelivery] = (),
    ) -> IngestResult:
        """Record the outcome of mapping a stored request again: set its status and error and add
        its events (skipping stored ids) and the deliveries of the new ones, in one transaction.
        `KeyError` for an unknown id."""

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

    # --- deliveries -----------------------------------------------------------------------

    async def claim_due(
        self,
        *,
        hook: str,
        now: float,
        limit: int,
        lease_seconds: float,
        owner: str,
        ordered: bool = False,
        concurrency: int | None = None,
    ) -> list[Delivery]:
        """Claim up to `limit` of the hook's deliveries that are due (`pending`/`failed` with
        `due_at <= now`, or `claimed` with an expired lease), oldest first, each with its event:
        they become `claimed` by `owner` until `now + lease_seconds`. With `ordered`, a delivery
        is due only when no earlier delivery of the same hook and subject is unfinished (not
        succeeded, dead or skipped). With `concurrency`, fewer, so that no more than that many
        of the hook's deliveries are claimed under an unexpired lease, by every process
        together. Two concurrent claims never return the same delivery."""

    async def pacing_wait(self, hook: str, rate_limit: RateLimitSpec | None, now: float) -> float:
        """Seconds from `now` until the hook may send one more request under `rate_limit`,
        after what every dispatcher booked with `reserve_sends` (0: now)."""

    async def reserve_sends(self, hook: str, rate_limit: RateLimitSpec | None, now: float,
                            count: int) -> list[float]:
        """Book `count` requests of the hook under `rate_limit` in the pacing state that every
        dispatcher shares (one row per hook): the time each may go, ascending. Two processes
        never get the same slot, so together they send no faster than the limit."""

    def subscribe(self, callback: Callable[[Topic], None]) -> None:
        """Call `callback("deliveries")` when new deliveries may be due and
        `callback("config")` when hooks changed, as committed by any process sharing the
        database (PostgreSQL: LISTEN/NOTIFY; SQLite: none, its users poll). Best effort: a
        lost notification only delays a poll. Callbacks run on the opener's event loop."""

    async def finish(
        self, delivery_id: str, *, owner: str, outcome: Outcome, attempt: Attempt | None
    ) -> bool:
        """Record an attempt (if any) and the delivery's new status, releasing the claim; one
        transaction. `tries`/`attempts` grow by one with an attempt. Returns False, and changes
        nothing but recording the attempt, when `owner` no longer holds the claim."""

    async def set_hook_active(self, hook: str, active: bool, reason: str | None, at: float) -> int:
        """Remember that a hook is (in)active, with why; pause its unfinished deliveries
        (`pending`/`failed` -> `paused`) or resume them (`paused` -> `pending`, due_at kept).
        Returns how many deliveries changed."""

    async def hook_states(self) -> dict[str, tuple[bool, str | None, float]]:
        """Per hook name set by `set_hook_active`: (active, reason, when)."""

    async def save_hooks(self, source: str, specs: Mapping[str, dict[str, Any]],
                         at: float) -> None:
        """Replace the hooks stored from `source` (e.g. "config") by `specs`, by name. A spec
        must hold no secret value: the caller strips them."""

    async def list_hooks(self) -> list[tuple[str, str, dict[str, Any], float]]:
        """Every stored hook: (name, source, spec, updated_at), by name."""

    async def get_delivery(self, delivery_id: str) -> tuple[Delivery, list[Attempt]] | None:
        """One delivery with its event and its attempts (oldest first), or None."""

    async def list_deliveries(
        self,
        *,
        hook: str | None = None,
        status: DeliveryStatus | None = None,
        event_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Delivery]:
        """Deliveries, newest first (without their events); `before` is a delivery id."""

    async def count_deliveries(
        self, *, hook: str | None = None, status: DeliveryStatus | None = None
    ) -> dict[str, int]:
        """How many deliveries per status (optionally of one hook / one status)."""

    async def replay(
        self,
        *,
        now: float,
        delivery_id: str | None = None,
        hook: str | None = None,
        statuses: Sequence[DeliveryStatus] = ("dead",),
        since: float | None = None,
        limit: int = 500,
    ) -> int:
        """Make up to `limit` matching deliveries due again now (`pending`, `tries` = 0), or
        `paused` where their hook is inactive. One delivery by id (any status but `claimed`),
        or a hook's deliveries in `statuses` created at or after `since`. Returns how many."""


# -- checks every engine makes before it writes (the same words, whatever the engine)


def check_events(status: RequestStatus, events: Sequence[Event]) -> None:
    if status == "rejected" and events:
        raise ValueError("a rejected request comes with no events")


def check_new_deliveries(deliveries: Sequence[NewDelivery], events: Sequence[Event]) -> None:
    """ValueError for a delivery of no event given, or with a status a new one cannot have."""
    event_ids = {event.id for event in events}
    for d in deliveries:
        if d.event_id not in event_ids:
            raise ValueError(f"delivery {d.id!r} is for event {d.event_id!r}, not in this write")
        if d.status not in ("pending", "paused"):
            raise ValueError(f"a new delivery is pending or paused, not {d.status!r}")


def check_claim(limit: int, lease_seconds: float) -> None:
    if limit < 0 or lease_seconds <= 0:
        raise ValueError(f"need limit >= 0 and lease_seconds > 0: {limit}, {lease_seconds}")


def check_finish(delivery_id: str, outcome: Outcome, attempt: Attempt | None) -> None:
    if outcome.status == "failed" and outcome.due_at is None:
        raise ValueError("a failed delivery needs the time it is due again (Outcome.due_at)")
    if attempt is not None and attempt.delivery_id != delivery_id:
        raise ValueError(f"attempt of {attempt.delivery_id!r} given to finish {delivery_id!r}")
    if attempt is not None and attempt.number < 1:
        raise ValueError(f"attempts are numbered from 1, not {attempt.number}")


def finished_at(attempt: Attempt | None, now: Callable[[], float]) -> float:
    """When a delivery was finished: the contract gives `finish` no clock, so the attempt's end,
    else the time it is called."""
    return attempt.started_at + attempt.duration_ms / 1000 if attempt is not None else now()


def check_replay(delivery_id: str | None, statuses: Sequence[DeliveryStatus], limit: int) -> None:
    if limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")
    if delivery_id is not None:
        return
    for status in statuses:
        if status not in DELIVERY_STATUSES:
            raise ValueError(f"unknown delivery status {status!r}")
        if status == "claimed":
            raise ValueError("a claimed delivery is not replayed: its dispatcher holds it")
