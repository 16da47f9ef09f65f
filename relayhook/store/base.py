"""The store contract, in roles: `IngestStore` (the ingress), `DeliveryStore` (dispatchers and
the alerter), `ConfigStore` (the live configuration), `ConsoleStore` (the console's values and
sessions), `HistoryStore` (the read model), `OperationsStore` (actions on records),
`MaintenanceStore` (prune, readiness, backup), and `Lifecycle`. `Store` is all of them: what an
engine implements; a caller types against the narrowest role it uses.

Two engines (SQLite, PostgreSQL), one contract test suite. Every write method is durable when
it returns: the caller may acknowledge the provider right after it. Several processes may share
one database: claims, a hook's concurrency and its pacing hold across them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from relayhook.core.erasure import Found, Subject
from relayhook.core.events import Event
from relayhook.core.people import Account, ApiKey, AuditEntry
from relayhook.core.records import (
    DELIVERY_STATUSES,
    ActivityRow,
    Attempt,
    Delivery,
    DeliveryFilter,
    DeliveryStatus,
    HookOutcome,
    IngestResult,
    NewDelivery,
    Outcome,
    Problem,
    ProblemStatus,
    RequestRecord,
    RequestStatus,
    Sample,
)
from relayhook.errors import RelayhookError

if TYPE_CHECKING:  # types only: migrations imports this module (StoreError)
    from relayhook.core.hooks import RateLimitSpec
    from relayhook.store.migrations import Migration


class StoreError(RelayhookError):
    """Storage failed; nothing of the write it belongs to was kept."""


class StoreUnavailableError(StoreError):
    """The store could not write at all just now (another process holds the lock, the disk is
    read-only or full, the store is closed): the write itself was not at fault, and the same
    write may well succeed later."""


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """What `prune` may delete: times in epoch seconds, older is prunable; None keeps forever.
    `relays` and `hooks` override `default` for one relay's requests and events, or for one
    hook's finished deliveries."""

    default: float | None
    relays: Mapping[str, float | None] = field(default_factory=dict)
    hooks: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What one `prune` deleted."""

    requests: int = 0
    events: int = 0
    deliveries: int = 0
    attempts: int = 0

    def __add__(self, other: PruneResult) -> PruneResult:
        return PruneResult(
            self.requests + other.requests,
            self.events + other.events,
            self.deliveries + other.deliveries,
            self.attempts + other.attempts,
        )


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """One sign-in to the console: `id` names it in lists and to revoke it (the cookie's token
    is stored only as a hash, never shown). `account` is whose it is ("admin" today). Times in
    epoch seconds; `address` and `user_agent` as they were at sign-in."""

    id: str
    account: str
    created_at: float
    last_seen_at: float
    expires_at: float
    address: str
    user_agent: str


@dataclass(frozen=True, slots=True)
class BacklogEntry:
    """Deliveries of one hook in one status, now. `oldest_created_at` (epoch seconds) is the
    creation time of the oldest one, for `pending`, `failed` and `claimed` only."""

    hook: str
    status: DeliveryStatus
    count: int
    oldest_created_at: float | None = None


BACKLOG_STATUSES: tuple[DeliveryStatus, ...] = ("pending", "failed", "claimed", "paused", "dead")


@dataclass(frozen=True, slots=True)
class StoredRelay:
    """A relay created at run time (`source` "api"). `sealed` holds its token and secret,
    encrypted by the caller (relayhook.sealing): the store never sees them in clear."""

    name: str
    connector: str
    source: str
    sealed: str
    created_at: float
    updated_at: float
    expect: str | None = None  # JSON {"at_least", "minutes"}: its fixed quiet rule, if any


@dataclass(frozen=True, slots=True)
class StoredHook:
    """A hook as stored: `spec` as written with `[redacted]` in place of every secret value,
    `sealed` those values encrypted by the caller (None for config hooks: their secrets stay in
    the config file). `source` is "config" or "api"."""

    name: str
    source: str
    spec: dict[str, Any]
    sealed: str | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class Resealed:
    """A run-time relay's or hook's sealed secrets, sealed again with a new key (a key
    rotation): `old` as read, `new` to write in its place."""

    kind: Literal["relay", "hook"]
    name: str
    old: str
    new: str


Topic = Literal["deliveries", "config"]


class PeopleStore(Protocol):
    """People, their one-time links, API keys and the append-only audit log (relayhook.people):
    a role of the store of its own, which `Store` includes."""

    async def save_account(
        self, account: Account, *, end_sessions: bool = False, keep: str | None = None
    ) -> int:
        """Create or change an account; with `end_sessions`, in the same transaction end every
        session of it but `keep` (a disabled person, a new password). How many ended."""

    async def get_account(self, account_id: str) -> Account | None:
        """One account by id, or None."""

    async def find_account(self, email: str) -> Account | None:
        """The account with this e-mail (any case), or None."""

    async def list_accounts(self) -> list[Account]:
        """Every account, the oldest first."""

    async def create_link(self, token_hash: str, account: str, expires_at: float) -> None:
        """Keep a one-time link (an invite, a password reset) under the hash of its token."""

    async def peek_link(self, token_hash: str, now: float) -> str | None:
        """The account of an unused, unexpired link, or None (the link stays unused)."""

    async def use_link(self, token_hash: str, now: float) -> str | None:
        """Use a link once: its account, or None if it was used, expired or never made."""

    async def create_key(self, key: ApiKey, token_hash: str) -> None:
        """Keep a new API key under the hash of its token."""

    async def find_key(self, token_hash: str) -> ApiKey | None:
        """The key whose token hashes to `token_hash` (revoked or expired ones too), or None."""

    async def list_keys(self) -> list[ApiKey]:
        """Every key, the newest first."""

    async def revoke_key(self, key_id: str, at: float) -> bool:
        """Revoke a key now; whether it was usable."""

    async def touch_key(self, key_id: str, at: float) -> None:
        """Note the key's last use (never moves it back)."""

    async def append_audit(self, entry: AuditEntry) -> None:
        """Add one line to the audit log (it has no method to change or delete one)."""

    async def list_audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: float | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[AuditEntry]:
        """Audit lines, newest first: `actor` by id or name, `action` by name or its prefix
        (`hook` finds hook.update), `before` an id to page from (exclusive)."""


