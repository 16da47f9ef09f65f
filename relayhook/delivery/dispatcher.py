"""The dispatcher: claims due deliveries, sends them through the one `Sender` it is given
(relayhook.delivery.sender: aiohttp in `relayhook serve`, any httpx transport in tests), records
every attempt, and decides what comes next (relayhook.core.retry.decide).

Per hook at most `concurrency` requests are in flight and they are paced by `rate_limit`, both
counted in the store, so that they hold for every dispatcher sharing it together (two workers on
a 25/s hook send 25/s between them); a receiver that hangs holds only its own hook's slots, so
other hooks go on. A delivery is claimed with a lease: if this process dies, another (or this
one, restarted) claims it again when the lease ends, and the receiver sees the same `webhook-id`
again (at-least-once delivery).

Every store call the dispatcher makes has a deadline (`store_deadline`): a call that is never
answered fails with StoreDeadlineError and the loop goes on. Any other exception ends `run`;
the runtime (relayhook.runtime) logs it and runs it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from relayhook.core.events import Event, format_time
from relayhook.core.hooks import Hook, RateLimitSpec
from relayhook.core.outbound import (
    OutboundRequest,
    hook_context,
    record_request,
    redactor,
    render_request,
    should_deliver,
)
from relayhook.core.outcomes import condition_values, describe_outcome
from relayhook.core.pacing import RateLimit
from relayhook.core.retry import decide, parse_retry_after
from relayhook.core.ssrf import refusal_reason, unusual_ipv4
from relayhook.core.templating import RenderError
from relayhook.delivery.sender import Reply, sender_for
from relayhook.live import LiveConfig
from relayhook.store import Attempt, Delivery, Outcome, StoreError, StoreUnavailableError
from relayhook.store.base import DeliveryStore, LiveStore, Topic

if TYPE_CHECKING:
    from relayhook.tracing import Tracing

log = logging.getLogger("relayhook.delivery.dispatcher")

MAX_RESPONSE_BODY = 64 * 1024
T = TypeVar("T")


class StoreDeadlineError(StoreUnavailableError):
    """A store call of the dispatcher got no answer within its deadline."""


class DispatchStore(DeliveryStore, LiveStore, Protocol):
    """A dispatcher claims and finishes, and follows the hooks it switches on and off."""


@dataclass
class _HookLane:
    """What the dispatcher keeps per hook: its requests in flight here, those whose exchange
    is over but whose finish has not committed yet, and its pacing's interval (the pacing state
    itself is in the store, shared)."""

    in_flight: int = 0  # claimed here, sending (or waiting for its pacing slot)
    # Ids of those whose exchange is over, their finish on its way: still `claimed` in the store
    # until it commits, and not counted against the concurrency (`claim_due(answered=...)`).
    answered: set[str] = field(default_factory=set)
    interval: float = 0.0
    rate_spec: RateLimitSpec | None = None


@dataclass
class Dispatcher:
    store: DispatchStore
    registry: LiveConfig
    # relayhook.delivery.http.make_http_transport, or any httpx transport (a mock)
    transport: httpx.AsyncBaseTransport
    secrets: Mapping[str, str]
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rand: random.Random = field(default_factory=random.Random)
    lease_seconds: float = 60.0
    poll_interval: float = 0.5
    refresh_interval: float = 0.5  # a change made elsewhere is seen within this
    owner: str = field(default_factory=lambda: f"worker-{uuid.uuid4().hex[:12]}")
    disable_after: int = 0  # [alerts]: a hook's N-th dead delivery in a row switches it off
    store_deadline: float = 10.0  # seconds each store call may take ([worker] store_deadline)
    # Told of every finished delivery round: (hook name, outcome, attempt); metrics count them.
    report: Callable[[str, Outcome, Attempt | None], None] = lambda hook, outcome, attempt: None
    tracing: Tracing | None = None  # [tracing] on: a span per attempt (relayhook.tracing)

    def __post_init__(self) -> None:
        self._lanes: dict[str, _HookLane] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._last_refresh = 0.0
        self._sender = sender_for(self.transport)
        # Claim rounds and hooks claimed for, answered or not: it moves while the loop lives
        # (the runtime's watchdog looks at it). `rounds`: the rounds the store answered in full
        # (readiness looks at it: deliveries wait and nothing claims).
        self.beats = 0
        self.rounds = 0

    async def _bounded(self, call: Awaitable[T]) -> T:
        """`call` (a store call), given up after `store_deadline` seconds."""
        try:
            async with asyncio.timeout(self.store_deadline):
                return await call
        except TimeoutError:
            raise StoreDeadlineError(
                f"no answer within {self.store_deadline:g} s ([worker] store_deadline)"
            ) from None

    def wake(self) -> None:
        """New deliveries may be due: look now rather than at the next poll."""
        self._wake.set()

    def notice(self, topic: Topic) -> None:
        """What the store tells of other processes' writes (Store.subscribe)."""
        if topic == "config":
            self._last_refresh = float("-inf")  # read the hooks' states at the next round
        self._wake.set()

    async def run(self) -> None:
        """Dispatch until `stop()`; a store failure (or a store call past its deadline) is
        logged and retried. Any other exception ends it: the runtime restarts it."""
        while not self._stopping:
            self._wake.clear()  # before the round: a wake-up during it is not lost
            try:
                claimed = await self._claim_round()
                self.rounds += 1
            except StoreError as exc:
                log.error("dispatcher: the store failed: %s", exc)
                claimed = 0
            self.beats += 1
            if not claimed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; give requests in flight `grace` seconds, then cancel them (their
        leases expire and they are claimed again)."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _claim_round(self) -> int:
        now = self.clock()
        if now - self._last_refresh >= self.refresh_interval:
            await self._bounded(self.registry.refresh(self.store))
            self._last_refresh = now
        claimed = 0
        for name, is_active in self.registry.active().items():
            hook = self.registry.hooks.get(name)
            if hook is None:  # deleted since: its deliveries were cancelled
                continue
            lane = self._lane(hook)
            if not is_active or self._full(hook, lane) or self._stopping:
                continue
            claimed += await self._claim_hook(hook, lane, now)
            self.beats += 1
        return claimed

    async def _claim_hook(self, hook: Hook, lane: _HookLane, now: float) -> int:
        horizon = self._lease(hook) / 4
        if (
            lane.interval
            and await self._bounded(self.store.pacing_wait(hook.name, hook.rate_limit, now))
            > horizon
        ):
            return 0
        # A delivery whose exchange is over does not hold a slot while its finish waits for
        # the writer (the next claim overlaps it): the store leaves those of ours that are
        # still claimed out of its count. Other processes' still count (conservative), so
        # never more than `concurrency` requests are in flight to the receiver.
        batch = await self._bounded(
            self.store.claim_due(
                hook=hook.name,
                now=now,
                limit=hook.concurrency - lane.in_flight,
                lease_seconds=self._lease(hook),
                owner=self.owner,
                ordered=hook.ordered,
                concurrency=self._concurrency(hook, lane),
                answered=tuple(lane.answered),
            )
        )
        verdicts = [self._verdict(hook, delivery) for delivery in batch]
        sending = sum(verdict is None for verdict in verdicts)
        times = iter(
            await self._bounded(self.store.reserve_sends(hook.name, hook.rate_limit, now, sending))
            if lane.interval
            else [now] * sending
        )
        for delivery, verdict in zip(batch, verdicts, strict=True):
            self._start(hook, lane, delivery, verdict, now if verdict else next(times))
        return len(batch)

    def _full(self, hook: Hook, lane: _HookLane) -> bool:
        """No claim for the hook now: `concurrency` requests are in flight, or more than as
        many are answered and wait for their finish to commit. A writer slower than the
        receivers holds the sends back, so that what a crash of this process sends again (sent,
        not yet recorded) is at most twice the concurrency; it used to be hundreds."""
        return hook.concurrency <= lane.in_flight or hook.concurrency < len(lane.answered)

    def _lane(self, hook: Hook) -> _HookLane:
        """The hook's lane; a hook created or changed at run time gets its pacing anew (its
        requests in flight still count)."""
        lane = self._lanes.get(hook.name)
        if lane is None:
            lane = self._lanes[hook.name] = _HookLane(rate_spec=hook.rate_limit)
            lane.interval = RateLimit.from_spec(hook.rate_limit).interval
        elif lane.rate_spec != hook.rate_limit:
            lane.rate_spec = hook.rate_limit
            lane.interval = RateLimit.from_spec(hook.rate_limit).interval
        return lane

    def _lease(self, hook: Hook) -> float:
        """`[delivery] lease_seconds`, but never shorter than a claim's pacing wait (at most a
        quarter of the lease, see _concurrency) plus its request (at most timeout + 1 s): a live
        dispatcher never sees its own delivery claimed again."""
        return max(self.lease_seconds, 4 / 3 * (hook.timeout + 1) + 1)

    def _concurrency(self, hook: Hook, lane: _HookLane) -> int:
        """How many of a hook's deliveries may be claimed at once by all dispatchers: its
        concurrency, and no more than its pacing sends within a quarter of the lease, so that
        no claim waits for its pacing until its lease ends (claims come only while the pacing
        waits less than that quarter: see _claim_hook)."""
        if not lane.interval:
            return hook.concurrency
        return min(hook.concurrency, max(1, int(self._lease(hook) / 4 / lane.interval)))

    def _verdict(self, hook: Hook, delivery: Delivery) -> tuple[Outcome, Attempt | None] | None:
        """The outcome of a delivery that is not sent (its `when` is false, or fails to
        render), else None: it takes a slot of the hook's pacing."""
        assert delivery.event is not None
        try:
            if not should_deliver(hook, delivery.event, self.secrets):
                return Outcome(
                    "skipped", error=skip_reason(hook, delivery.event, self.secrets)
                ), None
        except RenderError as exc:
            return self._failed(hook, delivery, self.clock(), None, "render", str(exc))
        return None

    def _start(
        self,
        hook: Hook,
        lane: _HookLane,
        delivery: Delivery,
        verdict: tuple[Outcome, Attempt | None] | None,
        go_at: float,
    ) -> None:
        lane.in_flight += 1
        task = asyncio.create_task(self._deliver(hook, lane, delivery, verdict, go_at))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self,
        hook: Hook,
        lane: _HookLane,
        delivery: Delivery,
        verdict: tuple[Outcome, Attempt | None] | None,
        go_at: float,
    ) -> None:
        try:
            await self._deliver_and_finish(hook, lane, delivery, verdict, go_at)
        finally:
            lane.answered.discard(delivery.id)
            self._wake.set()

    async def _deliver_and_finish(
        self,
        hook: Hook,
        lane: _HookLane,
        delivery: Delivery,
        verdict: tuple[Outcome, Attempt | None] | None,
        go_at: float,
    ) -> None:
        try:
            try:
                outcome, attempt = verdict or await self._attempt(hook, delivery, go_at)
            finally:  # the exchange is over: its slot is free for the next claim
                lane.in_flight -= 1
                lane.answered.add(delivery.id)
                self._wake.set()
            if outcome.status == "paused":
                await self._bounded(
                    self.registry.set_active(
                        self.store, hook.name, False, outcome.error, self.clock()
                    )
                )
            await self._bounded(
                self.store.finish(
                    delivery.id,
                    owner=self.owner,
                    outcome=outcome,
                    attempt=attempt,
                    disable_after=self.disable_after,
                )
            )
        except asyncio.CancelledError:
            raise
        except StoreDeadlineError as exc:  # it may still commit: leave the rest to the lease
            log.error(
                "dispatcher: cannot record delivery %s of hook %s: %s",
                delivery.id,
                hook.name,
                exc,
                extra={"hook": hook.name, "delivery": delivery.id},
            )
            return
        except Exception as exc:  # one delivery's failure must not stop the others
            log.exception(
                "dispatcher: delivery %s of hook %s failed",
                delivery.id,
                hook.name,
                extra={"hook": hook.name, "delivery": delivery.id},
            )
            await self._record_internal_error(hook, delivery, exc)
            return
        self._tell(hook, delivery, outcome, attempt)
        if outcome.status == "dead" and self.disable_after:
            await self._follow_switch(hook)

    async def _follow_switch(self, hook: Hook) -> None:
        """A dead delivery's `finish` may have switched its hook off (`disable_after`): stop
        claiming for it here at once, and say so."""
        was_active = self.registry.active().get(hook.name, False)
        try:
            await self._bounded(self.registry.refresh(self.store))
        except StoreError as exc:
            log.error("dispatcher: the store failed: %s", exc)
            return
        if was_active and not self.registry.active().get(hook.name, True):
            log.warning(
                "hook %r deactivated: %s; its deliveries wait, paused, until it is activated",
                hook.name,
                self.registry.reason(hook.name),
                extra={"hook": hook.name, "reason": self.registry.reason(hook.name)},
            )

    def _tell(
        self, hook: Hook, delivery: Delivery, outcome: Outcome, attempt: Attempt | None
    ) -> None:
        try:
            self.report(hook.name, outcome, attempt)
        except Exception:  # metrics must never stop a delivery
            log.exception("dispatcher: cannot count delivery %s", delivery.id)
        trace_id = None
        if self.tracing is not None and delivery.event is not None:
            from relayhook.tracing import trace_id_hex

            trace_id = trace_id_hex(delivery.event.request_id)
        log_outcome(hook.name, delivery, outcome, attempt, trace_id=trace_id)

    async def _record_internal_error(self, hook: Hook, delivery: Delivery, exc: Exception) -> None:
        # Recorded as a failed attempt, so the retry schedule moves on and the delivery does
        # not sit claimed until its lease ends, only to fail the same way again and again.
        outcome, attempt = self._failed(
            hook, delivery, self.clock(), None, "internal", f"{type(exc).__name__}: {exc}"
        )
        try:
            await self._bounded(
                self.store.finish(
                    delivery.id,
                    owner=self.owner,
                    outcome=outcome,
                    attempt=attempt,
                    disable_after=self.disable_after,
                )
            )
        except Exception:
            log.exception("dispatcher: cannot record the failure of delivery %s", delivery.id)
            return
        self._tell(hook, delivery, outcome, attempt)

    async def _attempt(
        self, hook: Hook, delivery: Delivery, go_at: float
    ) -> tuple[Outcome, Attempt | None]:
        assert delivery.event is not None
        if go_at > self.clock():
            await self.sleep(go_at - self.clock())
        started = self.clock()
        try:
            request = render_request(
                hook, delivery.event, delivery_id=delivery.id, secrets=self.secrets, now=started
            )
        except RenderError as exc:
            return self._failed(hook, delivery, started, None, "render", str(exc))
        if self.tracing is not None:
            return await self._send_traced(self.tracing, hook, delivery, request, started)
        record = record_request(
            hook,
            delivery.event,
            request,
            delivery_id=delivery.id,
            secrets=self.secrets,
            now=started,
        )
        return await self._send(hook, delivery, request, record, started)

    async def _send_traced(
        self,
        tracing: Tracing,
        hook: Hook,
        delivery: Delivery,
        request: OutboundRequest,
        started: float,
    ) -> tuple[Outcome, Attempt]:
        """`_send` inside the attempt's span, with `traceparent` unless the hook says not."""
        from relayhook.tracing import TRACEPARENT, traceparent

        assert delivery.event is not None
        with tracing.attempt(
            delivery.event.request_id, hook.name, delivery.id, delivery.attempts + 1
        ) as span:
            if hook.traceparent:
                headers = tuple(pair for pair in request.headers if pair[0].lower() != TRACEPARENT)
                request = replace(request, headers=(*headers, (TRACEPARENT, traceparent(span))))
            record = record_request(
                hook,
                delivery.event,
                request,
                delivery_id=delivery.id,
                secrets=self.secrets,
                now=started,
            )
            outcome, attempt = await self._send(hook, delivery, request, record, started)
            span.set_attributes(
                {"relayhook.outcome": outcome.status, "relayhook.duration_ms": attempt.duration_ms}
            )
            if attempt.response_status is not None:
                span.set_attribute("http.response.status_code", attempt.response_status)
            if attempt.error_class is not None:
                span.set_attribute("error.type", attempt.error_class)
            if outcome.status != "succeeded":
                from opentelemetry.trace import StatusCode

                span.set_status(
                    StatusCode.ERROR, attempt.error_class or f"HTTP {attempt.response_status}"
                )
            return outcome, attempt

    async def _send(
        self,
        hook: Hook,
        delivery: Delivery,
        request: OutboundRequest,
        record: dict[str, Any],
        started: float,
    ) -> tuple[Outcome, Attempt]:
        try:
            reply = await self._sender.send(
                request.method,
                request.url,
                request.headers,
                request.body,
                timeout=hook.timeout,
                limit=MAX_RESPONSE_BODY,
            )
        except httpx.InvalidURL as exc:  # e.g. 127.000.000.001, which httpx will not parse
            return self._failed(hook, delivery, started, record, *_unsendable(request.url, exc))
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            error_class, message = classify(exc, hook.timeout)
            message = redactor(self.secrets, hook.secret_places)(message)  # a URL's token
            return self._failed(hook, delivery, started, record, error_class, message)
        attempt = Attempt(
            delivery_id=delivery.id,
            number=delivery.attempts + 1,
            started_at=started,
            duration_ms=(self.clock() - started) * 1000,
            request=record,
            response_status=reply.status,
            response_headers=reply.headers,
            response_body=reply.body,
            error_class=None,
            error=None,
        )
        retry_after = parse_retry_after(_header(reply, "retry-after"), self.clock())
        outcome = decide(
            status=reply.status,
            error_class=None,
            error=None,
            retry_after=retry_after,
            tries=delivery.tries + 1,
            schedule=hook.retry.schedule,
            jitter=hook.retry.jitter,
            now=self.clock(),
            rand=self.rand,
        )
        return outcome, attempt

    def _failed(
        self,
        hook: Hook,
        delivery: Delivery,
        started: float,
        record: dict[str, object] | None,
        error_class: str,
        message: str,
    ) -> tuple[Outcome, Attempt]:
        attempt = Attempt(
            delivery_id=delivery.id,
            number=delivery.attempts + 1,
            started_at=started,
            duration_ms=(self.clock() - started) * 1000,
            request=record or {},
            response_status=None,
            response_headers=(),
            response_body=b"",
            error_class=error_class,
            error=message,
        )
        outcome = decide(
            status=None,
            error_class=error_class,
            error=message,
            retry_after=None,
            tries=delivery.tries + 1,
            schedule=hook.retry.schedule,
            jitter=hook.retry.jitter,
            now=self.clock(),
            rand=self.rand,
        )
        return outcome, attempt


