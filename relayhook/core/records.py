"""The records that flow between ingress, routing, delivery and the store: plain data, no I/O.

They live outside `relayhook.store` so that the pure core (routing, retry) can name them without
importing a storage engine: importing `relayhook.store` loads sqlite3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from relayhook.core.events import Event

RequestStatus = Literal["accepted", "rejected"]
REQUEST_STATUSES: tuple[RequestStatus, ...] = ("accepted", "rejected")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One raw request as a provider sent it (credentials redacted), and what became of it.

    `headers` are (lower-cased name, value) pairs in the order received; `query` is the raw query
    string; `body` the exact bytes. `error` says why a `rejected` request could not be mapped.
    `truncated` marks a body cut at the size limit: kept for inspection, never mapped.
    `event_ids` is filled in by reads: every event the request mapped to, new or repeated;
    `duplicate_ids` those of them an earlier request had stored (so a resend points at the
    events it repeated). `test` marks a request made by `relayhook send-test`.
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
    duplicate_ids: tuple[str, ...] = field(default=())
    test: bool = False


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What a write kept: `accepted` new events, `duplicates` events whose id was already stored,
    `deliveries` deliveries created (only for the new events). `already_stored`: a request with
    this id was stored before, so nothing was written (a spooled request met again)."""

    accepted: int
    duplicates: int
    deliveries: int = 0
    already_stored: bool = False


DeliveryStatus = Literal[
    "pending", "failed", "claimed", "succeeded", "dead", "skipped", "paused", "cancelled"
]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = (
    "pending",  # due at `due_at`, never tried (or replayed)
    "failed",  # tried and failed; due again at `due_at`
    "claimed",  # a dispatcher holds it until `lease_until`
    "succeeded",  # the receiver answered 2xx
    "dead",  # no more tries: the schedule ran out, or the failure cannot heal by itself
    "skipped",  # the hook's `when` was false for this event
    "paused",  # its hook is inactive; due again when the hook is active
    "cancelled",  # its hook was deleted before it was sent; kept for the history
)
FINAL_STATUSES: tuple[DeliveryStatus, ...] = ("succeeded", "dead", "skipped", "cancelled")


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """One event x one hook, made by routing at ingest. `due_at` is epoch seconds."""

    id: str
    event_id: str
    hook: str
    subject: str | None
    status: Literal["pending", "paused"]
    due_at: float


# Why a hook did or did not get deliveries from one request, by routing at ingest (or Run again).
OUTCOME_KINDS = (
    "queued",
    "paused",
    "condition_false",
    "type_not_subscribed",
    "relay_not_subscribed",
    "no_event",
)


@dataclass(frozen=True, slots=True)
class HookOutcome:
    """One request x one hook: `kind` is the first of OUTCOME_KINDS that `counts` (events per
    kind) holds; `detail` per kind is its first example (the values a false condition read,
    the types not subscribed, the connector's error...). `at`: epoch seconds."""

    request_id: str
    hook: str
    kind: str
    counts: dict[str, int]
    detail: dict[str, Any]
    at: float


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
    test: bool = False  # made by `relayhook send-test`: history, not work


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


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    """Which deliveries a history page (or a bulk replay) is about; None or empty is no filter.

    `statuses`: any of these; `min_code`..`max_code`: the last HTTP status, inclusive;
    `since`..`until`: created at or after / before (epoch seconds); `text`: case-insensitive,
    inside the event's type, subject or data; `request_id`: the events of one raw request;
    `event_id`: one event's; `tests` False leaves test sends out (a bulk replay's filter)."""

    hook: str | None = None
    statuses: tuple[DeliveryStatus, ...] = ()
    min_code: int | None = None
    max_code: int | None = None
    since: float | None = None
    until: float | None = None
    text: str | None = None
    request_id: str | None = None
    event_id: str | None = None
    tests: bool = True


# (relay or hook name, bucket number counted from `since`, status, count)
ActivityRow = tuple[str, int, str, int]


ProblemStatus = Literal["open", "acknowledged", "resolved"]
PROBLEM_STATUSES: tuple[ProblemStatus, ...] = ("open", "acknowledged", "resolved")


@dataclass(frozen=True, slots=True)
class Problem:
    """Failures of one hook with one signature (`status 401`, `connect`), grouped: open from
    `first_at` (epoch seconds), acknowledged by a person, resolved by the hook's next success.
    `deliveries` counts the distinct deliveries it holds; `error` is the last one's error;
    `notified` whether the alert about it was sent (or is not wanted).

    A relay's problem (`relay` set, `hook` empty) is about what a provider sends: it went quiet
    (signature `quiet`), or its payloads changed shape (`shape: ...`); `error` then holds what
    happened, in words, and `request` the first request that showed it, if any. It resolves
    itself when the cause is gone (traffic returns)."""

    id: str
    hook: str
    signature: str
    status: ProblemStatus
    first_at: float
    last_at: float
    deliveries: int
    error: str | None
    acknowledged_at: float | None = None
    resolved_at: float | None = None
    notified: bool = False
    relay: str = ""
    request: str | None = None


SampleKind = Literal["request", "event"]


@dataclass(frozen=True, slots=True)
class Sample:
    """A stored request or event pinned under a name, to preview a hook with, send as a test
    and try conditions on. It holds a copy (`request`, `events`), not a reference: retention
    deletes the original and the sample stays. `source_id` is the pinned request's or event's
    id; `events` the request's events (a request sample) or the one event."""

    name: str
    kind: SampleKind
    source_id: str
    events: tuple[Event, ...]
    request: RequestRecord | None
    saved_at: float