class Lifecycle(Protocol):
    """How a process holds the store: open it, close it, hear of others' commits."""

    schema_version: int  # the schema version of the open database
    migrations_applied: Sequence[Migration]  # by `open`

    async def open(self, *, migrate: bool = True) -> None:
        """Connect and bring the schema to this relayhook's version, applying pending
        migrations. Called once before any other method. StoreError for a database newer than
        this relayhook, and, without `migrate`, for one with migrations pending."""

    async def close(self) -> None:
        """Finish pending writes and release connections. Safe to call twice."""

    def subscribe(self, callback: Callable[[Topic], None]) -> None:
        """Call `callback("deliveries")` when new deliveries may be due and
        `callback("config")` when hooks changed, as committed by any process sharing the
        database (PostgreSQL: LISTEN/NOTIFY; SQLite: none, its users poll). Best effort: a
        lost notification only delays a poll. Callbacks run on the opener's event loop."""


class IngestStore(Protocol):
    """What the ingress and the spool drainer write: received requests, durably."""

    async def ingest(
        self,
        request: RequestRecord,
        events: Sequence[Event],
        deliveries: Sequence[NewDelivery] = (),
        outcomes: Sequence[HookOutcome] = (),
    ) -> IngestResult:
        """Store one raw request, its events, their deliveries and its `outcomes` (one per
        hook: why it did or did not get deliveries) in a single transaction, durably. A delivery
        is created only if its event is new in this transaction.

        Events whose id is already stored (a repeated de-duplication key) are skipped and
        counted as duplicates. A request whose id is already stored writes nothing and comes
        back `already_stored` (the spool may hand the same request over twice after a crash).
        A `rejected` request comes with no events (else ValueError). Either all of it is kept
        or nothing is (then `StoreError`; `StoreUnavailableError` when the store could not
        write at all). A caller cancelled while waiting may still have its write committed.
        """

    async def record_auth_failure(self, relay: str, at: str) -> None:
        """Count one request refused for missing or wrong credentials (nothing else is kept)."""