def skip_reason(hook: Hook, event: Event, secrets: Mapping[str, str]) -> str:
    """`condition false: event.data.x = False`, kept as the skipped delivery's last error."""
    assert hook.when is not None
    values = condition_values(hook.when.source, hook_context(hook, event, secrets))
    return describe_outcome("condition_false", {"condition_false": {"values": values}})


def _header(reply: Reply, name: str) -> str | None:
    """A response header (`name` in lower case), its values joined as httpx joins them."""
    return ", ".join(value for key, value in reply.headers if key == name) or None


def log_outcome(
    hook: str,
    delivery: Delivery,
    outcome: Outcome,
    attempt: Attempt | None,
    trace_id: str | None = None,
) -> None:
    """One line per failed attempt (with its next try), dead delivery or pause; debug for the
    rest. Names the hook, the delivery and the status or error class (and the trace, when
    tracing is on), never the URL or headers (they may hold secrets; the history has them,
    redacted)."""
    number = delivery.attempts + (attempt is not None)
    fields: dict[str, object] = {"hook": hook, "delivery": delivery.id, "attempt": number}
    if trace_id is not None:
        fields["trace_id"] = trace_id
    if attempt is not None and attempt.response_status is not None:
        what = f"HTTP {attempt.response_status}"
        fields["status"] = attempt.response_status
    elif attempt is not None and attempt.error_class is not None:
        what = f"{attempt.error_class}: {(attempt.error or '')[:300]}"
        fields["error_class"] = attempt.error_class
    else:
        what = outcome.error or outcome.status
    if outcome.status == "failed" and outcome.due_at is not None:
        next_try = format_time(datetime.fromtimestamp(outcome.due_at, UTC))
        log.warning(
            "hook %r: delivery %s attempt %d failed (%s); next try at %s",
            hook,
            delivery.id,
            number,
            what,
            next_try,
            extra={**fields, "next_try": next_try},
        )
    elif outcome.status == "dead":
        log.error(
            "hook %r: delivery %s is dead after attempt %d (%s); relayhook replay sends it again",
            hook,
            delivery.id,
            number,
            what,
            extra=fields,
        )
    elif outcome.status == "paused":
        log.warning("hook %r: delivery %s paused (%s)", hook, delivery.id, what, extra=fields)
    else:
        log.debug(
            "hook %r: delivery %s %s (attempt %d)",
            hook,
            delivery.id,
            outcome.status,
            number,
            extra=fields,
        )


def _unsendable(url: str, exc: httpx.InvalidURL) -> tuple[str, str]:
    odd = unusual_ipv4(urlsplit(url).hostname or "")
    if odd is not None:
        return "destination", f"destination refused: the host is {odd}"
    return "render", f"the rendered URL cannot be sent: {exc}"


def classify(exc: BaseException, timeout: float) -> tuple[str, str]:
    reason = refusal_reason(exc)
    if reason is not None:
        return "destination", f"destination refused: {reason}"
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timeout", f"no answer within {timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        return "connect", f"cannot connect: {exc}"
    return "network", f"{type(exc).__name__}: {exc}"
