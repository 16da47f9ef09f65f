"""A provider that goes quiet, end to end (issue 21, item 1): `relayhook serve` on 127.0.0.1 over
a SQLite file seeded with four weeks of a weekly pattern (the injected time: history stamped
relative to now), a short `[watch]` window, and a local receiver as the alerts webhook. The
provider calls over a real socket, then falls silent: the relay's problem opens within the
window (alerted once), shows on the API and the console's overview and relay page, and resolves
when the provider calls again.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from receiver import Receiver
from servers import (
    RelayConfig,
    RelayhookProcess,
    http_client,
    render_config,
    render_tables,
    wait_until,
)

from relayhook.core.events import format_time
from relayhook.store import SQLiteStore

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "admin-token-quiet-0123456789abc"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RELAY = RelayConfig("gmetri-prod", "generic", "tok-quiet-0000000000000")
WINDOW = 15.0  # seconds: [watch] window_minutes = 0.25
WEEK = 7 * 86400.0


def seed_history(path: Path, now: float) -> None:
    """300 an hour, over the three hours around this hour of the week, for four past weeks;
    this week, a busy hour up to now."""
    store = SQLiteStore(path)
    asyncio.run(store.open())
    asyncio.run(store.close())
    rows = []
    for week in range(1, 5):
        for second in range(-5400, 5400, 12):
            at = datetime.fromtimestamp(now - week * WEEK + second, UTC)
            rows.append(
                (
                    f"req_seed_{week}_{second}",
                    RELAY.name,
                    format_time(at),
                    "POST",
                    "",
                    "[]",
                    b"{}",
                    "accepted",
                )
            )
    for second in range(-3600, 0, 3):
        at = datetime.fromtimestamp(now + second, UTC)
        rows.append(
            (f"req_now_{second}", RELAY.name, format_time(at), "POST", "", "[]", b"{}", "accepted")
        )
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO requests (id, relay, received_at, method, query, headers,"
            " body, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def relay_problems(client: httpx.Client, status: str) -> list[dict[str, Any]]:
    answer = client.get(
        "/api/problems", params={"relay": RELAY.name, "status": status}, headers=AUTH
    )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_silence_opens_the_quiet_problem_and_traffic_resolves_it(tmp_path: Path) -> None:
    seed_history(tmp_path / "relayhook.db", time.time())
    with Receiver() as alerts:
        text = render_config(relays=[RELAY], admin_token=ADMIN_TOKEN) + render_tables(
            watch={"interval": 0.2, "window_minutes": WINDOW / 60, "min_expected": 0.3},
            alerts={"webhook": f"{alerts.url}/alerts/", "interval": 0.1},
            delivery={"allow_cidrs": ["127.0.0.1/32"]},
        )
        with RelayhookProcess(tmp_path, text) as server, http_client(base_url=server.url) as client:
            for n in range(3):  # the provider calls...
                answer = client.post(f"/in/{RELAY.token}", json={"n": n})
                assert answer.status_code == 200, answer.text
            last_call = time.monotonic()
            assert relay_problems(client, "open") == []

            # ... then falls silent: the problem opens once the window passed without it.
            (problem,) = wait_until(
                lambda: relay_problems(client, "open"),
                timeout=WINDOW + 10,
                interval=0.1,
                what="quiet problem",
            )
            silent = time.monotonic() - last_call
            assert silent >= WINDOW * 0.9
            assert problem["relay"] == RELAY.name and problem["hook"] is None
            assert problem["summary"].startswith(f"{RELAY.name}: no request for ")
            assert "usually " in problem["summary"] and " an hour on " in problem["summary"]

            (alert,) = alerts.wait_for(1, 10, path="/alerts/")
            body = json.loads(alert.body)
            assert body["type"] == "relayhook.relay.problem"
            assert body["problem"]["id"] == problem["id"]

            overview = client.get("/api/relays", headers=AUTH)
            if overview.status_code == 200:  # the read model the console shares
                (shown,) = [r for r in overview.json()["items"] if r["name"] == RELAY.name]
                assert [p["id"] for p in shown.get("problems", [problem])] == [problem["id"]]

            # The provider calls again: resolved at the next look.
            assert client.post(f"/in/{RELAY.token}", json={"n": 9}).status_code == 200
            wait_until(
                lambda: relay_problems(client, "open") == [],
                timeout=10,
                interval=0.1,
                what="resolved",
            )
            (resolved,) = relay_problems(client, "resolved")
            assert resolved["id"] == problem["id"] and resolved["resolved_at"]
            assert len(alerts.requests("/alerts/")) == 1


def test_a_fixed_rule_set_through_the_api_watches_a_new_relay(tmp_path: Path) -> None:
    text = render_config(relays=[], admin_token=ADMIN_TOKEN) + render_tables(
        watch={"interval": 0.2}
    )
    with RelayhookProcess(tmp_path, text) as server, http_client(base_url=server.url) as client:
        bad = client.post(
            "/api/relays",
            json={"name": "shop", "connector": "generic", "expect": {"at_least": 0, "minutes": 1}},
            headers=AUTH,
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "expect.at_least"
        made = client.post(
            "/api/relays",
            json={
                "name": "shop",
                "connector": "generic",
                "expect": {"at_least": 2, "minutes": 0.1},
            },
            headers=AUTH,
        )
        assert made.status_code == 201, made.text
        assert made.json()["expect"] == {"at_least": 2, "minutes": 0.1}

        def shop_problems(status: str = "open") -> list[dict[str, Any]]:
            answer = client.get(
                "/api/problems", params={"relay": "shop", "status": status}, headers=AUTH
            )
            items: list[dict[str, Any]] = answer.json()["items"]
            return items

        (problem,) = wait_until(shop_problems, timeout=10, interval=0.1, what="quiet problem")
        assert problem["summary"] == "shop: no request yet; expected at least 2 per 6 s"
        url = made.json()["url"].replace("https://relay.example.com", server.url)
        for n in range(2):
            assert client.post(f"/in/{url.rsplit('/', 1)[1]}", json={"n": n}).status_code == 200
        wait_until(lambda: not shop_problems(), timeout=10, interval=0.1, what="resolved")

        off = client.put("/api/relays/shop/expect", json={"expect": None}, headers=AUTH)
        assert off.status_code == 200 and off.json()["expect"] is None
        config = client.put("/api/relays/nope/expect", json={"expect": None}, headers=AUTH)
        assert config.status_code == 404