class DeliveryStore(Protocol):
    """What a dispatcher and the alerter need: claims, pacing shared by every process, finishing
    (with problems and streaks in the same transaction), alerts sent once."""

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
        answered: Collection[str] = (),
    ) -> list[Delivery]:
        """Claim up to `limit` of the hook's deliveries that are due (`pending`/`failed` with
        `due_at <= now`, or `claimed` with an expired lease), returned in seq order, each with
        its event (which come first when more are due is the engine's: SQLite takes the
        earliest due (by `due_at`, then seq), found by index however large the
        backlog of deliveries due later; PostgreSQL the oldest):
        they become `claimed` by `owner` until `now + lease_seconds`. With `ordered`, a delivery
        is due only when no earlier delivery of the same hook and subject is unfinished (not
        succeeded, dead or skipped). With `concurrency`, fewer, so that no more than that many
        of the hook's deliveries are claimed under an unexpired lease, by every process
        together; of `owner`'s, those in `answered` (ids of deliveries whose request is over,
        their finish on its way) do not count while they are still claimed. Two concurrent
        claims never return the same delivery."""

    async def pacing_wait(self, hook: str, rate_limit: RateLimitSpec | None, now: float) -> float:
        """Seconds from `now` until the hook may send one more request under `rate_limit`,
        after what every dispatcher booked with `reserve_sends` (0: now)."""

    async def reserve_sends(
        self, hook: str, rate_limit: RateLimitSpec | None, now: float, count: int
    ) -> list[float]:
        """Book `count` requests of the hook under `rate_limit` in the pacing state that every
        dispatcher shares (one row per hook): the time each may go, ascending. Two processes
        never get the same slot, so together they send no faster than the limit."""

    async def finish(
        self,
        delivery_id: str,
        *,
        owner: str,
        outcome: Outcome,
        attempt: Attempt | None,
        disable_after: int = 0,
    ) -> bool:
        """Record an attempt (if any) and the delivery's new status, releasing the claim; one
        transaction. `tries`/`attempts` grow by one with an attempt. Returns False, and changes
        nothing but recording the attempt, when `owner` no longer holds the claim.

        In the same transaction, problems: a success resolves every unresolved problem of the
        delivery's hook; a failure (failed, dead, paused) joins the hook's unresolved problem
        of its signature (relayhook.core.problems.failure_signature), or opens one, counting each
        delivery once.

        And the hook's dead deliveries in a row (every process's together, kept across
        restarts): a dead one counts one more, a success starts again from zero. With
        `disable_after` N (`[alerts]`; 0: never) and the hook active, the (N-1)-th opens the
        problem `will deactivate: N-1 dead in a row` and the N-th opens `deactivated: N dead in
        a row` and switches the hook off as `set_hook_active` does, its reason "deactivated
        after N dead deliveries in a row" (relayhook.core.problems.streak_signature)."""

    async def mark_problem_notified(self, problem_id: str) -> bool:
        """Mark that the alert about a problem is being sent: True for the one caller that
        marked it (so that of several processes only one sends it), False if it was already."""


class ConfigStore(Protocol):
    """The live configuration: relays and hooks changed while running, hooks on and off, the
    console's own values."""

    async def config_version(self) -> int:
        """A counter that every change of a relay, a hook or a hook's state moves forward:
        a process that saw this number has seen every change up to it. Cheap: polled."""

    async def set_hook_active(self, hook: str, active: bool, reason: str | None, at: float) -> int:
        """Remember that a hook is (in)active, with why; pause its unfinished deliveries
        (`pending`/`failed` -> `paused`) or resume them (`paused` -> `pending`, due_at kept).
        Returns how many deliveries changed. Moves the config version. Switching a hook on
        starts its dead deliveries in a row from zero and resolves the problems of that count
        (see `finish`)."""

    async def hook_states(self) -> dict[str, tuple[bool, str | None, float]]:
        """Per hook name set by `set_hook_active`: (active, reason, when)."""

    async def save_hooks(self, source: str, specs: Mapping[str, dict[str, Any]], at: float) -> None:
        """Replace the hooks stored from `source` (e.g. "config") by `specs`, by name. A spec
        must hold no secret value: the caller strips them. Moves the config version."""

    async def list_hooks(self) -> list[StoredHook]:
        """Every stored hook, by name."""

    async def put_hook(self, hook: StoredHook, *, create: bool) -> bool:
        """Create (`create`: False if the name is taken) or replace (False if there is no hook
        of that name and source) one hook. Moves the config version."""

    async def delete_hook(self, name: str, *, at: float) -> int | None:
        """Remove a hook and its state; its unfinished deliveries become `cancelled` (kept in
        the history). Returns how many were cancelled, None if there was no such hook. Moves
        the config version."""

    async def list_relays(self) -> list[StoredRelay]:
        """Every relay created at run time, by name."""

    async def create_relay(self, relay: StoredRelay) -> bool:
        """Store a new relay; False if its name is taken. Moves the config version."""

    async def update_relay(self, name: str, *, sealed: str, at: float) -> bool:
        """Replace a relay's sealed token and secret (a rotation); False if there is none.
        Moves the config version."""

    async def set_relay_expect(self, name: str, expect: str | None, *, at: float) -> bool:
        """Set (JSON) or remove (None) a relay's fixed quiet rule; False if there is no such
        relay. Moves the config version."""

    async def delete_relay(self, name: str) -> bool:
        """Remove a relay (its requests and events stay); False if there was none. Moves the
        config version."""

    async def reseal(self, changes: Sequence[Resealed], *, bump: bool = False) -> int:
        """In one transaction, write each change's `new` where its relay or hook still holds
        `old` (one changed meanwhile keeps that change); how many were written. `bump` moves
        the config version (even for no change): every process reads relays and hooks again.
        Without it, a process reads the new values whenever it next reads them."""


