"""Two dispatchers, each with its own store over one database, as two worker processes are: a
hook's concurrency bounds the requests in flight to its receiver across both, while each frees a
slot as soon as its request is answered (its finish still on its way to the store)."""

from __future__ import annotations

import asyncio
import random
import time

import httpx
from conftest import StoreFactory, run

from relayhook.core.events import Event
from relayhook.core.hooks import build_hooks
from relayhook.core.routing import route
from relayhook.delivery.dispatcher import Dispatcher
from relayhook.live import LiveConfig
from relayhook.store import RequestRecord

DELIVERIES = 400
CONCURRENCY = 2


def test_two_workers_never_exceed_a_hooks_concurrency(new_store: StoreFactory) -> None:
    in_flight, most, sent = 0, 0, 0
    rand = random.Random(3)

    async def receiver(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most, sent
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(rand.uniform(0.0005, 0.003))
        in_flight -= 1
        sent += 1
        return httpx.Response(200)

    async def scenario() -> None:
        stores = [new_store(), new_store()]
        for store in stores:
            await store.open()
        hooks = build_hooks(
            [
                {
                    "name": "h",
                    "events": ["*"],
                    "url": "https://r.example/in",
                    "concurrency": CONCURRENCY,
                }
            ],
            "cfg",
        )
        events = [
            Event(
                id=f"e{n}",
                source="s",
                type="t",
                subject=None,
                time="2024-05-01T12:00:00.000Z",
                data={"n": n},
                relay="r",
            )
            for n in range(DELIVERIES)
        ]
        ids = iter(range(10**6))
        deliveries = route(
            events,
            hooks.values(),
            active={"h": True},
            now=time.time(),
            new_id=lambda: f"d{next(ids)}",
        )
        record = RequestRecord(
            id="req",
            relay="r",
            received_at="2024-05-01T12:00:00Z",
            method="POST",
            query="",
            headers=(),
            body=b"{}",
            status="accepted",
        )
        await stores[0].ingest(record, events, deliveries)
        transport = httpx.MockTransport(receiver)
        dispatchers = []
        for n, store in enumerate(stores):
            live = LiveConfig(hooks)
            await live.sync(store, time.time())
            dispatchers.append(
                Dispatcher(store, live, transport, {}, owner=f"worker-{n}", poll_interval=0.01)
            )
        runners = [asyncio.create_task(d.run()) for d in dispatchers]
        try:
            async with asyncio.timeout(60):
                while sent < DELIVERIES:
                    await asyncio.sleep(0.01)
        finally:
            for dispatcher in dispatchers:
                await dispatcher.stop(grace=5.0)
            await asyncio.gather(*runners, return_exceptions=True)
            for store in stores:
                await store.close()

    run(scenario())
    assert sent == DELIVERIES
    assert most <= CONCURRENCY, most
