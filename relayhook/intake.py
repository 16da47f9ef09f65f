"""Keeping what a provider sent, whatever goes wrong: map it, route its events, store it all in
one transaction; if its events cannot be stored, keep the raw request as `rejected` with the
error; if the store cannot write in time, append the raw request to the spool. Only when the
spool cannot write either is the request kept nowhere.

    kept = await intake.keep(relay, record)     # record: the raw request, status "accepted"
    kept.where   # "store" | "spool" | "nowhere"
    kept.record  # as kept: still "accepted", or "rejected" with the reason in `error`

The ingress calls `keep` for each request; `SpoolDrainer` calls it for each spooled one, in
order, as soon as the store takes writes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from relayhook.core.erasure import redact_request
from relayhook.core.events import Event, parse_time
from relayhook.core.mapping import InboundRequest, Mapped, MappingError, ProviderAnswer, map_inbound
from relayhook.core.routing import route, route_explained
from relayhook.core.templating import time_budget
from relayhook.live import LiveConfig
from relayhook.relays import Relay
from relayhook.spool import Spool
from relayhook.store import (
    HookOutcome,
    IngestResult,
    NewDelivery,
    RequestRecord,
    StoreUnavailableError,
)
from relayhook.store.base import IngestStore

if TYPE_CHECKING:
    from relayhook.tracing import Tracing

log = logging.getLogger("relayhook.intake")

NOTHING = Mapped([])
MAX_ERROR_CHARS = 2000  # a stored reason stays readable even when an exception's text is huge


@dataclass(frozen=True, slots=True)
class Kept:
    """Where a request was kept, and as what. `reason`: why the store did not take it."""

    record: RequestRecord
    where: Literal["store", "spool", "nowhere"]
    result: IngestResult | None = None
    reason: str | None = None
    retry: bool = True  # "nowhere" only: False when the store refuses this very request
    answer: ProviderAnswer | None = None  # a connector rule's own answer to the provider


def rejected(record: RequestRecord, error: str) -> RequestRecord:
    """The record as `rejected` with `error` (any text: made storable, and bounded)."""
    text = error.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + "..."
    return replace(record, status="rejected", error=text)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass
class Intake:
    """`store_timeout`: how long `keep` waits for the store before it spools (None: no limit).
    `wake` is called when new deliveries were stored; `spooled` when a request was spooled;
    `stored` with the relay name and the result of every request stored (metrics count it)."""

    store: IngestStore
    live: LiveConfig
    new_id: Callable[[], str]
    spool: Spool | None = None
    store_timeout: float | None = None
    wake: Callable[[], None] = lambda: None
    spooled: Callable[[], None] = field(default=lambda: None)
    stored: Callable[[str, IngestResult], None] = lambda relay, result: None
    secrets: Mapping[str, str] = field(default_factory=dict)  # what a hook's `when` may read
    explain: bool = True  # record why each hook did or did not fire (`[outcomes] record`)
    render_seconds: float = 0.2  # CPU time for a request's mapping, and again for its routing
    # after each commit: the request, its events and its body as parsed, if it was JSON
    # (relayhook.shapewatch learns payload shapes from them)
    observe: Callable[[RequestRecord, Sequence[Event], Any], None] = lambda record, events, body: (
        None
    )
    tracing: Tracing | None = None  # [tracing] on: a span per request kept (relayhook.tracing)

    async def keep(
        self, relay: Relay | None, record: RequestRecord, *, may_spool: bool = True
    ) -> Kept:
        """Keep one raw request (status `accepted`, or `rejected` with its error) somewhere
        durable. `relay` None: the relay is gone (a spooled request after a config change)."""
        if self.tracing is not None and may_spool:  # not again when the spool is drained
            return await self._keep_traced(self.tracing, relay, record)
        return await self._keep_mapped(relay, record, may_spool)

    async def _keep_traced(
        self, tracing: Tracing, relay: Relay | None, record: RequestRecord
    ) -> Kept:
        connector = relay.connector.id if relay is not None else ""
        with tracing.ingest(record.id, record.relay, connector) as span:
            kept = await self._keep_mapped(relay, record, True)
            result = kept.result
            span.set_attributes(
                {
                    "relayhook.events": result.accepted + result.duplicates if result else 0,
                    "relayhook.deliveries": result.deliveries if result else 0,
                    "relayhook.outcome": kept.record.status
                    if kept.where == "store"
                    else kept.where,
                }
            )
            if kept.where == "nowhere" or kept.record.status == "rejected":
                from opentelemetry.trace import StatusCode

                span.set_status(StatusCode.ERROR, kept.reason or kept.record.error or "")
            return kept

    async def _keep_mapped(
        self, relay: Relay | None, record: RequestRecord, may_spool: bool
    ) -> Kept:
        if relay is None:
            record = rejected(record, f"relay {record.relay!r} is not configured any more")
        elif relay.connector.spec.redact or relay.connector.spec.drop:
            spec = relay.connector.spec  # fields that must never reach the store
            record = redact_request(record, spec.redact, spec.drop)
        record, mapped = self.map_record(relay, record)
        kept = await self._keep(record, mapped.events, may_spool, mapped.body)
        return replace(kept, answer=mapped.answer) if mapped.answer is not None else kept

    async def _keep(
        self, record: RequestRecord, events: list[Event], may_spool: bool, body: Any = None
    ) -> Kept:
        if may_spool and self.spool is not None and self.spool.depth:
            # Requests already wait in the spool: this one goes behind them, so that the store
            # sees them in the order they came (a session's create before its delete).
            kept = await self._append(record, None)
            if kept.where == "spool":
                return kept
        try:
            async with asyncio.timeout(self.store_timeout):
                return await self._store(record, events, body)
        except TimeoutError:
            reason, retry = f"the store did not answer within {self.store_timeout} s", True
        except Exception as exc:
            reason, retry = describe(exc), isinstance(exc, StoreUnavailableError)
        log.error("relay %s: could not store request %s: %s", record.relay, record.id, reason)
        if may_spool and self.spool is not None:
            return await self._append(record, reason)
        return Kept(record, "nowhere", reason=reason, retry=retry)

    def map_record(
        self, relay: Relay | None, record: RequestRecord
    ) -> tuple[RequestRecord, Mapped]:
        """The events of an `accepted` record (and a rule's answer to the provider, if one
        answers it), or the record `rejected` with what was wrong. Any exception while mapping
        rejects the request: a bug must not lose it."""
        if relay is None or record.status == "rejected":
            return record, NOTHING
        inbound = InboundRequest(record.method, record.query, record.headers, record.body)
        try:
            with time_budget(self.render_seconds):
                mapped = map_inbound(
                    relay.connector,
                    inbound,
                    relay=relay.name,
                    received_at=parse_time(record.received_at),
                    new_id=self.new_id,
                )
        except MappingError as exc:
            return rejected(record, str(exc)), NOTHING
        except Exception as exc:
            log.exception("relay %s: mapping request %s failed", relay.name, record.id)
            message = f"{relay.connector.id}: the request could not be mapped: {describe(exc)}"
            return rejected(record, message), NOTHING
        return record, mapped

    async def _store(self, record: RequestRecord, events: list[Event], body: Any = None) -> Kept:
        """Store the request with its events and deliveries; if that fails for any reason but
        the store being unavailable, store it alone as `rejected` with the error."""
        try:
            deliveries, outcomes = self._route(record, events)
            result = await self.store.ingest(record, events, deliveries, outcomes)
        except StoreUnavailableError:
            raise
        except Exception as exc:
            if record.status == "rejected":
                raise
            log.exception(
                "relay %s: the events of request %s could not be stored", record.relay, record.id
            )
            record = rejected(record, f"its events could not be stored: {describe(exc)}")
            _, outcomes = self._route(record, [])
            return Kept(record, "store", await self.store.ingest(record, (), (), outcomes))
        self.stored(record.relay, result)
        self.observe(record, events, body)
        if result.deliveries:
            self.wake()
        return Kept(record, "store", result)

    def _route(
        self, record: RequestRecord, events: list[Event]
    ) -> tuple[list[NewDelivery], list[HookOutcome]]:
        with time_budget(self.render_seconds):  # a `when` that runs long is a false one
            return self._route_now(record, events)

    def _route_now(
        self, record: RequestRecord, events: list[Event]
    ) -> tuple[list[NewDelivery], list[HookOutcome]]:
        now = parse_time(record.received_at).timestamp()
        if not self.explain:
            return (
                route(
                    events,
                    self.live.hooks.values(),
                    active=self.live.active(),
                    now=now,
                    new_id=self.new_id,
                )
                if events
                else []
            ), []
        return route_explained(
            record,
            events,
            self.live.hooks.values(),
            active=self.live.active(),
            now=now,
            new_id=self.new_id,
            secrets=self.secrets,
        )

    async def _append(self, record: RequestRecord, reason: str | None) -> Kept:
        assert self.spool is not None
        try:
            await self.spool.call(self.spool.append, record)
        except Exception as exc:
            log.critical(
                "relay %s: request %s is lost: the spool cannot take it either: %s",
                record.relay,
                record.id,
                describe(exc),
            )
            return Kept(record, "nowhere", reason=reason or describe(exc))
        log.warning(
            "relay %s: request %s spooled (%s)",
            record.relay,
            record.id,
            reason or "requests before it wait in the spool",
        )
        self.spooled()
        return Kept(record, "spool", reason=reason)


class SpoolDrainer:
    """Stores what waits in the spool, in order and once by request id, as soon as the store
    takes writes again; then the spool file is emptied. Runs as a background task."""

    def __init__(
        self,
        intake: Intake,
        spool: Spool,
        relay_named: Callable[[str], Relay | None],
        *,
        retry_min: float = 0.1,
        retry_max: float = 2.0,
    ) -> None:
        self.intake = intake
        self.spool = spool
        self.relay_named = relay_named
        self.retry_min = retry_min
        self.retry_max = retry_max
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        delay = self.retry_min
        while True:
            self._wake.clear()
            if not self.spool.depth or await self.drain():
                delay = self.retry_min
                if not self.spool.depth:
                    await self._wake.wait()
                continue
            # The store refused: try again soon, then less and less often.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            delay = min(self.retry_max, delay * 2)

    async def drain(self) -> bool:
        """Store what the spool holds; False when the store stopped taking it."""
        while True:
            entries = await self.spool.call(self.spool.read)
            if not entries:
                return True
            # Started in order, so the writer takes them in order (one group commit).
            kept = await asyncio.gather(
                *(
                    self.intake.keep(self.relay_named(record.relay), record, may_spool=False)
                    for _, record in entries
                )
            )
            done, end = 0, 0
            for (entry_end, record), outcome in zip(entries, kept, strict=True):
                if outcome.where == "nowhere" and outcome.retry:
                    break
                if outcome.where == "nowhere":  # refused for what it is: set aside, go on
                    self.spool.set_aside(record, outcome.reason or "refused by the store")
                done, end = done + 1, entry_end
            if done:
                await self.spool.call(self.spool.drained, end, done)
                log.info("spool: stored %d spooled requests, %d wait", done, self.spool.depth)
            if done < len(entries):
                reason = kept[done].reason
                log.warning(
                    "spool: %d requests wait; the store does not take them yet: %s",
                    self.spool.depth,
                    reason,
                )
                return False
