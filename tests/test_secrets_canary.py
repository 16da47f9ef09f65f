"""No secret in any log line (issue 7, item 5): canaries seeded in every place the config holds
a secret, a real `relayhook serve` at DEBUG with its access log on, traffic that makes attempts
fail (their lines name the hook, the status, the error) and one error whose text carries a
secret, then a grep of everything the process printed, stdout and stderr: 0 hits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from receiver import Receiver, Reply
from servers import (
    RelayConfig,
    RelayhookProcess,
    http_client,
    render_config,
    render_hooks,
    render_tables,
    wait_until,
)

CANARIES = {
    "relay secret": "canary-relay-secret-7f3a9c11",
    "hook header token": "canary-header-token-9d2c5502",
    "URL password": "canary-url-password-4e1f7788",
    "query token": "canary-query-token-0a6b3d44",
    "[secrets] value": "canary-secrets-value-2b8e4199",
    "admin token": "canary-admin-token-6c0d2f5e",
}
GMETRI = RelayConfig("gm-canary", "gmetri", "tok-gm-canary-0123456789", CANARIES["relay secret"])
GEN = RelayConfig("gen-canary", "generic", "tok-gen-canary-0123456789")
WAIT = 20.0


class DebugServer(RelayhookProcess):
    """`relayhook serve --log-level debug` with uvicorn's access log on."""

    def command(self) -> list[str]:
        return [
            *(part for part in super().command() if part != "--no-access-log"),
            "--log-level",
            "debug",
        ]


def canary_config(rx: Receiver, log_format: str) -> str:
    host = rx.url.removeprefix("http://")
    retry = {"schedule": [0, 0.2], "jitter": 0}  # one failed attempt, then dead
    hooks: list[dict[str, Any]] = [
        {
            "name": "header",
            "events": ["*"],
            "url": rx.url + "/header/",
            "retry": retry,
            "headers": {"X-Api-Token": CANARIES["hook header token"]},
        },
        {
            "name": "userinfo",
            "events": ["*"],
            "retry": retry,
            "url": f"http://relay:{CANARIES['URL password']}@{host}/userinfo/",
        },
        {
            "name": "query",
            "events": ["*"],
            "url": rx.url + "/query/",
            "retry": retry,
            "params": {"token": CANARIES["query token"]},
        },
        {
            "name": "secret",
            "events": ["*"],
            "url": rx.url + "/secret/",
            "retry": retry,
            "headers": {"Authorization": "Bearer {{ secrets.crm }}"},
        },
        # An error whose text holds a secret: "'<the [secrets] value>' is not an http://
        # or https:// URL" (no resolver asked: the render fails first).
        # Its condition is false on every connector example, so diagnostics (which renders
        # hooks on examples, and would stop `serve`) lets it through to fail at run time.
        {
            "name": "leaky",
            "events": ["*"],
            "retry": retry,
            "url": "{{ secrets.crm }}",
            "when": "{{ event.subject | default('') == 'u@x.com' }}",
        },
    ]
    return (
        render_config(relays=[GMETRI, GEN], admin_token=CANARIES["admin token"])
        + render_tables(
            delivery={"allow_cidrs": ["127.0.0.1/32"], "poll_interval": 0.1},
            secrets={"crm": CANARIES["[secrets] value"]},
            log={"format": log_format, "level": "debug"},
        )
        + render_hooks(hooks)
    )


def forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_in_any_line_of_a_debug_run(tmp_path: Path, log_format: str) -> None:
    with Receiver() as rx:
        rx.script("/", Reply(500, body=b"upstream says no"))
        server = DebugServer(tmp_path, canary_config(rx, log_format))
        with server, http_client(base_url=server.url) as client:
            gmetri = {
                "Authorization": f"Basic {CANARIES['relay secret']}",
                "Content-Type": "application/json",
            }
            body = {
                "type": "variables",
                "data": {
                    "orgSlug": "o",
                    "depSlug": "d",
                    "rows": [{"identifier": "u@x.com", "variables": {"score": 1}}],
                },
            }
            assert client.post(f"/in/{GMETRI.token}", json=body, headers=gmetri).status_code == 200
            assert (
                client.post(
                    f"/in/{GMETRI.token}", json=body, headers={"Authorization": "Basic wrong"}
                ).status_code
                == 401
            )
            assert client.post(f"/in/{GEN.token}", content=b"{oops").status_code == 400
            api = {"Authorization": f"Bearer {CANARIES['admin token']}"}
            assert client.get("/api/deliveries", headers=api).status_code == 200
            assert client.get("/metrics", headers=api).status_code == 200
            for path in ("/header/", "/userinfo/", "/query/", "/secret/"):
                rx.wait_for(2, timeout=WAIT, path=path)  # both attempts failed
            wait_until(
                lambda: server.log().count("is dead after attempt") >= 5,
                timeout=WAIT,
                what="every delivery dead, its line written",
            )
        # The receiver did get the secrets: they were sent, just never logged.
        assert rx.requests("/header/")[0].header("x-api-token") == CANARIES["hook header token"]
        assert CANARIES["query token"] in rx.requests("/query/")[0].query

    log = server.log()
    assert "attempt 1 failed (HTTP 500)" in log and "DEBUG" in log.upper()
    assert f"POST /in/[relay {GMETRI.name}]" in log  # the access log was on
    assert "'[redacted]' is not an http:// or https:// URL" in log  # the leaky error
    hits = {
        name: [form for form in forms(secret) if form in log] for name, secret in CANARIES.items()
    }
    assert hits == {name: [] for name in CANARIES}, hits
