"""Live configuration through real sockets: relays and hooks created, changed and removed while
`relayhook serve` runs, seen by every role; secrets kept out of every stored or shown copy.

Each test starts real servers (subprocesses on 127.0.0.1) and a real receiver; the SQLite file is
real. Waits poll against a deadline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from receiver import Receiver, Reply
from servers import StartServer, clean_env, http_client, render_config, wait_until

from relayhook.core.connectors import SHIPPED_DIR

pytestmark = pytest.mark.slow

ADMIN = "admin-token-live-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
RULES = (SHIPPED_DIR / "examples" / "gmetri-rules.json").read_bytes()  # 4 rule events
WAIT = 15.0


def config(db: Path | None = None) -> str:
    """No relays, no hooks: everything is made through the API. Hooks may reach 127.0.0.1."""
    storage = f"sqlite:///{db}" if db is not None else "sqlite:///relayhook.db"
    return render_config(
        relays=[],
        admin_token=ADMIN,
        storage_url=storage,
        delivery={"allow_private_destinations": True, "poll_interval": 0.1},
    )


def call(client: httpx.Client, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    response = client.request(
        method, path, headers=AUTH, content=None if body is None else json.dumps(body)
    )
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def post_gmetri(client: httpx.Client, url: str, secret: str) -> httpx.Response:
    return client.post(
        url,
        content=RULES,
        headers={"Authorization": f"Basic {secret}", "Content-Type": "application/json"},
    )


def test_a_relay_and_a_hook_made_through_the_api_work_and_change_without_a_restart(
    tmp_path: Path, start_server: StartServer
) -> None:
    with Receiver() as receiver:
        server = start_server(tmp_path, config())
        with http_client(base_url=server.url) as client:
            assert call(client, "GET", "/api/relays") == {"items": []}
            assert call(client, "GET", "/api/hooks") == {"items": []}

            relay = call(
                client, "POST", "/api/relays", {"name": "vr", "connector": "gmetri"}, status=201
            )
            assert relay["source"] == "api" and relay["connector"] == "gmetri"
            assert len(relay["secret"]) >= 43  # 32 random bytes, URL-safe
            assert "secret" not in call(client, "GET", "/api/relays")["items"][0]
            hook = call(
                client,
                "POST",
                "/api/hooks",
                {
                    "name": "crm",
                    "events": ["gmetri.rule.triggered"],
                    "url": receiver.url + "/v1/{event.subject}",
                    "headers": {"Authorization": "Bearer crm-token-0123456789"},
                },
                status=201,
            )
            assert hook["source"] == "api" and hook["active"] is True
            assert hook["spec"]["headers"] == {"Authorization": "[redacted]"}
            assert call(client, "GET", "/api/hooks/crm") == hook

            answer = post_gmetri(client, relay["url"], relay["secret"])
            assert answer.status_code == 200 and answer.json()["accepted"] == 4, answer.text
            got = receiver.wait_for(4, WAIT, path="/v1/")
            assert {r.header("authorization") for r in got} == {"Bearer crm-token-0123456789"}

            spec = {**hook["spec"], "url": receiver.url + "/v2/{event.subject}"}
            changed = call(client, "PUT", "/api/hooks/crm", spec)  # [redacted]: kept as it was
            assert changed["url"].startswith(receiver.url + "/v2/")
            assert post_gmetri(client, relay["url"], relay["secret"]).status_code == 200
            got = receiver.wait_for(4, WAIT, path="/v2/")
            assert {r.header("authorization") for r in got} == {"Bearer crm-token-0123456789"}
            assert receiver.count("/v1/") == 4

            rotated = call(client, "POST", "/api/relays/vr/secret", {"rotate": True})
            assert rotated["secret"] != relay["secret"] and rotated["url"] == relay["url"]
            old = post_gmetri(client, relay["url"], relay["secret"])
            assert old.status_code == 401
            assert post_gmetri(client, relay["url"], rotated["secret"]).status_code == 200
            revealed = call(client, "POST", "/api/relays/vr/secret")
            assert revealed["secret"] == rotated["secret"]

            assert client.delete("/api/hooks/crm", headers=AUTH).status_code == 204
            assert client.delete("/api/relays/vr", headers=AUTH).status_code == 204
            assert post_gmetri(client, relay["url"], rotated["secret"]).status_code == 404
            kept = call(client, "GET", "/api/requests")["items"]
            assert len(kept) == 3  # what the deleted relay received stays
            history = call(client, "GET", "/api/deliveries?hook=crm&limit=100")["items"]
            assert len(history) == 12 and {d["status"] for d in history} <= {
                "succeeded",
                "cancelled",
            }


def test_a_410_seen_by_the_worker_pauses_the_hook_for_the_web_process_too(
    tmp_path: Path, start_server: StartServer
) -> None:
    db = tmp_path / "shared" / "relayhook.db"
    with Receiver() as receiver:
        receiver.script("/gone/", Reply(410, body=b"gone"), Reply(200))
        web = start_server(tmp_path / "web", config(db), extra_args=["--role", "web"])
        worker = start_server(tmp_path / "worker", config(db), extra_args=["--role", "worker"])
        with http_client(base_url=web.url) as client:
            relay = call(
                client, "POST", "/api/relays", {"name": "vr", "connector": "gmetri"}, status=201
            )
            call(
                client,
                "POST",
                "/api/hooks",
                {
                    "name": "zap",
                    "events": ["gmetri.*"],
                    "url": receiver.url + "/gone/",
                    "concurrency": 1,
                },
                status=201,
            )
            assert post_gmetri(client, relay["url"], relay["secret"]).status_code == 200
            receiver.wait_for(1, WAIT, path="/gone/")

            def web_sees_it_inactive() -> dict[str, Any] | None:
                hook: dict[str, Any] = call(client, "GET", "/api/hooks/zap")
                return hook if not hook["active"] else None

            hook = wait_until(
                web_sees_it_inactive,
                timeout=2.0,
                interval=0.05,
                what="the web process to show the hook inactive",
            )
            assert "410" in hook["inactive_reason"]
            assert post_gmetri(client, relay["url"], relay["secret"]).status_code == 200
            paused = call(client, "GET", "/api/deliveries?hook=zap&status=paused&limit=100")
            # the one answered 410 and the 3 behind it, then the 4 of the second request
            assert len(paused["items"]) == 8
            assert receiver.count("/gone/") == 1

            call(client, "POST", "/api/hooks/zap/activate")
            receiver.wait_for(1 + 8, WAIT, path="/gone/")  # the worker saw it active again
        with http_client(base_url=worker.url) as worker_client:  # a worker has no admin API
            assert worker_client.get("/api/hooks/zap", headers=AUTH).status_code == 404
            assert worker_client.get("/readyz").json() == {"status": "ready"}


def test_secrets_typed_into_a_hook_appear_nowhere(
    tmp_path: Path, start_server: StartServer
) -> None:
    header, password, query = "hdr-canary-7f3a9c", "pwd-canary-41b2e8", "qry-canary-9d0c55"
    with Receiver() as receiver:
        receiver.script("/fail/", Reply(500, body=b"no"))
        server = start_server(tmp_path, config(), extra_args=["--log-level", "debug"])
        with http_client(base_url=server.url) as client:
            relay = call(
                client, "POST", "/api/relays", {"name": "vr", "connector": "gmetri"}, status=201
            )
            host = receiver.url.removeprefix("http://")
            for name, url in (
                ("failing", f"http://user:{password}@{host}/fail/?token={query}"),
                ("refused", f"http://user:{password}@127.0.0.1:9/?token={query}"),
            ):
                call(
                    client,
                    "POST",
                    "/api/hooks",
                    {
                        "name": name,
                        "events": ["gmetri.*"],
                        "url": url,
                        "headers": {"X-Api-Key": header},
                        "retry": {"schedule": [0, 0.2]},
                    },
                    status=201,
                )
            assert post_gmetri(client, relay["url"], relay["secret"]).status_code == 200
            got = receiver.wait_for(4, WAIT, path="/fail/")
            assert got[0].header("x-api-key") == header and f"token={query}" in got[0].target

            def dead() -> list[dict[str, Any]] | None:
                items: list[dict[str, Any]] = call(
                    client, "GET", "/api/deliveries?status=dead&limit=100"
                )["items"]
                return items if len(items) == 8 else None

            shown = [json.dumps(d) for d in wait_until(dead, timeout=WAIT, what="8 dead")]
            for name in ("failing", "refused"):
                shown.append(json.dumps(call(client, "GET", f"/api/hooks/{name}")))
            shown.append(json.dumps(call(client, "GET", "/api/hooks")))
            for item in call(client, "GET", "/api/deliveries?limit=100")["items"]:
                detail = call(client, "GET", f"/api/deliveries/{item['id']}")
                assert detail["attempts"], detail
                shown.append(json.dumps(detail))
            files = [path.read_bytes() for path in tmp_path.glob("relayhook.db*")]
            assert (tmp_path / "relayhook.db-wal").exists()  # the WAL is read while it lives
        server.stop()
        files += [path.read_bytes() for path in tmp_path.glob("relayhook.db*")]
        files += [path.read_bytes() for path in tmp_path.glob("serve-*.log")]
    for canary in (header, password, query):
        assert not any(canary in text for text in shown), canary
        assert not any(canary.encode() in blob for blob in files), canary
    assert any("[redacted]" in text for text in shown)


def test_the_cli_changes_what_a_running_server_does(
    tmp_path: Path, start_server: StartServer
) -> None:
    def relayhook(*args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [sys.executable, "-m", "relayhook.cli", *args],
            cwd=tmp_path,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(),
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    with Receiver() as receiver:
        server = start_server(tmp_path, config())
        shown = relayhook(
            "relays",
            "add",
            "vr",
            "--connector",
            "gmetri",
            "--secret-stdin",
            stdin="a-secret-typed-by-a-person-0123\n",
        )
        printed = next(
            line.split(": ", 1)[1] for line in shown.splitlines() if line.startswith("Relay URL: ")
        )
        # the CLI prints the URL on [server] public_url; this server runs on a --port of its own
        url = server.url + "/in/" + printed.rsplit("/", 1)[1]
        (tmp_path / "hooks.toml").write_text(
            f'[[hooks]]\nname = "crm"\nevents = ["gmetri.*"]\nurl = "{receiver.url}/cli/"\n'
        )
        assert "added hook 'crm'" in relayhook("hooks", "add", "hooks.toml")
        assert "crm\tapi\tactive" in relayhook("hooks", "list")
        with http_client() as client:

            def accepted() -> bool:
                return (
                    post_gmetri(client, url, "a-secret-typed-by-a-person-0123").status_code == 200
                )

            wait_until(accepted, timeout=2.0, interval=0.05, what="the server to see the relay")
            receiver.wait_for(4, WAIT, path="/cli/")
            relayhook("hooks", "deactivate", "crm")
            with http_client(base_url=server.url) as api:
                wait_until(
                    lambda: not call(api, "GET", "/api/hooks/crm")["active"],
                    timeout=2.0,
                    interval=0.05,
                    what="the server to see it inactive",
                )
            relayhook("relays", "remove", "vr")
            wait_until(
                lambda: post_gmetri(client, url, "x").status_code == 404,
                timeout=2.0,
                interval=0.05,
                what="the relay URL to answer 404",
            )
