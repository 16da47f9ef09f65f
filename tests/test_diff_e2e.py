"""Change a connector safely, end to end (issue 21, item 3): `relayhook serve` on 127.0.0.1 keeps
500 GMetri batches posted over a real socket; `POST /api/diff` and `relayhook diff FILE --json`
(a subprocess on the same store) both name exactly the events a deliberately changed GMetri
connector changes, and write nothing; `relayhook diff FILE --remap` then writes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from servers import (
    RelayConfig,
    RelayhookProcess,
    http_client,
    render_config,
    render_hooks,
    wait_until,
)
from test_delivery_e2e import run_cli
from test_diff import BATCHES, batch, changed_connector, expected

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "admin-token-diff-0123456789abcd"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RELAY = RelayConfig("gmetri-prod", "gmetri", "tok-diff-e2e-00000000000", "basic-auth-string")
HOOKS = [
    {
        "name": "Variables to CRM",
        "events": ["gmetri.variables.changed"],
        "url": "http://127.0.0.1:9/crm",
        "active": False,
    }
]


def check(found: dict[str, Any]) -> None:
    dropped, changed = expected()
    removed = [e["subject"] for r in found["requests"] for e in r["events_removed"]]
    assert sorted(removed) == sorted(dropped)
    fields = [
        (e["subject"], f["path"], f["after"])
        for r in found["requests"]
        for e in r["events_changed"]
        for f in e["fields"]
    ]
    assert sorted(s for s, _, _ in fields) == sorted(changed)
    assert {(p, a.startswith("SCENE")) for _, p, a in fields} == {("data.scene_name", True)}
    assert found["totals"]["events_added"] == 0
    assert found["totals"]["requests_compared"] == BATCHES
    lost = [d["hook"] for r in found["requests"] for d in r["deliveries_removed"]]
    assert lost == ["Variables to CRM"] * len(dropped)


def test_a_diff_over_500_kept_gmetri_batches(tmp_path: Path) -> None:
    text = render_config(
        relays=[RELAY], admin_token=ADMIN_TOKEN, delivery={"allow_cidrs": ["127.0.0.1/32"]}
    ) + render_hooks(HOOKS)
    changed_file = tmp_path / "changed" / "gmetri-next.toml"
    changed_file.parent.mkdir()
    changed_file.write_text(changed_connector(), encoding="utf-8")
    with (
        RelayhookProcess(tmp_path / "server", text) as server,
        http_client(base_url=server.url) as client,
    ):
        headers = {"Authorization": f"Basic {RELAY.secret}"}
        for i in range(BATCHES):
            answer = client.post(f"/in/{RELAY.token}", json=batch(i), headers=headers)
            assert answer.status_code == 200, answer.text

        def kept() -> bool:
            answer = client.get("/api/requests", params={"limit": 1}, headers=AUTH)
            return bool(answer.json()["items"])

        wait_until(kept, timeout=10, what="the requests kept")
        events_before = client.get("/api/events", params={"limit": 1}, headers=AUTH).json()

        answer = client.post(
            "/api/diff", json={"connector": changed_connector(), "last": BATCHES}, headers=AUTH
        )
        assert answer.status_code == 200, answer.text
        check(answer.json())

        bad = client.post(
            "/api/diff", json={"connector": 'id = "gmetri"\nevents = 3'}, headers=AUTH
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"].startswith("connector")

        ran = run_cli(server, "diff", str(changed_file), "--last", str(BATCHES), "--json")
        assert ran.returncode == 0, ran.stderr
        (from_cli,) = json.loads(ran.stdout)
        check(from_cli)
        words = run_cli(server, "diff", str(changed_file), "--last", str(BATCHES))
        assert f"over the last {BATCHES} kept requests" in words.stdout

        # Nothing was written: the newest event is the same.
        assert client.get("/api/events", params={"limit": 1}, headers=AUTH).json() == events_before
        applied = run_cli(server, "diff", str(changed_file), "--last", str(BATCHES), "--remap")
        assert applied.returncode == 0, applied.stderr
        _, changed = expected()
        written = [line for line in applied.stdout.splitlines() if "events written" in line]
        assert sum(int(line.split(": ")[1].split()[0]) for line in written) == len(changed)