class ConsoleStore(Protocol):
    """The console's own state: its values (the password hash, the session key) and the
    sessions of the people signed in."""

    async def get_admin_value(self, name: str) -> str | None:
        """A value of the console's own state (`password_hash`, `session_key`), or None."""

    async def set_admin_value(
        self, name: str, value: str, at: float, *, replace: bool = True
    ) -> bool:
        """Store a console value; with `replace=False` only if none is stored yet (so that two
        processes starting at once agree on one). Returns whether it was written."""

    async def change_secret(
        self, name: str, value: str, at: float, *, account: str, keep: str | None = None
    ) -> int:
        """Store a console value (a password hash) and end every session of `account` but
        `keep`, in one transaction: no session outlives the password it signed in with. Returns
        how many sessions ended."""

    async def create_session(self, session: ConsoleSession, token_hash: str) -> None:
        """Keep a new session under the hash of its token (and forget expired ones)."""

    async def find_session(self, token_hash: str, now: float) -> ConsoleSession | None:
        """The open session whose token hashes to `token_hash`; None if revoked or expired."""

    async def touch_session(self, session_id: str, at: float) -> None:
        """Note that the session was seen at `at` (never moves it back)."""

    async def list_sessions(self, account: str | None, now: float) -> list[ConsoleSession]:
        """Open sessions (of `account`, or everyone's), the most recently seen first."""

    async def revoke_session(self, session_id: str) -> bool:
        """End one session now, in every process; whether it was open."""

    async def revoke_sessions(self, account: str, *, keep: str | None = None) -> int:
        """End every session of `account` but `keep`; how many."""


