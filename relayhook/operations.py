"""Actions on records: what the JSON API, the console and the CLI call to replay, acknowledge,
send a test, pin a sample, dry-run a condition and choose the event a hook is shown with.
`relayhook.manage` owns the configuration (relays, hooks); this owns what is done to what was
received and sent. The callers translate their inputs and these errors; none of them touches
the store for these actions.

    ops = parts.operations
    await ops.replay_delivery(delivery_id)                   # 1
    job = ops.start_replay(DeliveryFilter(hook="crm", statuses=("dead",)), total)
    chosen = await ops.choose_event(hook, sample="Ana quiz")
    sent = await ops.send_test(hook, chosen.event)           # test = True, never counted

Errors: NotFoundError, ConflictError (a delivery being sent, a problem not open, a sample name
taken), InvalidError (each problem at its key path).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from relayhook.core.connectors import Connector
from relayhook.core.events import Event, format_time
from relayhook.core.examples import example_event, newest_event, recent_events
from relayhook.core.hooks import Hook
from relayhook.core.outbound import record_request, redactor, render_request
from relayhook.core.records import (
    Attempt,
    DeliveryFilter,
    NewDelivery,
    Outcome,
    Problem,
    RequestRecord,
    Sample,
)
from relayhook.core.samples import (
    MAX_DRY_RUN,
    DryRun,
    dry_run,
    pin_event,
    pin_request,
    sample_event,
    with_condition,
)
from relayhook.core.ssrf import DestinationPolicy, Resolver
from relayhook.core.templating import RenderError, time_budget
from relayhook.delivery.dispatcher import MAX_RESPONSE_BODY, classify
from relayhook.delivery.http import make_http_transport
from relayhook.delivery.sender import Sender, sender_for
from relayhook.errors import ConflictError, InvalidError, NotFoundError, SpecError
from relayhook.live import LiveConfig
from relayhook.relays import Relay
from relayhook.remap import remap_request, run_again
from relayhook.store.base import RecordsStore

REPLAY_PAGE = 200  # deliveries a bulk replay reads and makes due again at a time
MAX_JOBS = 100  # bulk replays remembered in this process (the finished ones go first)
PINNED_EVENTS = 1000  # events of one request a sample keeps
DRY_RUN_SECONDS = 1.0  # CPU time for all the renders of one dry run
# A test send's request is kept under this relay (not a possible relay name), so that a test
# never counts as traffic a relay received (its summary, "Wired."); its event keeps its relay.
TEST_RELAY = "(test)"


@dataclass
class ReplayJob:
    """A bulk replay: `done` of about `total`, cancellable between pages."""

    id: str
    hook: str | None
    total: int
    done: int = 0
    cancelled: bool = False
    finished: bool = False
    error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class NotOpenError(ConflictError):
    """Only an open problem is acknowledged; `problem` is the one that is not."""

    def __init__(self, problem: Problem) -> None:
        super().__init__("only an open problem is acknowledged")
        self.problem = problem


@dataclass(frozen=True, slots=True)
class ChosenEvent:
    """The event a hook is previewed, rendered or tested with, and where it came from."""

    event: Event
    source: str  # "sample 'Ana quiz'", "the newest matching event received", ...


@dataclass(frozen=True, slots=True)
class TestSend:
    """A test send, done and kept: the request as recorded (secrets redacted) and its answer."""

    delivery_id: str
    event: Event
    request: dict[str, Any]
    attempt: Attempt
    outcome: Outcome


class Operations:
    def __init__(
        self,
        store: RecordsStore,
        live: LiveConfig,
        connectors: Mapping[str, Connector],
        *,
        policy: DestinationPolicy,
        secrets: Mapping[str, str],
        new_id: Callable[[], str],
        wake: Callable[[], None],
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.live, self.connectors = store, live, connectors
        self.policy, self.secrets, self.new_id, self.wake = policy, secrets, new_id, wake
        self.resolver, self.clock = resolver, clock
        self._transport = transport  # the caller's: never closed here
        self._own_sender: Any = None  # made at the first test send, closed by aclose()
        self.jobs: dict[str, ReplayJob] = {}

    async def aclose(self) -> None:
        """Close the client a test send opened (not a transport passed in)."""
        sender, self._own_sender = self._own_sender, None
        if sender is not None:
            await sender.aclose()

    # -- replay

    async def replay_delivery(self, delivery_id: str) -> int:
        """Make one delivery due again; ConflictError while it is being sent."""
        found = await self.store.get_delivery(delivery_id)
        if found is None:
            raise NotFoundError("no such delivery")
        if found[0].status == "claimed":
            raise ConflictError("the delivery is being sent right now")
        count = await self.store.replay(now=self.clock(), delivery_id=delivery_id)
        self.wake()
        return count

    async def count_matching(self, where: DeliveryFilter) -> int:
        """How many deliveries a bulk replay of `where` takes (test sends are history)."""
        return await self.store.count_found_deliveries(dataclasses.replace(where, tests=False))

    async def replay_matching(
        self,
        where: DeliveryFilter,
        job: ReplayJob | None = None,
        on_page: Callable[[ReplayJob], None] | None = None,
    ) -> int:
        """Make every delivery matching `where` due again, a page of REPLAY_PAGE at a time,
        until none is left or `job.cancelled`; `job.done` counts them as they go. Claimed ones
        are being sent and test sends are history: both are left as they are."""
        job = job or ReplayJob(id="", hook=where.hook, total=0)
        where = dataclasses.replace(where, tests=False)
        before: str | None = None
        for _ in range(1_000_000):  # bounded: pages until none is left
            if job.cancelled:
                break
            page = await self.store.find_deliveries(where, limit=REPLAY_PAGE, before=before)
            if not page:
                break
            before = page[-1].id
            now = self.clock()
            # One replay per delivery, all at once: the store commits them together.
            counts = await asyncio.gather(
                *(
                    self.store.replay(now=now, delivery_id=d.id)
                    for d in page
                    if d.status != "claimed"
                )
            )
            job.done += sum(counts)
            self.wake()
            if on_page is not None:
                on_page(job)
            if len(page) < REPLAY_PAGE:
                break
        return job.done

    def start_replay(self, where: DeliveryFilter, total: int) -> ReplayJob:
        """`replay_matching` in the background of this process, followed by `replay_job`."""
        for old in [j for j in self.jobs.values() if j.finished][
            : max(0, len(self.jobs) - MAX_JOBS + 1)
        ]:
            del self.jobs[old.id]
        job = ReplayJob(id=self.new_id(), hook=where.hook, total=total)
        self.jobs[job.id] = job
        job.task = asyncio.create_task(self._run_job(job, where))
        return job

    async def _run_job(self, job: ReplayJob, where: DeliveryFilter) -> None:
        try:
            await self.replay_matching(where, job)
        except Exception as exc:  # shown with the job: the replay stops, nothing is lost
            job.error = str(exc)
        finally:
            job.finished = True

    def replay_job(self, job_id: str) -> ReplayJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFoundError("no replay with this id runs in this process")
        return job

    async def cancel_replay(self, job_id: str, grace: float = 5.0) -> ReplayJob:
        """Stop the job after the page it is on (waiting up to `grace` seconds for that)."""
        job = self.replay_job(job_id)
        job.cancelled = True
        if job.task is not None:
            await asyncio.wait({job.task}, timeout=grace)
        return job

    # -- problems

    async def problem(self, problem_id: str) -> Problem:
        problem = await self.store.get_problem(problem_id)
        if problem is None:
            raise NotFoundError("no such problem")
        return problem

    async def acknowledge_problem(self, problem_id: str) -> Problem:
        """Someone is on it. NotOpenError (a ConflictError) for a problem that is not open."""
        problem = await self.problem(problem_id)
        if not await self.store.acknowledge_problem(problem.id, at=self.clock()):
            raise NotOpenError(await self.problem(problem_id))
        return await self.problem(problem_id)

    async def replay_problem(self, problem_id: str) -> tuple[int, Problem]:
        """Replay affected: the problem's deliveries due again. How many, and the problem."""
        problem = await self.problem(problem_id)
        count = await self.store.replay_problem(problem.id, now=self.clock())
        self.wake()
        return count, problem

    # -- kept requests: map again, run again

    async def kept_request(self, request_id: str) -> RequestRecord:
        record = await self.store.get_request(request_id)
        if record is None:
            raise NotFoundError("no such request")
        return record

    async def map_again(self, record: RequestRecord) -> str:
        """Map a kept request again with its relay's connector now (`relayhook remap`, Map
        again); what became of it, in words."""
        message = await remap_request(
            record,
            self._relays_by_name(),
            self.store,
            self.live,
            self.clock(),
            self.secrets,
            self.new_id,
        )
        self.wake()
        return message

    async def run_again(self, record: RequestRecord) -> str:
        """Route a kept request again with the hooks as they are now (Run again); in words."""
        message = await run_again(
            record,
            self._relays_by_name(),
            self.store,
            self.live,
            self.clock(),
            self.secrets,
            self.new_id,
        )
        self.wake()
        return message

    def _relays_by_name(self) -> dict[str, Relay]:
        return {relay.name: relay for relay in self.live.relays.values()}

    # -- samples and dry runs

    async def pin_sample(self, name: str, request_id: str, event_id: str | None = None) -> Sample:
        """Pin a stored request (with its events), or one event of it, under `name`."""
        record = await self.store.get_request(request_id)
        if record is None:
            raise NotFoundError(f"no stored request {request_id!r}")
        events = await self.store.list_events(request_id=request_id, limit=PINNED_EVENTS)
        at = self.clock()
        try:
            if event_id is None:
                sample = pin_request(name, record, events, at)
            else:
                event = next((e for e in events if e.id == event_id), None)
                if event is None:
                    raise NotFoundError(f"request {request_id!r} has no event {event_id!r}")
                sample = pin_event(name, event, at)
        except ValueError as exc:
            raise InvalidError([SpecError(("name",), str(exc))]) from exc
        if not await self.store.save_sample(sample):
            raise ConflictError(f"a sample named {sample.name!r} exists already")
        return sample

    async def dry_run(self, hook: Hook, when: str | None, limit: int) -> DryRun:
        """The condition `when` over the last `limit` stored events the hook takes."""
        try:
            hook = with_condition(hook, when)
        except SpecError as exc:
            raise InvalidError([exc]) from exc
        events = await recent_events(self.store, hook, min(max(limit, 1), MAX_DRY_RUN))
        with time_budget(DRY_RUN_SECONDS):  # the whole trial, on the event loop: bounded
            return dry_run(hook, events, self.secrets)

    # -- the event a hook is shown or tested with

    async def choose_event(
        self, hook: Hook, *, sample: str | None = None, newest: bool = False, example: bool = True
    ) -> ChosenEvent:
        """A saved `sample`'s event the hook takes; else, with `newest`, the newest stored event
        it takes; else (when `example`) its connector's example, of the hook's relays first.
        NotFoundError says which was missing."""
        if sample is not None:
            saved = await self.store.get_sample(sample)
            if saved is None:
                names = [s.name for s in await self.store.list_samples()]
                raise NotFoundError(
                    f"no sample named {sample!r} (samples: {', '.join(names) or 'none'})"
                )
            event = sample_event(saved, hook)
            if event is None:
                raise NotFoundError(
                    f"sample {saved.name!r} holds no event: its request mapped to none"
                )
            return ChosenEvent(event, f"sample {saved.name!r}")
        if newest:
            event = await newest_event(self.store, hook)
            if event is not None:
                return ChosenEvent(event, "the newest matching event received")
            if not example:
                raise NotFoundError(
                    f"hook {hook.name!r}: no stored event matches {hook.spec.events}"
                )
        sources = [(r.connector, r.name) for r in self.live.relays.values()]
        sources += [(c, c.id) for c in self.connectors.values()]
        event = example_event(hook, sources)
        if event is None:
            raise NotFoundError(
                f"hook {hook.name!r}: no connector's example makes an event it"
                f" takes ({', '.join(hook.spec.events)})"
            )
        return ChosenEvent(
            event,
            "the connector's example" + (" (no matching event received yet)" if newest else ""),
        )

    # -- test sends

    async def send_test(self, hook: Hook, event: Event) -> TestSend:
        """Send a copy of `event` through the hook now, through the Sender the dispatcher
        uses, and keep it in the hook's history marked test (request, event and delivery).
        A test is history, not work: it counts toward no problem, no `disable_after` and no
        streak, and is sent whether the hook is active or not (a person asked for it)."""
        event = dataclasses.replace(event, id=self.new_id())  # a copy: the test is its own
        delivery_id = self.new_id()
        started = self.clock()
        try:
            request = render_request(
                hook, event, delivery_id=delivery_id, secrets=self.secrets, now=started
            )
        except RenderError as exc:
            attempt = self._attempt(delivery_id, started, {}, error=("render", str(exc)))
            return await self._keep(hook, event, delivery_id, started, {}, attempt)
        # As the history keeps it: secrets masked by place and by what templates derive.
        record = record_request(
            hook, event, request, delivery_id=delivery_id, secrets=self.secrets, now=started
        )
        try:
            reply = await self._sender().send(
                request.method,
                request.url,
                request.headers,
                request.body,
                timeout=hook.timeout,
                limit=MAX_RESPONSE_BODY,
            )
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            error_class, message = classify(exc, hook.timeout)
            message = redactor(self.secrets, hook.secret_places)(message)  # a URL's token
            attempt = self._attempt(delivery_id, started, record, error=(error_class, message))
        else:
            attempt = dataclasses.replace(
                self._attempt(delivery_id, started, record),
                response_status=reply.status,
                response_headers=reply.headers,
                response_body=reply.body,
            )
        return await self._keep(hook, event, delivery_id, started, record, attempt)

    def _sender(self) -> Sender:
        if self._transport is not None:
            return sender_for(self._transport)
        if self._own_sender is None:
            self._own_sender = make_http_transport(
                self.policy, resolver=self.resolver, max_connections=4
            )
        sender: Sender = self._own_sender
        return sender

    def _attempt(
        self,
        delivery_id: str,
        started: float,
        record: dict[str, Any],
        *,
        error: tuple[str, str] | None = None,
    ) -> Attempt:
        return Attempt(
            delivery_id,
            1,
            started,
            (self.clock() - started) * 1000,
            record,
            None,
            (),
            b"",
            error[0] if error else None,
            error[1] if error else None,
        )

    async def _keep(
        self,
        hook: Hook,
        event: Event,
        delivery_id: str,
        started: float,
        record: dict[str, Any],
        attempt: Attempt,
    ) -> TestSend:
        status = attempt.response_status
        if status is not None and 200 <= status < 300:
            outcome = Outcome("succeeded", response_status=status)
        elif status is not None:
            outcome = Outcome("dead", response_status=status, error=f"HTTP {status}")
        else:
            outcome = Outcome("dead", error=attempt.error)
        body = orjson.dumps(event.to_cloudevent())
        received = format_time(datetime.fromtimestamp(started, UTC))
        test_request = RequestRecord(
            id=self.new_id(),
            relay=TEST_RELAY,
            received_at=received,
            method="POST",
            query="",
            headers=(("content-type", "application/json"),),
            body=body,
            status="accepted",
            test=True,
        )
        delivery = NewDelivery(delivery_id, event.id, hook.name, event.subject, "pending", started)
        await self.store.record_test(test_request, event, delivery, attempt, outcome)
        return TestSend(delivery_id, event, record, attempt, outcome)
