"""Erase a person, end to end (issue 21, item 4): `relayhook serve` on 127.0.0.1 keeps GMetri
batches that carry a canary subject (as the row's identifier and inside others' rows), delivers
them to a local receiver (attempts recorded), pins a sample; `relayhook erase --subject` (a
subprocess on the same SQLite file, the server still running) then leaves the canary nowhere:
not in the database file, not in its WAL after the checkpoint, not in the spool, not in any API
answer. A connector's `redact` and `drop` keep fields out of the store from the start.
"""

from __future__ import annotations

import json
import sqlite3
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
    render_hooks,
    wait_until,
)
from test_delivery_e2e import run_cli

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "admin-token-erase-0123456789abc"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CANARY = "Canary.Erase+21@Example.org"
GMETRI = RelayConfig("gmetri-prod", "gmetri", "tok-erase-gmetri-000000", "basic-auth-string")
FORMS = RelayConfig("forms", "forms", "tok-erase-forms-0000000")
CONNECTOR = """
id = "forms"
title = "Forms"
accept = { methods = ["POST"], formats = ["json-object"] }
auth = { scheme = "none" }
redact = ["data.email", "headers.x-token"]
drop = ["data.rows[].phone", "query.session"]

[[events]]
type = "forms.submitted"
source = "forms"
subject = "{{ body.data.name }}"
data = "{{ body.data }}"
"""


def batch(n: int) -> dict[str, Any]:
    rows = [
        {"identifier": CANARY, "variables": {"score": n}},
        {"identifier": f"other{n}@example.org", "variables": {"referrer": CANARY}},
    ]
    return {"type": "variables", "data": {"orgSlug": "acme", "depSlug": "prod", "rows": rows}}


def api_texts(client: httpx.Client) -> str:
    """Every API answer that shows kept data, one after the other."""
    texts = []
    for path in (
        "/api/requests",
        "/api/events",
        "/api/deliveries",
        "/api/problems",
        "/api/samples",
        "/api/relays",
        "/api/hooks",
    ):
        answer = client.get(
            path, params={"limit": 100} if path != "/api/relays" else {}, headers=AUTH
        )
        assert answer.status_code == 200, (path, answer.text)
        texts.append(answer.text)
        for item in answer.json().get("items", []):
            if path == "/api/deliveries":
                texts.append(client.get(f"/api/deliveries/{item['id']}", headers=AUTH).text)
            if path == "/api/requests":
                texts.append(client.get(f"/api/requests/{item['id']}", headers=AUTH).text)
    return "\n".join(texts)


def stored_files(server: RelayhookProcess) -> str:
    path = server.workdir / "relayhook.db"
    with sqlite3.connect(path, timeout=10) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    files = [path, path.with_name("relayhook.db-wal"), server.workdir / "relayhook.spool"]
    return "".join(p.read_bytes().decode("latin-1") for p in files if p.exists())


def test_erase_leaves_the_canary_nowhere(tmp_path: Path) -> None:
    (tmp_path / "conns").mkdir()
    (tmp_path / "conns" / "forms.toml").write_text(CONNECTOR, encoding="utf-8")
    with Receiver() as receiver:
        hooks = [
            {
                "name": "crm",
                "events": ["gmetri.*"],
                "url": f"{receiver.url}/crm/",
                "body": {"who": "{{ event.subject }}", "data": "{{ event.data }}"},
                "retry": {"schedule": [0], "jitter": 0},
            }
        ]
        text = render_config(
            relays=[GMETRI, FORMS],
            admin_token=ADMIN_TOKEN,
            connectors={"dirs": [str(tmp_path / "conns")]},
            delivery={"allow_cidrs": ["127.0.0.1/32"], "poll_interval": 0.1},
        ) + render_hooks(hooks)
        with (
            RelayhookProcess(tmp_path / "server", text) as server,
            http_client(base_url=server.url) as client,
        ):
            for n in range(3):
                answer = client.post(
                    f"/in/{GMETRI.token}",
                    json=batch(n),
                    headers={"Authorization": f"Basic {GMETRI.secret}"},
                )
                assert answer.status_code == 200, answer.text
            receiver.wait_for(6, 15, path="/crm/")
            first = client.get(
                "/api/requests", params={"relay": GMETRI.name, "limit": 1}, headers=AUTH
            ).json()["items"][0]["id"]
            pinned = client.post(
                "/api/samples", json={"name": "canary", "request_id": first}, headers=AUTH
            )
            assert pinned.status_code in (200, 201), pinned.text
            wait_until(
                lambda: CANARY.lower() in api_texts(client).lower(),
                timeout=10,
                what="the canary kept",
            )

            assert CANARY.lower() in stored_files(server).lower()  # the check sees it before
            ran = run_cli(server, "erase", "--subject", CANARY, "--json")
            assert ran.returncode == 0, ran.stderr
            report = json.loads(ran.stdout)
            assert report["deleted"]["events"] == 3 and report["overwritten"]["requests"] == 3
            assert report["deleted"]["attempts"] == 3
            assert any("backups" in item for item in report["not_covered"])

            assert CANARY.lower() not in stored_files(server).lower()
            answers = api_texts(client).lower()
            assert CANARY.lower() not in answers
            assert "other0@example.org" in answers  # others' data stays

            # redact and drop: the fields never reach the store
            answer = client.post(
                f"/in/{FORMS.token}?session=s-123&keep=1",
                headers={"x-token": "tok-hidden-9"},
                json={
                    "data": {
                        "name": "Bo",
                        "email": "bo@example.org",
                        "rows": [{"phone": "555-0100", "plan": "gold"}],
                    }
                },
            )
            assert answer.status_code == 200, answer.text
            (kept,) = client.get(
                "/api/requests", params={"relay": FORMS.name}, headers=AUTH
            ).json()["items"]
            shown = (
                json.dumps(kept)
                + client.get("/api/events", params={"relay": FORMS.name}, headers=AUTH).text
            )
            for hidden in ("bo@example.org", "tok-hidden-9", "555-0100", "s-123"):
                assert hidden not in shown and hidden not in stored_files(server)
            assert "gold" in shown and "[redacted]" in shown
