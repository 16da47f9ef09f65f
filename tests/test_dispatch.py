"""The dispatcher over a real SQLite store and a mock receiver, in fake time.

Each test ingests events (routed as the ingress routes them), then drives the dispatcher one
claim round at a time (`drain`): claim what is due now, wait for a request to finish, claim
again, until nothing is due and nothing is in flight. Time moves only when a test advances it
or when the dispatcher sleeps (pacing), so due times and Retry-After are exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from relayhook.core.events import Event
from relayhook.core.hooks import build_hooks
from relayhook.core.routing import route
from relayhook.core.ssrf import DestinationRefused
from relayhook.delivery.dispatcher import MAX_RESPONSE_BODY, Dispatcher
from relayhook.live import LiveConfig
from relayhook.store import Attempt, Delivery, Outcome, RequestRecord, SQLiteStore

T = TypeVar("T")
NOW = 1_714_564_800.0
URL = "https://receiver.example/in"
NO_JITTER = {"schedule": [0, 5, 60], "jitter": 0}

Handler = Callable[[httpx.Request], "httpx.Response | Awaitable[httpx.Response]"]


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """A whole scenario, bounded: a dispatcher that hangs fails the test instead."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class FakeTime:
    """A clock that moves when a test advances it, or when the dispatcher sleeps: a sleep ends
    at once with the clock at its wake-up time (sleepers sleep side by side, so after several
    the clock is at the latest)."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Body(httpx.AsyncByteStream):
    """A response body streamed in chunks, as the real transport hands it over."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def respond(status: int = 200, *chunks: bytes, headers: Any = ()) -> httpx.Response:
    return httpx.Response(status, headers=list(headers), stream=Body(*(chunks or (b"ok",))))


def make_event(
    n: int,
    *,
    subject: str | None = "amit@gmetri.com",
    type: str = "gmetri.rule.triggered",
    data: Any = None,
) -> Event:
    return Event(
        id=f"evt-{n}",
        source="https://gmetri.com",
        type=type,
        subject=subject,
        time="2024-05-01T12:00:00.000Z",
        data={"n": n} if data is None else data,
        relay="prod",
    )


def sent_event(request: httpx.Request) -> dict[str, Any]:
    """The event a request carries (the default body: the whole event as JSON)."""
    body: dict[str, Any] = json.loads(request.content)
    return body


@dataclass
class Seen:
    request: httpx.Request
    at: float

    @property
    def webhook_id(self) -> str | None:
        return self.request.headers.get("webhook-id")


@dataclass
class Rig:
    store: SQLiteStore
    registry: LiveConfig
    dispatcher: Dispatcher
    time: FakeTime
    seen: list[Seen] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    async def ingest(self, *events: Event) -> list[str]:
        """Store events with their deliveries, routed as the ingress does; the delivery ids."""
        n = next(self._ids)
        deliveries = route(
            events,
            self.registry.hooks.values(),
            active=self.registry.active(),
            now=self.time.now,
            new_id=lambda: f"dlv-{n}-{next(self._ids)}",
        )
        record = RequestRecord(
            id=f"req-{n}",
            relay="prod",
            received_at="2024-05-01T12:00:00Z",
            method="POST",
            query="",
            headers=(),
            body=b"{}",
            status="accepted",
        )
        result = await self.store.ingest(record, list(events), deliveries)
        assert result.deliveries == len(deliveries)
        return [d.id for d in deliveries]

    async def drain(self, rounds: int = 10_000) -> None:
        """Claim and deliver until nothing is due now and nothing is in flight."""
        dispatcher = self.dispatcher
        for _ in range(rounds):
            claimed = await dispatcher._claim_round()
            if dispatcher._tasks:
                await asyncio.wait(set(dispatcher._tasks), return_when=asyncio.FIRST_COMPLETED)
            elif not claimed:
                return
        raise AssertionError("the dispatcher did not settle")

    async def get(self, delivery_id: str) -> tuple[Delivery, list[Attempt]]:
        found = await self.store.get_delivery(delivery_id)
        assert found is not None, delivery_id
        return found


