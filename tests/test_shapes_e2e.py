"""A payload that changed shape, end to end (issue 21, item 2): `relayhook serve` on 127.0.0.1,
a provider posting over a real socket, hooks in the config. Twenty requests teach the shape;
then the provider adds a field, drops one and retypes one: exactly those problems open (once:
the events carry the body whole), each naming the first request that had it and the hooks
that read the path; the relay's shape is served for the field picker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from receiver import Receiver
from servers import (
    RelayConfig,
    RelayhookProcess,
    http_client,
    render_config,
    render_hooks,
    render_tables,
    wait_until,
)

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "admin-token-shapes-0123456789ab"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RELAY = RelayConfig("shop", "generic", "tok-shapes-000000000000")
BASE = {"user": {"email": "a@example.com"}, "score": 75, "items": [{"sku": "A"}]}


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayhookProcess]:
    with Receiver() as receiver:
        hooks = [
            {
                "name": "Scores to Zapier",
                "events": ["shop.*"],
                "relays": ["shop"],  # generic's ?type= may be anything: a hook names its relay
                "url": f"{receiver.url}/a/",
                "body": {"score": "{{ event.data.score }}"},
            },
            {
                "name": "Emails to CRM",
                "events": ["shop.*"],
                "relays": ["shop"],
                "url": f"{receiver.url}/b/",
                "body": {"email": "{{ event.data.user.email }}"},
            },
        ]
        text = (
            render_config(relays=[RELAY], admin_token=ADMIN_TOKEN)
            + render_tables(delivery={"allow_cidrs": ["127.0.0.1/32"]})
            + render_hooks(hooks)
        )
        with RelayhookProcess(tmp_path_factory.mktemp("shapes"), text) as process:
            yield process


def relay_problems(client: httpx.Client) -> dict[str, dict[str, Any]]:
    answer = client.get("/api/problems", params={"relay": RELAY.name}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    return {p["signature"]: p for p in answer.json()["items"]}


def test_added_dropped_and_retyped_fields_open_exactly_those_problems(
    server: RelayhookProcess,
) -> None:
    with http_client(base_url=server.url) as client:
        url = f"/in/{RELAY.token}?type=shop.order.paid"
        for _ in range(20):
            assert client.post(url, json=BASE).status_code == 200
        changed = {"user": {"email": 17}, "items": [{"sku": "A"}], "coupon": "X1"}
        answer = client.post(url, json=changed)
        assert answer.status_code == 200, answer.text
        first = client.get(
            "/api/requests", params={"relay": RELAY.name, "limit": 1}, headers=AUTH
        ).json()["items"][0]["id"]

        def three() -> dict[str, dict[str, Any]] | None:
            problems = relay_problems(client)
            return problems if len(problems) >= 3 else None

        found = wait_until(three, timeout=15, interval=0.1, what="three shape problems")
        # the generic connector's events carry the body whole: one problem per change, not two
        assert sorted(found) == [
            "shop.order.paid shape: data.coupon added",
            "shop.order.paid shape: data.score missing",
            "shop.order.paid shape: data.user.email retyped",
        ]
        assert {p["request"] for p in found.values()} == {first}
        assert found["shop.order.paid shape: data.score missing"]["summary"] == (
            "shop: `data.score`, always there before, is missing in 1 of the last 20 payloads,"
            " in shop.order.paid events; read by hook 'Scores to Zapier'"
        )
        assert found["shop.order.paid shape: data.user.email retyped"]["summary"].endswith(
            "(was a text), in shop.order.paid events; read by hook 'Emails to CRM'"
        )
        assert found["shop.order.paid shape: data.coupon added"]["summary"].endswith(
            "nothing reads it"
        )

        def shape() -> list[dict[str, Any]] | None:
            answer = client.get(f"/api/relays/{RELAY.name}/shape", headers=AUTH)
            assert answer.status_code == 200, answer.text
            items: list[dict[str, Any]] = answer.json()["items"]
            return items if len(items) == 1 and items[0]["payloads"] == 21 else None

        (events,) = wait_until(shape, timeout=15, interval=0.2, what="the saved shape")
        assert events["type"] == "shop.order.paid"
        fields = {f["path"]: f for f in events["fields"]}
        assert fields["data.score"]["present"] == round(20 / 21, 3)
        assert fields["data.user.email"]["types"] == ["number", "string"]
        assert client.get("/api/relays/nope/shape", headers=AUTH).status_code == 404