class HistoryStore(Protocol):
    """The read model: what was received and sent, what became of it, problems and samples, as
    the console, the API and the metrics read them."""

    async def get_request(self, request_id: str) -> RequestRecord | None:
        """One stored request with its `event_ids`, or None."""

    async def list_requests(
        self,
        *,
        relay: str | None = None,
        status: RequestStatus | None = None,
        limit: int = 50,
        before: str | None = None,
        text: str | None = None,
    ) -> list[RequestRecord]:
        """Stored requests, newest first, each with its `event_ids`; `before` is a request id to
        page from (exclusive); `text` keeps those whose body holds it (case-insensitive)."""

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

    async def request_outcomes(self, request_id: str) -> list[HookOutcome]:
        """The stored outcomes of one request, one per hook routed then, by hook name."""

    async def hook_outcomes(
        self,
        hook: str,
        *,
        kinds: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        limit: int = 50,
    ) -> list[HookOutcome]:
        """One hook's outcomes, newest request first: of `kinds` only (None: any), without
        those of `exclude` ("the requests it skipped": exclude=("queued",))."""

    async def auth_failures(self) -> dict[str, tuple[int, str]]:
        """Per relay name: (refused requests so far, time of the last one)."""

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

    async def find_deliveries(
        self, where: DeliveryFilter, *, limit: int = 50, before: str | None = None
    ) -> list[Delivery]:
        """Deliveries matching `where`, newest first, each with its event; `before` is a
        delivery id to page from (exclusive)."""

    async def count_found_deliveries(self, where: DeliveryFilter) -> int:
        """How many deliveries match `where`."""

    async def request_activity(self, *, since: float, bucket_seconds: float) -> list[ActivityRow]:
        """Requests received at or after `since` (epoch seconds), counted per relay, per bucket
        of `bucket_seconds` (0 is the first) and per status (accepted / rejected)."""

    async def delivery_activity(self, *, since: float, bucket_seconds: float) -> list[ActivityRow]:
        """Deliveries created at or after `since`, counted per hook, per bucket of
        `bucket_seconds` and per status they have now."""

    async def event_type_counts(self) -> dict[str, int]:
        """Each event type stored, with how many events have it (what diagnostics checks hook
        patterns against: types built from the payload are only known from traffic)."""

    async def list_problems(
        self,
        *,
        hook: str | None = None,
        statuses: Sequence[ProblemStatus] = ("open", "acknowledged"),
        limit: int = 50,
        relay: str | None = None,
    ) -> list[Problem]:
        """Problems in `statuses` (of one hook, one relay, or all), newest opened first."""

    async def get_problem(self, problem_id: str) -> Problem | None:
        """One problem, or None."""

    async def get_sample(self, name: str) -> Sample | None:
        """One sample by name, or None."""

    async def list_samples(self) -> list[Sample]:
        """Every sample, by name."""

    async def backlog(self) -> list[BacklogEntry]:
        """Deliveries per hook and status for the BACKLOG_STATUSES (statuses no delivery has
        are left out), with the oldest waiting one's age for pending, failed and claimed.
        Cheap enough for every metrics scrape: it reads indexes of unfinished, dead and paused
        deliveries only, not the whole history."""


class OperationsStore(Protocol):
    """Actions on records (relayhook.operations, relayhook.remap): replays, run again, map
    again, problems acknowledged, test sends and samples kept."""

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

    async def replay_problem(self, problem_id: str, *, now: float, limit: int = 500) -> int:
        """Replay affected: make the problem's deliveries that are not done (failed, dead,
        paused) due again now, as `replay` does (`paused` where their hook is inactive; never a
        claimed one). Returns how many."""

    async def acknowledge_problem(self, problem_id: str, *, at: float) -> bool:
        """An open problem becomes acknowledged (someone is on it); False if there is no open
        problem of that id. It is still resolved by the hook's next success."""

    async def remap(
        self,
        request_id: str,
        events: Sequence[Event],
        *,
        status: RequestStatus,
        error: str | None,
        deliveries: Sequence[NewDelivery] = (),
        outcomes: Sequence[HookOutcome] = (),
    ) -> IngestResult:
        """Record the outcome of mapping a stored request again: set its status and error and add
        its events (skipping stored ids) and the deliveries of the new ones, in one transaction.
        `outcomes` replace those stored for the same request x hook. `KeyError` for an unknown
        id."""

    async def rerun(
        self,
        request_id: str,
        deliveries: Sequence[NewDelivery],
        outcomes: Sequence[HookOutcome],
        *,
        now: float,
    ) -> tuple[int, int]:
        """Run again: in one transaction, add those of `deliveries` (of the request's stored
        events) whose event x hook has none yet, make due `now` those that exist as `skipped`
        (status as given: pending or paused), and replace all the request's outcomes with
        `outcomes`. Never a second delivery of an event x hook. (created, requeued)."""

    async def record_test(
        self,
        request: RequestRecord,
        event: Event,
        delivery: NewDelivery,
        attempt: Attempt | None,
        outcome: Outcome,
    ) -> None:
        """Keep a test send (`relayhook send-test`) in the hook's history, in one transaction:
        `request` (marked `test`, accepted), its one `event` (a fresh id: a copy of an example
        or stored event, routed to no other hook), `delivery` of it to the hook, marked `test`
        and finished as `outcome` says (succeeded or dead), and `attempt`. A test delivery is
        listed and read like any other, is not counted by `count_deliveries`, and is replayed
        only by its id. Engine-neutral: every engine keeps the two `test` flags."""

    async def save_sample(self, sample: Sample, *, replace: bool = False) -> bool:
        """Keep a copy of a request or event under `sample.name`; False if the name is taken
        (unless `replace`). A sample is no reference: `prune` never deletes one, and deleting
        its original leaves it whole."""

    async def delete_sample(self, name: str) -> bool:
        """Remove a sample; False if there was none of that name."""

    async def erase_subject(self, subject: Subject) -> Found:
        """Erase a person (relayhook.core.erasure): delete the events whose subject is theirs
        with their deliveries and attempts, write over every other occurrence of the value
        in requests, events, deliveries, attempts, outcomes and problems, in one transaction;
        then leave no old copy in the engine's files (SQLite: VACUUM and an emptied WAL;
        PostgreSQL: VACUUM of those tables). Samples are the caller's (their own methods)."""