@contextlib.asynccontextmanager
async def open_rig(
    tmp_path: Path, hooks: list[dict[str, Any]], handler: Handler, **dispatcher_args: Any
) -> AsyncIterator[Rig]:
    fake = FakeTime()
    registry = LiveConfig(
        build_hooks([{"events": ["*"], "url": URL, **spec} for spec in hooks], "cfg")
    )
    store = SQLiteStore(tmp_path / "relayhook.db")
    await store.open()
    seen: list[Seen] = []

    async def record(request: httpx.Request) -> httpx.Response:
        seen.append(Seen(request, fake.now))
        response = handler(request)
        return await response if isinstance(response, Awaitable) else response

    client = httpx.MockTransport(record)
    dispatcher = Dispatcher(
        store,
        registry,
        client,
        {"token": "s3cr3t-token"},
        clock=fake.clock,
        sleep=fake.sleep,
        rand=random.Random(7),
        **dispatcher_args,
    )
    try:
        await registry.sync(store, fake.now)
        yield Rig(store, registry, dispatcher, fake, seen)
    finally:
        await dispatcher.stop(grace=1.0)
        await client.aclose()
        await store.close()


def always(response: Callable[[], httpx.Response]) -> Handler:
    return lambda request: response()


def in_turn(*responses: httpx.Response | Exception) -> Handler:
    """Answer each request with the next response (or raise the next exception)."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handler


# -- one delivery -----------------------------------------------------------------------------


def test_a_delivery_succeeds_and_its_attempt_is_recorded(tmp_path: Path) -> None:
    async def scenario() -> None:
        handler = always(lambda: respond(200, b"thanks", headers=[("x-receiver", "r1")]))
        async with open_rig(tmp_path, [{"name": "h", "retry": NO_JITTER}], handler) as rig:
            [delivery_id] = await rig.ingest(make_event(1))
            await rig.drain()
            delivery, attempts = await rig.get(delivery_id)
            assert (delivery.status, delivery.tries, delivery.attempts) == ("succeeded", 1, 1)
            assert (delivery.last_status, delivery.last_error) == (200, None)
            assert delivery.lease_until is None
            [attempt] = attempts
            assert attempt.number == 1
            assert attempt.started_at == NOW
            assert attempt.duration_ms >= 0
            assert attempt.response_status == 200
            assert ("x-receiver", "r1") in attempt.response_headers
            assert attempt.response_body == b"thanks"
            assert (attempt.error_class, attempt.error) == (None, None)
            assert attempt.request["method"] == "POST"
            assert attempt.request["url"] == URL
            assert ["webhook-id", delivery_id] in attempt.request["headers"]
            assert json.loads(attempt.request["body"])["id"] == "evt-1"
            [seen] = rig.seen
            assert seen.webhook_id == delivery_id
            assert sent_event(seen.request)["id"] == "evt-1"

    run(scenario())


def test_a_response_the_transport_has_already_read_is_recorded(tmp_path: Path) -> None:
    # httpx.Response(200, text=...) is what a MockTransport handler usually returns; its body
    # is read already. The dispatcher must record it like a streamed one.
    async def scenario() -> None:
        handler = always(lambda: httpx.Response(200, text="ok"))
        async with open_rig(tmp_path, [{"name": "h", "retry": NO_JITTER}], handler) as rig:
            [delivery_id] = await rig.ingest(make_event(1))
            await rig.drain()
            delivery, attempts = await rig.get(delivery_id)
            assert delivery.status == "succeeded"
            assert [a.response_body for a in attempts] == [b"ok"]

    run(scenario())


def test_secrets_are_redacted_in_the_recorded_request(tmp_path: Path) -> None:
    async def scenario() -> None:
        hook = {
            "name": "h",
            "headers": {"Authorization": "Bearer {{ secrets.token }}"},
            "url": URL + "?key={{ secrets.token }}",
        }
        async with open_rig(tmp_path, [hook], always(respond)) as rig:
            [delivery_id] = await rig.ingest(make_event(1))
            await rig.drain()
            _, [attempt] = await rig.get(delivery_id)
            assert rig.seen[0].request.headers["authorization"] == "Bearer s3cr3t-token"
            assert "s3cr3t-token" not in json.dumps(attempt.request)
            assert ["authorization", "Bearer [redacted]"] in attempt.request["headers"]

    run(scenario())


@pytest.mark.parametrize(
    ("responses", "status", "last_status", "error"),
    [
        pytest.param([respond(204)], "succeeded", 204, None, id="204"),
        pytest.param(
            [respond(302, headers=[("location", "https://elsewhere.example/")])],
            "failed",
            302,
            "HTTP 302",
            id="302 is a failure, not followed",
        ),
        pytest.param([respond(404)], "failed", 404, "HTTP 404", id="404"),
        pytest.param([respond(500)], "failed", 500, "HTTP 500", id="500"),
    ],
)
def test_what_an_answer_makes_of_a_delivery(
    tmp_path: Path,
    responses: list[httpx.Response],
    status: str,
    last_status: int,
    error: str | None,
) -> None:
    async def scenario() -> None:
        async with open_rig(
            tmp_path, [{"name": "h", "retry": NO_JITTER}], in_turn(*responses)
        ) as rig:
            [delivery_id] = await rig.ingest(make_event(1))
            await rig.drain()
            delivery, attempts = await rig.get(delivery_id)
            assert (delivery.status, delivery.last_status, delivery.last_error) == (
                status,
                last_status,
                error,
            )
            assert len(rig.seen) == 1 and len(attempts) == 1

    run(scenario())


# -- retries ----------------------------------------------------------------------------------


def test_a_500_is_retried_per_schedule_then_succeeds(tmp_path: Path) -> None:
    async def scenario() -> None:
        handler = in_turn(respond(500), respond(500), respond(200))
        async with open_rig(tmp_path, [{"name": "h", "retry": NO_JITTER}], handler) as rig:
            [delivery_id] = await rig.ingest(make_event(1))
            await rig.drain()
            delivery, _ = await rig.get(delivery_id)
            assert (delivery.status, delivery.due_at, delivery.tries) == ("failed", NOW + 5, 1)

            rig.time.advance(4.9)
            await rig.drain()
            assert len(rig.seen) == 1  # not due yet

            rig.time.advance(0.1)
            await rig.drain()
            delivery, _ = await rig.get(delivery_id)
            assert (delivery.status, delivery.due_at, delivery.tries) == ("failed", NOW + 5 + 60, 2)

            rig.time.advance(60)
            await rig.drain()
            delivery, attempts = await rig.get(delivery_id)
            assert (delivery.status, delivery.tries, delivery.attempts) == ("succeeded", 3, 3)
            assert [a.response_status for a in attempts] == [500, 500, 200]
            assert [a.started_at for a in attempts] == [NOW, NOW + 5, NOW + 65]
            assert [s.webhook_id for s in rig.seen] == [delivery_id] * 3

    run(scenario())


def test_a_spent_schedule_makes_the_delivery_dead(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_rig(
            tmp_path, [{"name": "h", "retry": NO_JITTER}], always(lambda: respond(503))
        ) as rig:
            [delivery_id] = await rig.ingest(make_event(1))
            for wait in (0, 5, 60, 3600):
                rig.time.advance(wait)
                await rig.drain()
            delivery, attempts = await rig.get(delivery_id)
            assert delivery.status == "dead"
            assert delivery.last_error == "HTTP 503 (after 3 attempts)"
            assert len(attempts) == 3 and len(rig.seen) == 3

    run(scenario())


def test_jitter_comes_from_the_injected_random(tmp_path: Path) -> None:
    async def scenario() -> float:
        path = tmp_path / f"run-{len(list(tmp_path.iterdir()))}"
        path.mkdir()
        retry = {"schedule": [0, 100], "jitter": 0.5}
        async with open_rig(
            path, [{"name": "h", "retry": retry}], always(lambda: respond(500))
        ) as rig:
            [delivery_id] = await rig.ingest(make_event(1))
            await rig.drain()
            delivery, _ = await rig.get(delivery_id)
            return delivery.due_at

    first, second = run(scenario()), run(scenario())
    assert first == second  # the same seed
    assert NOW + 50 <= first <= NOW + 150 and first != NOW + 100


@pytest.mark.parametrize(
    ("status", "retry_after", "due_in"),
    [
        pytest.param(429, "30", 30.0, id="429, seconds"),
        pytest.param(503, formatdate(NOW + 120, usegmt=True), 120.0, id="503, an HTTP date"),
        pytest.param(429, "1", 5.0, id="a shorter Retry-After keeps the schedule"),
        pytest.param(429, None, 5.0, id="429 without Retry-After"),
        pytest.param(429, "soon", 5.0, id="unreadable Retry-After"),
        pytest.param(429, b"\xb2", 5.0, id="Retry-After of a superscript two (Latin-1)"),
    ],
)
def test_retry_after_is_honoured(
    tmp_path: Path, status: int, retry_after: str | bytes | None, due_in: float
) -> None:
    async def scenario() -> None:
        headers = (
            []
            if retry_after is None
            else [
                (
                    b"retry-after",
                    retry_after.encode() if isinstance(retry_after, str) else retry_after,
                )
            ]
        )
        handler = in_turn(respond(status, headers=headers), respond(200))
        async with open_rig(tmp_path, [{"name": "h", "retry": NO_JITTER}], handler) as rig:
            [delivery_id] = await rig.ingest(make_event(1))
            await rig.drain()
            delivery, attempts = await rig.get(delivery_id)
            assert (delivery.status, delivery.last_status) == ("failed", status)
            assert delivery.due_at == NOW + due_in
            assert len(attempts) == 1

            rig.time.advance(due_in - 0.5)
            await rig.drain()
            assert len(rig.seen) == 1  # no sooner than Retry-After
            rig.time.advance(0.5)
            await rig.drain()
            delivery, _ = await rig.get(delivery_id)
            assert delivery.status == "succeeded"

    run(scenario())


# -- errors -----------------------------------------------------------------------------------


def refused() -> httpx.ConnectError:
    try:
        raise DestinationRefused("10.0.0.1 is a private address")
    except DestinationRefused as exc:
        error = httpx.ConnectError("refused")
        error.__cause__ = exc
        return error


@pytest.mark.parametrize(
    ("error", "error_class", "status"),
    [
        pytest.param(
            httpx.ConnectTimeout("connect timed out"), "timeout", "failed", id="ConnectTimeout"
        ),
        pytest.param(httpx.ReadTimeout("read timed out"), "timeout", "failed", id="ReadTimeout"),
        pytest.param(
            httpx.ConnectError("connection refused"), "connect", "failed", id="ConnectError"
        ),
        pytest.param(
            httpx.RemoteProtocolError("peer closed"), "network", "failed", id="RemoteProtocolError"
        ),
        pytest.param(refused(), "destination", "dead", id="a refused destination: dead at once"),
    ],
)
def test_a_network_error_is_classified_and_recorded(
    tmp_path: Path, error: Exception, error_class: str, status: str
) -> None:
    async def scenario() -> None:
        async with open_rig(tmp_path, [{"name": "h", "retry": NO_JITTER}], in_turn(error)) as rig:
            [delivery_id] = await rig.ingest(make_event(1))
            await rig.drain()
            delivery, [attempt] = await rig.get(delivery_id)
            assert delivery.status == status
            assert delivery.due_at == (NOW + 5 if status == "failed" else NOW)
            assert delivery.last_status is None
            assert (attempt.error_class, attempt.response_status) == (error_class, None)
            assert attempt.error == delivery.last_error
            assert attempt.request["url"] == URL  # the request as it was sent

    run(scenario())


def test_a_render_error_is_dead_at_once_and_sends_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        hook = {"name": "h", "url": URL + "/{{ event.data.missing }}", "retry": NO_JITTER}
        async with open_rig(tmp_path, [hook], always(respond)) as rig:
            [delivery_id] = await rig.ingest(make_event(1))
            await rig.drain()
            delivery, [attempt] = await rig.get(delivery_id)
            assert delivery.status == "dead"
            assert attempt.error_class == "render"
            assert attempt.error is not None and attempt.error.startswith("url: ")
            assert delivery.last_error == attempt.error
            assert rig.seen == []

    run(scenario())


def test_a_template_attack_fails_only_its_delivery(tmp_path: Path) -> None:
    async def scenario() -> None:
        hooks = [
            {
                "name": "attack",
                "body": {
                    "a": "{% for a in range(10**6) %}{% for b in "
                    "range(10**6) %}x{% endfor %}{% endfor %}"
                },
            },
            {"name": "fine"},
        ]
        async with open_rig(tmp_path, hooks, always(respond)) as rig:
            attack_id, fine_id = await rig.ingest(make_event(1))
            started = time.perf_counter()
            await rig.drain()
            assert time.perf_counter() - started < 5
            assert (await rig.get(attack_id))[0].status == "dead"
            assert (await rig.get(fine_id))[0].status == "succeeded"

    run(scenario())


def test_when_false_skips_the_delivery_without_an_attempt(tmp_path: Path) -> None:
    async def scenario() -> None:
        hook = {"name": "h", "when": "{{ event.data.quizCompleted }}"}
        async with open_rig(tmp_path, [hook], always(respond)) as rig:
            yes, no = await rig.ingest(
                make_event(1, data={"quizCompleted": True}),
                make_event(2, data={"quizCompleted": False}),
            )
            await rig.drain()
            assert (await rig.get(yes))[0].status == "succeeded"
            skipped, attempts = await rig.get(no)
            assert (skipped.status, skipped.tries, skipped.attempts) == ("skipped", 0, 0)
            assert attempts == []
            assert [sent_event(s.request)["id"] for s in rig.seen] == ["evt-1"]

    run(scenario())


# -- limits -----------------------------------------------------------------------------------


def test_the_response_body_is_kept_up_to_64_kib(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 400  # 100 KiB
    cases = {
        "one chunk": [payload],
        "many chunks": [payload[i : i + 7000] for i in range(0, len(payload), 7000)],
        "exactly 64 KiB": [payload[:MAX_RESPONSE_BODY]],
        "small": [b"tiny"],
    }

    async def scenario() -> None:
        chunks = list(cases.values())
        handler = in_turn(*(respond(200, *c) for c in chunks))
        async with open_rig(tmp_path, [{"name": "h", "concurrency": 1}], handler) as rig:
            ids = await rig.ingest(*(make_event(n) for n in range(len(chunks))))
            await rig.drain()
            for delivery_id, body in zip(ids, chunks, strict=True):
                _, [attempt] = await rig.get(delivery_id)
                assert attempt.response_body == b"".join(body)[:MAX_RESPONSE_BODY]

    assert MAX_RESPONSE_BODY == 64 * 1024
    run(scenario())


def test_per_hook_concurrency_is_never_exceeded(tmp_path: Path) -> None:
    in_flight: dict[str, int] = {"three": 0, "one": 0}
    most: dict[str, int] = {"three": 0, "one": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        hook = request.url.path.strip("/")
        in_flight[hook] += 1
        most[hook] = max(most[hook], in_flight[hook])
        await asyncio.sleep(0.005)
        in_flight[hook] -= 1
        return respond(200)

    async def scenario() -> None:
        hooks = [
            {"name": "three", "url": "https://r.example/three", "concurrency": 3},
            {"name": "one", "url": "https://r.example/one", "concurrency": 1},
        ]
        async with open_rig(tmp_path, hooks, handler) as rig:
            ids = await rig.ingest(*(make_event(n) for n in range(10)))
            await rig.drain()
            statuses = {(await rig.get(d))[0].status for d in ids}
            assert statuses == {"succeeded"}
            assert len(rig.seen) == 20

    run(scenario())
    assert most == {"three": 3, "one": 1}


def test_the_next_send_does_not_wait_for_the_last_finish_to_commit(tmp_path: Path) -> None:
    """A slot is held while its request is in flight to the receiver, not while its finish
    waits for the writer: with concurrency 1, the second request goes while the first's finish
    is held back, and never two at once."""
    in_flight, most = 0, 0
    second_sent = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0)
        in_flight -= 1
        return respond(200)

    async def scenario() -> None:
        async with open_rig(tmp_path, [{"name": "one", "concurrency": 1}], handler) as rig:
            finish, finishes = rig.store.finish, 0

            async def held_finish(*args: Any, **kwargs: Any) -> None:
                nonlocal finishes
                finishes += 1
                if finishes == 1:  # the first finish commits only once the second was sent
                    await asyncio.wait_for(second_sent.wait(), 5.0)
                await finish(*args, **kwargs)

            rig.store.finish = held_finish  # type: ignore[method-assign]
            ids = await rig.ingest(make_event(0), make_event(1))
            runner = asyncio.create_task(rig.dispatcher.run())
            try:
                async with asyncio.timeout(5.0):
                    while len(rig.seen) < 2:
                        await asyncio.sleep(0.001)
                    second_sent.set()
                    while {(await rig.get(d))[0].status for d in ids} != {"succeeded"}:
                        await asyncio.sleep(0.001)
            finally:
                await rig.dispatcher.stop(grace=1.0)
                await runner

    run(scenario())
    assert most == 1


def test_a_rate_limit_paces_with_the_injected_sleep(tmp_path: Path) -> None:
    async def scenario() -> None:
        hook = {"name": "h", "rate_limit": {"per_second": 25}, "concurrency": 4}
        async with open_rig(tmp_path, [hook], always(respond)) as rig:
            ids = await rig.ingest(*(make_event(n) for n in range(50)))
            started = time.perf_counter()
            await rig.drain()
            assert time.perf_counter() - started < 10  # the sleeps were fake
            statuses = [(await rig.get(d))[0].status for d in ids]
            assert statuses == ["succeeded"] * 50
            elapsed = rig.time.now - NOW
            assert 1.9 <= elapsed <= 2.1, elapsed  # 49 gaps of 40 ms
            assert rig.time.sleeps and all(s > 0 for s in rig.time.sleeps)
            starts: list[float] = []
            for delivery_id in ids:
                starts += [attempt.started_at for attempt in (await rig.get(delivery_id))[1]]
            assert max(starts) - min(starts) >= 49 * 0.04 - 1e-3  # floats at epoch scale

    run(scenario())


def test_a_hanging_receiver_holds_only_its_own_hook(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/slow":
            await gate.wait()
        return respond(200)

    async def scenario() -> None:
        hooks = [
            {"name": "slow", "url": "https://r.example/slow", "concurrency": 1},
            {"name": "fast", "url": "https://r.example/fast", "concurrency": 1},
        ]
        async with open_rig(tmp_path, hooks, handler) as rig:
            await rig.ingest(make_event(1), make_event(2), make_event(3))
            dispatcher = rig.dispatcher
            for _ in range(50):
                await dispatcher._claim_round()
                if dispatcher._tasks:
                    await asyncio.wait(set(dispatcher._tasks), timeout=0.02)
                if (await rig.store.count_deliveries(hook="fast"))["succeeded"] == 3:
                    break
            assert (await rig.store.count_deliveries(hook="fast"))["succeeded"] == 3
            slow = await rig.store.count_deliveries(hook="slow")
            assert (slow["claimed"], slow["pending"]) == (1, 2)
            gate.set()
            await rig.drain()
            assert (await rig.store.count_deliveries(hook="slow"))["succeeded"] == 3

    run(scenario())


# -- ordered hooks ----------------------------------------------------------------------------


def test_an_ordered_hook_delivers_each_subjects_events_in_sequence(tmp_path: Path) -> None:
    failed_once: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        event = sent_event(request)
        if event["id"] == "evt-1" and not failed_once:  # A's create fails the first time
            failed_once.append(event["id"])
            return respond(500)
        return respond(200)

    async def scenario() -> None:
        hook = {
            "name": "h",
            "ordered": True,
            "concurrency": 4,
            "retry": {"schedule": [0, 1, 1], "jitter": 0},
        }
        async with open_rig(tmp_path, [hook], handler) as rig:
            await rig.ingest(
                make_event(1, subject="A", type="session.created"),
                make_event(2, subject="B", type="session.created"),
                make_event(3, subject="A", type="session.updated"),
                make_event(4, subject="B", type="session.deleted"),
                make_event(5, subject="A", type="session.deleted"),
            )
            await rig.drain()
            first = [
                (sent_event(s.request)["subject"], sent_event(s.request)["type"]) for s in rig.seen
            ]
            assert ("A", "session.updated") not in first  # held back by A's failed create
            rig.time.advance(1)
            await rig.drain()
            order: dict[str, list[str]] = {}
            for seen in rig.seen:
                event = sent_event(seen.request)
                order.setdefault(event["subject"], []).append(event["type"])
            assert order == {
                "A": ["session.created", "session.created", "session.updated", "session.deleted"],
                "B": ["session.created", "session.deleted"],
            }

    run(scenario())


def test_an_ordered_hook_claims_one_delivery_per_subject_at_a_time(tmp_path: Path) -> None:
    async def scenario() -> None:
        hook = {"name": "h", "ordered": True, "concurrency": 10}
        async with open_rig(tmp_path, [hook], always(respond)) as rig:
            await rig.ingest(*(make_event(n, subject="AB"[n % 2]) for n in range(6)))
            assert await rig.dispatcher._claim_round() == 2  # A's first and B's first
            await rig.drain()
            sent = [sent_event(s.request) for s in rig.seen]
            for subject in "AB":
                numbers = [e["data"]["n"] for e in sent if e["subject"] == subject]
                assert numbers == sorted(numbers) and len(numbers) == 3

    run(scenario())


# -- 410 and inactive hooks -------------------------------------------------------------------


def test_a_410_disables_the_hook_and_pauses_its_deliveries(tmp_path: Path) -> None:
    gone_once: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/h" and not gone_once:
            gone_once.append(request.headers["webhook-id"])
            return respond(410)
        return respond(200)

    async def scenario() -> None:
        hooks = [
            {"name": "h", "url": "https://r.example/h", "concurrency": 1},
            {"name": "other", "url": "https://r.example/other"},
        ]
        async with open_rig(tmp_path, hooks, handler) as rig:
            first, _, second, _ = await rig.ingest(make_event(1), make_event(2))
            await rig.drain()
            assert gone_once == [first]
            assert [s.request.url.path for s in rig.seen].count("/h") == 1

            gone, attempts = await rig.get(first)
            assert (gone.status, gone.last_status) == ("paused", 410)
            assert [a.response_status for a in attempts] == [410]
            assert (await rig.get(second))[0].status == "paused"
            assert rig.registry.active() == {"h": False, "other": True}
            assert rig.registry.reason("h") == "410 Gone: the hook was disabled"
            active, reason, _ = (await rig.store.hook_states())["h"]
            assert (active, reason) == (False, "410 Gone: the hook was disabled")

            later, later_other = await rig.ingest(make_event(3))
            assert (await rig.get(later))[0].status == "paused"
            rig.time.advance(3600)
            await rig.drain()
            assert (await rig.get(later_other))[0].status == "succeeded"
            counts = await rig.store.count_deliveries(hook="h")
            assert (counts["paused"], counts["succeeded"]) == (3, 0)
            assert [s.request.url.path for s in rig.seen].count("/h") == 1

            # active again: the paused deliveries drain, the first with the same webhook-id
            await rig.registry.set_active(rig.store, "h", True, None, rig.time.now)
            await rig.drain()
            assert (await rig.store.count_deliveries(hook="h"))["succeeded"] == 3
            to_h = [s.webhook_id for s in rig.seen if s.request.url.path == "/h"]
            assert to_h[:2] == [first, first]

    run(scenario())


def test_disable_after_switches_the_hook_off_at_its_nth_dead_delivery_in_a_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        hooks = [{"name": "h", "concurrency": 1, "retry": {"schedule": [0], "jitter": 0}}]
        async with open_rig(tmp_path, hooks, always(lambda: respond(500)), disable_after=2) as rig:
            ids = await rig.ingest(*(make_event(n) for n in range(4)))
            await rig.drain()
            statuses = [(await rig.get(delivery_id))[0].status for delivery_id in ids]
            assert statuses == ["dead", "dead", "paused", "paused"]
            assert len(rig.seen) == 2  # nothing more was sent once it was off
            assert rig.registry.active() == {"h": False}
            assert rig.registry.reason("h") == "deactivated after 2 dead deliveries in a row"

    with caplog.at_level("WARNING", logger="relayhook.delivery.dispatcher"):
        run(scenario())
    assert "hook 'h' deactivated: deactivated after 2 dead deliveries in a row" in caplog.text


def test_a_hook_inactive_in_the_config_keeps_its_deliveries_paused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_rig(tmp_path, [{"name": "h", "active": False}], always(respond)) as rig:
            [delivery_id] = await rig.ingest(make_event(1))
            await rig.drain()
            assert (await rig.get(delivery_id))[0].status == "paused"
            assert rig.seen == []

    run(scenario())


# -- leases -----------------------------------------------------------------------------------


def test_a_delivery_claimed_by_a_dead_worker_is_claimed_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_rig(tmp_path, [{"name": "h"}], always(respond), lease_seconds=30) as rig:
            [delivery_id] = await rig.ingest(make_event(1))
            [taken] = await rig.store.claim_due(
                hook="h", now=NOW, limit=10, lease_seconds=5, owner="dead-worker"
            )
            assert taken.id == delivery_id

            await rig.drain()
            assert rig.seen == []  # the lease still holds

            rig.time.advance(5.5)
            await rig.drain()
            delivery, [attempt] = await rig.get(delivery_id)
            assert delivery.status == "succeeded"
            assert [s.webhook_id for s in rig.seen] == [delivery_id]
            assert ["webhook-id", delivery_id] in attempt.request["headers"]

            late = await rig.store.finish(
                delivery_id,
                owner="dead-worker",
                outcome=Outcome("failed", due_at=NOW),
                attempt=None,
            )
            assert late is False
            assert (await rig.get(delivery_id))[0].status == "succeeded"

    run(scenario())


def test_a_request_in_flight_is_not_sent_again_when_its_lease_runs_out(tmp_path: Path) -> None:
    # The hook's timeout (120 s) outlasts the lease (60 s): the dispatcher that holds the
    # delivery is alive and waiting for the answer; it must not claim and send it a second time.
    gate = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return respond(200)

    async def scenario() -> None:
        hook = {"name": "h", "timeout": 120, "concurrency": 2}
        async with open_rig(tmp_path, [hook], handler, lease_seconds=60) as rig:
            [delivery_id] = await rig.ingest(make_event(1))
            assert await rig.dispatcher._claim_round() == 1
            for _ in range(20):
                await asyncio.sleep(0)
            assert len(rig.seen) == 1  # the request is out, no answer yet

            rig.time.advance(61)
            claimed_again = await rig.dispatcher._claim_round()
            for _ in range(20):
                await asyncio.sleep(0)
            gate.set()
            await rig.drain()
            assert claimed_again == 0
            assert [s.webhook_id for s in rig.seen] == [delivery_id]

    run(scenario())


def test_every_attempt_carries_the_same_webhook_id(tmp_path: Path) -> None:
    async def scenario() -> None:
        handler = in_turn(httpx.ReadTimeout("slow"), respond(502), respond(200))
        async with open_rig(tmp_path, [{"name": "h", "retry": NO_JITTER}], handler) as rig:
            [delivery_id] = await rig.ingest(make_event(1))
            for wait in (0, 5, 60):
                rig.time.advance(wait)
                await rig.drain()
            delivery, attempts = await rig.get(delivery_id)
            assert delivery.status == "succeeded"
            assert [a.number for a in attempts] == [1, 2, 3]
            assert [s.webhook_id for s in rig.seen] == [delivery_id] * 3

    run(scenario())
