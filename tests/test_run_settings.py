"""Run-time settings (the console's Settings page): stored once, followed by every process at
its next refresh. A private destination allowed at run time is reachable at once by a sender
that refused it before (its verdict cache is judged again), through a real socket."""

from __future__ import annotations

import asyncio

import pytest
from conftest import run
from receiver import Receiver

from relayhook.core.ssrf import DestinationPolicy
from relayhook.delivery.http import make_http_transport
from relayhook.live import RUN_SETTINGS, LiveConfig, RunSettings
from relayhook.store.base import Store


def test_the_settings_are_read_on_refresh_and_handed_to_followers(store: Store) -> None:
    live = LiveConfig({})
    seen: list[RunSettings] = []
    live.follow_settings(seen.append)
    assert seen == [RunSettings()]
    run(
        store.set_admin_value(
            RUN_SETTINGS, RunSettings(("10.0.0.5/32",), "https://r.example").dump(), 1.0
        )
    )
    run(live.refresh(store))
    assert live.run_settings == RunSettings(("10.0.0.5/32",), "https://r.example")
    assert seen[-1] == live.run_settings
    run(live.refresh(store))  # unchanged: followers are not called again
    assert len(seen) == 2


def test_a_widened_policy_lets_a_refused_destination_through_at_once() -> None:
    policy = DestinationPolicy()
    transport = make_http_transport(policy)

    async def send(url: str) -> int:
        reply = await transport.send("POST", url, [], b"{}", timeout=5.0, limit=1000)
        return reply.status

    async def story(rx: Receiver) -> None:
        try:
            with pytest.raises(Exception, match="loopback"):
                await send(rx.url + "/x")
            policy.widen(["127.0.0.1/32"])
            assert await send(rx.url + "/x") == 200
            policy.widen([])
            with pytest.raises(Exception, match="loopback"):
                await send(rx.url + "/x")
        finally:
            await transport.aclose()

    with Receiver() as rx:
        asyncio.run(story(rx))
    with pytest.raises(ValueError, match="not a network"):
        policy.widen(["10.0.0.0/33"])