class WatchStore(Protocol):
    """What the watchers keep (relayhook.delivery.watch, relayhook.shapewatch): a relay gone
    quiet, a payload that changed shape."""

    async def open_relay_problem(
        self, relay: str, signature: str, text: str, *, at: float, request: str | None = None
    ) -> bool:
        """Open a relay's problem (`quiet`, `shape: ...`): `text` says what happened, `request`
        the first request that showed it. An unresolved one of that signature is updated
        instead (its text, `last_at`). True when a new problem was opened."""

    async def resolve_relay_problem(self, relay: str, signature: str, *, at: float) -> bool:
        """Resolve the relay's unresolved problem of `signature`; False if there was none."""

    async def get_shapes(self, relay: str) -> dict[str, str]:
        """The payload shapes of a relay's events, by event type, as saved (JSON text)."""

    async def save_shape(self, relay: str, event_type: str, shape: str, *, at: float) -> None:
        """Keep the payload shape of one relay and event type (JSON text), replacing it."""


class MaintenanceStore(Protocol):
    """Keeping the store: pruning, readiness, schema checks and backups."""

    async def prune_audit(self, before: float, *, batch: int = 500) -> int:
        """Delete up to `batch` audit lines older than `before` (retention only); how many."""

    async def prune(self, cutoffs: Cutoffs, *, batch: int = 500) -> PruneResult:
        """Delete what `cutoffs` let go: finished deliveries (succeeded, dead, skipped) last
        changed before their hook's cutoff, with their attempts; then requests received before
        their relay's cutoff, with their events, when none of those events has a delivery
        left. So an unfinished delivery, its event and its request are never deleted. Works in
        transactions of at most `batch` deliveries or requests, so that other writes go on
        between them, until nothing more is prunable. Returns what was deleted in all."""

    async def probe_write(self) -> None:
        """Take the write lock and commit an empty transaction; StoreError if the store cannot
        take a write now. For readiness checks: callers bound the wait."""

    async def schema_current(self) -> bool:
        """Whether the store's schema is the version this code was written for (False when a
        newer Relayhook migrated it, or it still needs migrating)."""

    async def backup(self, target: Path) -> None:
        """Write a consistent copy of the whole store to the new file `target` while the store
        is in use (writes go on meanwhile). FileExistsError if `target` exists; StoreError if
        the copy fails, or the engine copies no files (PostgreSQL: use pg_dump)."""


class LiveStore(ConfigStore, ConsoleStore, Protocol):
    """What the live configuration reads (relayhook.live): relays and hooks, and the run-time
    settings the console's Settings page keeps as a value."""


class ManagedStore(ConfigStore, ConsoleStore, HistoryStore, Protocol):
    """What the configuration service needs (relayhook.manage): the configuration, and the
    traffic its diagnostics check a change against."""


class RecordsStore(HistoryStore, OperationsStore, Protocol):
    """Acting on records: reading what is acted on, and the actions."""


class Store(
    Lifecycle,
    IngestStore,
    DeliveryStore,
    ConfigStore,
    ConsoleStore,
    HistoryStore,
    OperationsStore,
    WatchStore,
    PeopleStore,
    MaintenanceStore,
    Protocol,
):
    """The whole contract, every role: what an engine implements. A caller types against the
    narrowest role (or intersection of roles) it uses."""


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


def check_test(
    request: RequestRecord, event: Event, delivery: NewDelivery, outcome: Outcome
) -> None:
    if not request.test or request.status != "accepted":
        raise ValueError("a test send's request is marked test and accepted")
    if delivery.event_id != event.id or outcome.status not in ("succeeded", "dead"):
        raise ValueError("a test send is one delivery of its event, succeeded or dead")
