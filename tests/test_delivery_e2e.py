"""Hooks and delivery end to end through real sockets: `relayhook serve` as a subprocess on
127.0.0.1, a real SQLite file, and a real receiving server (tests/receiver.py) that records what
arrives and answers by script.

Most tests share one server and one receiver (module scope); each test has its own relay and its
own hook(s), aimed at its own path on the receiver, so their deliveries and counts do not mix. The
shared config allows loopback explicitly (`[delivery] allow_cidrs = ["127.0.0.1/32"]`); the SSRF
tests start servers with the default policy, the SIGKILL test its own server with short leases.
No request goes anywhere outside 127.0.0.0/8 and ::1.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

import httpx
import pytest
import standardwebhooks
from receiver import Receiver, Recorded, Reply
from servers import (
    Canary,
    RelayConfig,
    RelayhookProcess,
    ServerStartError,
    clean_env,
    http_client,
    render_config,
    render_hooks,
    render_tables,
    wait_until,
)

from relayhook.core.connectors import SHIPPED_DIR
from relayhook.core.events import parse_time

try:  # cloudevents 1.x
    from cloudevents.http import from_http
except ImportError:  # cloudevents 2.x keeps the same API under v1
    from cloudevents.v1.http import from_http

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "admin-token-delivery-0123456789"
EXAMPLES = SHIPPED_DIR / "examples"
GMETRI500 = Path(__file__).resolve().parents[2] / "shared" / "bench" / "bodies" / "gmetri500.json"
WAIT = 15.0  # seconds any single expectation may take before the test fails

SECRETS = {
    "rules_key": "rules-api-key-5f2b9c1d7e",
    "render_key": "render-api-key-3a8d6e0f41",
    "render_signing": "whsec_" + base64.b64encode(b"render-signing-key-0123456").decode(),
}
SIGNING_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-key-98765").decode()


def relay(name: str, connector: str = "generic", secret: str = "") -> RelayConfig:
    return RelayConfig(name, connector, f"tok-{name}-{'0' * 16}"[:40], secret)


GM_RULES = relay("gm-rules", "gmetri", "gm-rules-secret-0123456789")
GM_PACED = relay("gm-paced", "gmetri", "gm-paced-secret-0123456789")
ARCADE = relay("arcade-ordered", "synthesisvr")
FLAKY, THROTTLED, GONE = relay("gen-flaky"), relay("gen-throttled"), relay("gen-gone")
HANG, HEALTHY, SIGNED = relay("gen-hang"), relay("gen-healthy"), relay("gen-signed")
ATTACK, REDIRECT = relay("gen-attack"), relay("gen-redirect")
RENDER, REPLAY = relay("gen-render"), relay("gen-replay")
SHARED_RELAYS = [
    GM_RULES,
    GM_PACED,
    ARCADE,
    FLAKY,
    THROTTLED,
    GONE,
    HANG,
    HEALTHY,
    SIGNED,
    ATTACK,
    REDIRECT,
    RENDER,
    REPLAY,
]

ATTACKS = {
    "attack-mro": ("{{ ''.__class__.__mro__ }}", "json"),
    "attack-globals": ("{{ cycler.__init__.__globals__ }}", "json"),
    "attack-attr": ("{{ 'a'|attr('format') }}", "json"),
    "attack-repeat": ("{{ 'A' * 10**9 }}", "json"),
    "attack-power": ("{{ 9 ** (9 ** 9) }}", "json"),  # Jinja reads 9**9**9 as (9**9)**9
    "attack-loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}",
        "text",
    ),
}


def no_retry() -> dict[str, Any]:
    return {"schedule": [0], "jitter": 0}


def shared_hooks(rx: str) -> list[dict[str, Any]]:
    """The shared server's hooks; `rx` is the receiver's base URL."""

    def hook(name: str, relays: list[str], path: str, **more: Any) -> dict[str, Any]:
        return {"name": name, "events": ["*"], "relays": relays, "url": rx + path, **more}

    return [
        {
            "name": "gmetri-rules",
            "description": "GMetri rules to a CRM",
            "events": ["gmetri.rule.*"],
            "relays": [GM_RULES.name],
            "url": rx + "/rules/{event.subject}",
            "params": {
                "rule": "{{ event.data.cname }}",
                "scene": "{{ event.data.scene_name }}",
                "fixed": "a b&c",
            },
            "headers": {"X-Fixed": "fixed-value", "X-Api-Key": "{{ secrets.rules_key }}"},
            "body": {
                "subject": "{{ event.subject }}",
                "rule_id": "{{ event.data.cid }}",
                "rule": "{{ event.data.cname }}",
                "time": "{{ event.time }}",
                "source": "{{ event.source }}",
                "hook": "{{ hook.name }}",
            },
            "retry": no_retry(),
        },
        hook(
            "ordered-sessions",
            [ARCADE.name],
            "/ordered/{event.subject}/{event.data.action}",
            events=["synthesisvr.session.*"],
            ordered=True,
            retry={"schedule": [0, 0.3, 0.3], "jitter": 0},
        ),
        hook("flaky", [FLAKY.name], "/flaky/", retry={"schedule": [0, 0.2, 0.2, 0.2], "jitter": 0}),
        hook(
            "throttled",
            [THROTTLED.name],
            "/throttled/",
            retry={"schedule": [0, 0.1, 0.1], "jitter": 0},
        ),
        hook("gone", [GONE.name], "/gone/", retry={"schedule": [0, 0.2], "jitter": 0}),
        hook("hang", [HANG.name], "/hang/", timeout=1, retry=no_retry()),
        hook("healthy", [HANG.name, HEALTHY.name], "/healthy/", retry=no_retry()),
        hook(
            "signed",
            [SIGNED.name],
            "/signed/",
            preset="standard-webhooks",
            signing_secret=SIGNING_SECRET,
            retry=no_retry(),
        ),
        hook("cloudevents", [SIGNED.name], "/ce/", preset="cloudevents", retry=no_retry()),
        *[
            hook(name, [ATTACK.name], f"/{name}/", body=body, body_format=fmt, retry=no_retry())
            for name, (body, fmt) in ATTACKS.items()
        ],
        hook("bystander", [ATTACK.name], "/bystander/", retry=no_retry()),
        hook("redirect", [REDIRECT.name], "/redirect/", retry=no_retry()),
        hook(
            "render",
            [RENDER.name],
            "/render/{event.subject}/x",
            method="PUT",
            params={"kind": "{{ event.type }}", "n": "{{ event.data.n }}", "fixed": "a b&c"},
            headers={"X-Fixed": "fixed-value", "X-Api-Key": "{{ secrets.render_key }}"},
            body={
                "subject": "{{ event.subject }}",
                "data": "{{ event.data }}",
                "note": 'it\'s "quoted", $HOME `uname` \\ é',
            },
            signing_secret="{{ secrets.render_signing }}",
            retry=no_retry(),
        ),
        hook("replay", [REPLAY.name], "/replay/", retry=no_retry()),
        {
            "name": "paced",
            "events": ["gmetri.variables.changed"],
            "relays": [GM_PACED.name],
            "preset": "zapier",
            "url": rx + "/paced/",
            "rate_limit": {"per_second": 25},
            "concurrency": 4,
            "retry": {"schedule": [0, 1, 1], "jitter": 0},
        },
    ]


def config(
    relays: list[RelayConfig],
    hooks: list[dict[str, Any]],
    *,
    allow_loopback: bool = True,
    **delivery: Any,
) -> str:
    if allow_loopback:
        delivery.setdefault("allow_cidrs", ["127.0.0.1/32"])
    delivery.setdefault("poll_interval", 0.1)  # retries due in 0.2 s go at about 0.2 s
    return (
        render_config(relays=relays, admin_token=ADMIN_TOKEN)
        + render_tables(delivery=delivery, secrets=SECRETS)
        + render_hooks(hooks)
    )


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def canary2() -> Iterator[Canary]:
    """A canary on 127.0.0.2, where a redirect would lead."""
    with Canary("127.0.0.2") as canary:
        yield canary


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[RelayhookProcess]:
    text = config(SHARED_RELAYS, shared_hooks(receiver.url))
    # Some hooks here are broken on purpose (template attacks, a missing field): diagnostics
    # would stop `serve`; they are accepted to show how they fail at run time.
    with RelayhookProcess(
        tmp_path_factory.mktemp("delivery"), text, extra_args=["--accept-findings"]
    ) as process:
        yield process


@pytest.fixture
def client(server: RelayhookProcess) -> Iterator[httpx.Client]:
    with http_client(base_url=server.url) as c:
        yield c


# --- helpers --------------------------------------------------------------------------------------


def api(client: httpx.Client, path: str, **params: Any) -> Any:
    response = client.get(path, params=params, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200, response.text
    return response.json()


def api_post(client: httpx.Client, path: str, **params: Any) -> Any:
    response = client.post(path, params=params, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200, response.text
    return response.json()


def deliveries(client: httpx.Client, hook: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api(client, "/api/deliveries", hook=hook, limit=1000, **params)[
        "items"
    ]
    return items


def delivery(client: httpx.Client, delivery_id: str) -> dict[str, Any]:
    found: dict[str, Any] = api(client, f"/api/deliveries/{delivery_id}")
    return found


def settled(
    client: httpx.Client,
    hook: str,
    count: int,
    statuses: tuple[str, ...] = ("succeeded", "dead"),
    timeout: float = WAIT,
) -> list[dict[str, Any]]:
    """The hook's deliveries once `count` of them are in one of `statuses`."""

    def check() -> list[dict[str, Any]] | None:
        items = deliveries(client, hook)
        done = [d for d in items if d["status"] in statuses]
        return items if len(done) >= count else None

    found: list[dict[str, Any]] = wait_until(
        check, timeout=timeout, interval=0.05, what=f"{count} deliveries of {hook} in {statuses}"
    )
    return found


def hook_state(client: httpx.Client, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        h for h in api(client, "/api/hooks")["items"] if h["name"] == name
    ]
    assert len(found) == 1, name
    return found[0]


def post_generic(
    client: httpx.Client,
    relay_config: RelayConfig,
    data: Any,
    *,
    type: str = "test.happened",
    subject: str = "",
) -> str:
    """One event through a generic relay; returns its id."""
    query = urlencode({"type": type, "subject": subject})
    response = client.post(f"/in/{relay_config.token}?{query}", json=data)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1, response.text
    (event,) = api(client, "/api/events", request=response.json()["request_id"])["items"]
    return str(event["id"])


def post_gmetri(client: httpx.Client, relay_config: RelayConfig, body: bytes) -> dict[str, Any]:
    response = client.post(
        f"/in/{relay_config.token}",
        content=body,
        headers={
            "Authorization": f"Basic {relay_config.secret}",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def seconds(text: str) -> float:
    return parse_time(text).timestamp()


def stays(condition: Callable[[], bool], duration: float, what: str) -> None:
    """`condition` holds on every look for `duration` seconds (a bounded negative check)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert condition(), what
        time.sleep(0.05)
    assert condition(), what


def webhook_ids(requests: list[Recorded]) -> set[str | None]:
    return {r.header("webhook-id") for r in requests}


# --- the hook's request is what its templates say -------------------------------------------------


def test_gmetri_rules_become_four_requests_exactly_as_templated(
    client: httpx.Client, receiver: Receiver
) -> None:
    answer = post_gmetri(client, GM_RULES, (EXAMPLES / "gmetri-rules.json").read_bytes())
    assert answer["accepted"] == 4
    events = {e["id"]: e for e in api(client, "/api/events", request=answer["request_id"])["items"]}

    got = receiver.wait_for(4, WAIT, path="/rules/")
    items = settled(client, "gmetri-rules", 4)

    assert len(got) == 4 and receiver.count("/rules/") == 4
    assert [d["status"] for d in items] == ["succeeded"] * 4
    by_id = {d["id"]: d for d in items}
    assert len(webhook_ids(got)) == 4 and webhook_ids(got) == set(by_id)
    seen = set()
    for request in got:
        event = events[by_id[request.header("webhook-id")]["event_id"]]
        subject, data = event["subject"], event["data"]
        seen.add((subject, data["cid"]))
        assert request.method == "POST"
        assert unquote(request.path) == f"/rules/{subject}"
        assert request.params() == [
            ("rule", data["cname"]),
            ("scene", data["scene_name"]),
            ("fixed", "a b&c"),
        ]
        assert request.header("x-fixed") == "fixed-value"
        assert request.header("x-api-key") == SECRETS["rules_key"]
        assert request.header("content-type") == "application/json"
        assert (request.header("user-agent") or "").startswith("Relayhook/")
        assert json.loads(request.body) == {
            "subject": subject,
            "rule_id": data["cid"],
            "rule": data["cname"],
            "time": event["time"],
            "source": "gmetri/gmetri/gmetridemo",
            "hook": "gmetri-rules",
        }
    assert seen == {
        ("amit@gmetri.com", 1),
        ("mitul@gmetri.com", 1),
        ("mitul@gmetri.com", 2),
        ("amit@gmetri.com", 10),
    }

    response = client.get(
        f"/api/deliveries/{items[0]['id']}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    detail = response.json()
    (attempt,) = detail["attempts"]
    assert attempt["response_status"] == 200 and attempt["error_class"] is None
    assert ["x-api-key", "[redacted]"] in attempt["request"]["headers"]
    # a fixed value typed into a hook is a secret (issue 6): the history shows it redacted
    assert ["x-fixed", "[redacted]"] in attempt["request"]["headers"]
    assert "fixed-value" not in response.text
    assert SECRETS["rules_key"] not in response.text


# --- ordered delivery -----------------------------------------------------------------------------


def synthesis(action: str, customer: int, session: str) -> dict[str, Any]:
    return {
        "uuid": session,
        "action": action,
        "location": "Kamen Test",
        "stations": 1,
        "customerid": customer,
    }


def test_ordered_hook_delivers_a_customers_create_before_its_delete_despite_a_500(
    client: httpx.Client, receiver: Receiver
) -> None:
    for customer in (7001, 7002):
        receiver.script(f"/ordered/{customer}/create", Reply(500), Reply(200))
    token = f"/in/{ARCADE.token}"
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    # Customer 7001: two separate POSTs, create first; customer 7002: both in one array.
    assert client.post(token, json=[synthesis("create", 7001, first)]).status_code == 200
    assert client.post(token, json=[synthesis("delete", 7001, first)]).status_code == 200
    both = [synthesis("create", 7002, second), synthesis("delete", 7002, second)]
    assert client.post(token, json=both).status_code == 200

    for customer in (7001, 7002):
        got = receiver.wait_for(3, WAIT, path=f"/ordered/{customer}/")
        assert [(r.path, r.status) for r in got] == [
            (f"/ordered/{customer}/create", 500),
            (f"/ordered/{customer}/create", 200),
            (f"/ordered/{customer}/delete", 200),
        ]
        assert got[2].arrived >= got[1].arrived
        assert json.loads(got[2].body)["data"]["action"] == "delete"
    items = settled(client, "ordered-sessions", 4)
    assert sorted(d["status"] for d in items) == ["succeeded"] * 4
    creates = [d for d in items if d["attempts"] == 2]
    assert len(creates) == 2  # each create: a 500, then a 200; each delete: one attempt


# --- retries --------------------------------------------------------------------------------------


def test_500_500_200_is_delivered_at_the_third_attempt_with_one_webhook_id(
    client: httpx.Client, receiver: Receiver
) -> None:
    receiver.script("/flaky/", Reply(500), Reply(500), Reply(200))
    post_generic(client, FLAKY, {"n": 1})

    got = receiver.wait_for(3, WAIT, path="/flaky/")
    (item,) = settled(client, "flaky", 1)

    assert [r.status for r in got] == [500, 500, 200]
    assert webhook_ids(got) == {item["id"]}
    assert got[1].arrived - got[0].arrived >= 0.2 - 0.02
    assert got[2].arrived - got[1].arrived >= 0.2 - 0.02
    detail = delivery(client, item["id"])
    assert detail["status"] == "succeeded"
    assert [a["response_status"] for a in detail["attempts"]] == [500, 500, 200]
    assert [a["number"] for a in detail["attempts"]] == [1, 2, 3]
    headers = [dict(a["request"]["headers"]) for a in detail["attempts"]]
    assert {h["webhook-id"] for h in headers} == {item["id"]}


def test_429_with_retry_after_2_waits_2_seconds(client: httpx.Client, receiver: Receiver) -> None:
    receiver.script("/throttled/", Reply(429, headers={"Retry-After": "2"}), Reply(200))
    post_generic(client, THROTTLED, {"n": 1})

    got = receiver.wait_for(2, WAIT, path="/throttled/")
    (item,) = settled(client, "throttled", 1)

    assert [r.status for r in got] == [429, 200]
    gap = got[1].arrived - got[0].arrived
    assert 2.0 <= gap < 4.0, gap  # the schedule alone says 0.1 s
    assert item["status"] == "succeeded"
    assert webhook_ids(got) == {item["id"]}


def test_410_disables_the_hook_its_deliveries_wait_and_drain_on_activate(
    client: httpx.Client, receiver: Receiver
) -> None:
    receiver.script("/gone/", Reply(410), Reply(200))
    post_generic(client, GONE, {"n": 1})
    receiver.wait_for(1, WAIT, path="/gone/")
    wait_until(
        lambda: not hook_state(client, "gone")["active"],
        timeout=WAIT,
        what="the hook to be disabled",
    )

    state = hook_state(client, "gone")
    assert "410" in state["inactive_reason"], state
    later = post_generic(client, GONE, {"n": 2})
    (waiting,) = deliveries(client, "gone", event=later)
    assert waiting["status"] == "paused"
    stays(lambda: receiver.count("/gone/") == 1, 1.0, "a disabled hook's delivery was sent")
    assert [d["status"] for d in deliveries(client, "gone")] == ["paused", "paused"]

    answer = api_post(client, "/api/hooks/gone/activate")
    assert answer["active"] is True

    got = receiver.wait_for(3, WAIT, path="/gone/")
    items = settled(client, "gone", 2)
    assert [r.status for r in got] == [410, 200, 200]
    assert [d["status"] for d in items] == ["succeeded", "succeeded"]
    assert hook_state(client, "gone")["active"] is True


def test_a_receiver_that_never_answers_times_out_while_other_hooks_deliver(
    client: httpx.Client, receiver: Receiver
) -> None:
    receiver.script("/hang/", Reply(hang=True))
    post_generic(client, HANG, {"n": 0})  # to both `hang` and `healthy`
    (held,) = receiver.wait_for(1, WAIT, path="/hang/")
    for n in (1, 2, 3):  # while `hang` waits for its answer
        post_generic(client, HEALTHY, {"n": n})

    healthy = receiver.wait_for(4, WAIT, path="/healthy/")
    healthy_items = settled(client, "healthy", 4)
    (hung,) = settled(client, "hang", 1)

    assert all(r.arrived < held.arrived + 1.0 for r in healthy), (
        "the healthy hook waited for the hanging one"
    )
    assert [d["status"] for d in healthy_items] == ["succeeded"] * 4
    detail = delivery(client, hung["id"])
    assert detail["status"] == "dead"
    (attempt,) = detail["attempts"]
    assert attempt["error_class"] == "timeout", attempt
    assert attempt["response_status"] is None
    assert 900 <= attempt["duration_ms"] <= 2000, attempt
    ended = seconds(attempt["started_at"]) + attempt["duration_ms"] / 1000
    assert max(seconds(d["updated_at"]) for d in healthy_items) < ended


# --- signatures and CloudEvents, checked by the reference packages --------------------------------


def test_signed_and_cloudevents_deliveries_pass_the_reference_packages(
    client: httpx.Client, receiver: Receiver
) -> None:
    data = {"score": 97, "quizCompleted": True, "name": 'Zoë "Z" <z@x>'}
    event_id = post_generic(client, SIGNED, data, type="quiz.completed", subject="zoe@example.com")
    (event,) = api(client, "/api/events", relay=SIGNED.name)["items"]

    (signed,) = receiver.wait_for(1, WAIT, path="/signed/")
    (structured,) = receiver.wait_for(1, WAIT, path="/ce/")

    payload = standardwebhooks.Webhook(SIGNING_SECRET).verify(signed.body, signed.header_map())
    assert payload == {"type": "quiz.completed", "timestamp": event["time"], "data": data}
    (item,) = deliveries(client, "signed")
    assert signed.header("webhook-id") == item["id"]
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SIGNING_SECRET).verify(signed.body + b" ", signed.header_map())

    assert (structured.header("content-type") or "").startswith("application/cloudevents+json")
    parsed = from_http(structured.header_map(), structured.body)
    assert parsed["id"] == event_id
    assert parsed["type"] == "quiz.completed"
    assert parsed["source"] == f"generic/{SIGNED.name}"
    assert parsed["subject"] == "zoe@example.com"
    assert parsed["specversion"] == "1.0"
    assert parsed.data == data


# --- template attacks -----------------------------------------------------------------------------


def test_template_attacks_fail_their_delivery_fast_and_nothing_else(
    client: httpx.Client, receiver: Receiver, server: RelayhookProcess
) -> None:
    post_generic(client, ATTACK, {"n": 1})

    (bystander,) = settled(client, "bystander", 1)
    assert bystander["status"] == "succeeded"
    for name in ATTACKS:
        (item,) = settled(client, name, 1)
        detail = delivery(client, item["id"])
        assert detail["status"] == "dead", (name, detail)
        (attempt,) = detail["attempts"]
        assert attempt["error_class"] == "render", (name, attempt)
        assert attempt["error"].startswith("body: "), (name, attempt)
        assert any(word in attempt["error"] for word in ("sandbox", "too large", "unsafe")), (
            name,
            attempt["error"],
        )
        assert attempt["duration_ms"] < 1000, (name, attempt)
        assert seconds(detail["updated_at"]) - seconds(detail["created_at"]) < 1.0, (name, detail)
        assert receiver.count(f"/{name}/") == 0
    assert receiver.count("/bystander/") == 1
    assert server.running
    assert client.get("/healthz").status_code == 200
    post_generic(client, ATTACK, {"n": 2})
    assert len(settled(client, "bystander", 2)) == 2
    assert {d["status"] for d in deliveries(client, "bystander")} == {"succeeded"}


# --- SSRF: a redirect is not followed -------------------------------------------------------------


def test_a_302_to_another_loopback_address_is_not_followed(
    client: httpx.Client, receiver: Receiver, canary2: Canary
) -> None:
    receiver.script("/redirect/", Reply(302, headers={"Location": canary2.url + "stolen"}))
    post_generic(client, REDIRECT, {"n": 1})

    (item,) = settled(client, "redirect", 1)

    detail = delivery(client, item["id"])
    assert detail["status"] == "dead" and detail["last_status"] == 302, detail
    (attempt,) = detail["attempts"]
    assert attempt["response_status"] == 302
    assert receiver.count("/redirect/") == 1
    assert canary2.connections() == 0


# --- render, replay -------------------------------------------------------------------------------


def run_cli(server: RelayhookProcess, *args: str) -> subprocess.CompletedProcess[str]:
    assert server.config_path is not None
    return subprocess.run(
        [sys.executable, "-m", "relayhook.cli", "--config", str(server.config_path), *args],
        cwd=server.workdir,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def run_curl(command: str) -> None:
    """Run a rendered cURL command as a shell would; where there is no curl, parse it with
    shlex and send it with httpx (the same method, URL, headers and body)."""
    if shutil.which("curl") and shutil.which("bash"):
        ran = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            timeout=30,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr
        return
    args = shlex.split(command)
    method, url, headers, body = "GET", "", [], b""
    pairs = iter(args[1:])
    for arg in pairs:
        if arg == "--request":
            method = next(pairs)
        elif arg == "--header":
            name, _, value = next(pairs).partition(": ")
            headers.append((name, value))
        elif arg == "--data-binary":
            body = next(pairs).encode("utf-8")
        elif not arg.startswith("--"):
            url = arg
    with http_client() as c:
        c.request(method, url, headers=headers, content=body or None)


def test_relayhook_render_prints_a_curl_command_that_sends_the_same_request(
    client: httpx.Client, receiver: Receiver, server: RelayhookProcess
) -> None:
    post_generic(
        client,
        RENDER,
        {"n": 42, "tags": ["a b", "c&d"]},
        type="quiz.completed",
        subject="ada lovelace/1",
    )
    (sent,) = receiver.wait_for(1, WAIT, path="/render/")

    result = run_cli(server, "render", "render", "--newest")  # the event just stored
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip()
    assert command.startswith("curl ")
    run_curl(command)
    (_, pasted) = receiver.wait_for(2, WAIT, path="/render/")

    assert unquote(sent.path) == "/render/ada lovelace/1/x"
    assert (pasted.method, pasted.target, pasted.body) == (sent.method, sent.target, sent.body)
    assert sent.method == "PUT"
    for name in ("x-fixed", "x-api-key", "content-type", "user-agent"):
        assert pasted.header(name) == sent.header(name), name
    assert pasted.header("webhook-id") != sent.header("webhook-id")
    webhook_id = pasted.header("webhook-id") or ""
    assert len(webhook_id) == 36 and webhook_id[14] == "7"  # a UUIDv7, as real deliveries
    for request in (sent, pasted):
        standardwebhooks.Webhook(SECRETS["render_signing"]).verify(
            request.body, request.header_map()
        )


def test_replay_from_the_cli_and_the_api_makes_dead_deliveries_succeed(
    client: httpx.Client, receiver: Receiver, server: RelayhookProcess
) -> None:
    receiver.script("/replay/", Reply(500))
    for n in (1, 2):
        post_generic(client, REPLAY, {"n": n})
    dead = settled(client, "replay", 2)
    assert [d["status"] for d in dead] == ["dead", "dead"]

    receiver.script("/replay/", Reply(200))
    result = run_cli(server, "replay", "--hook", "replay", "--status", "dead")
    assert result.returncode == 0, result.stderr
    assert "replayed 2 deliveries" in result.stdout
    items = settled(client, "replay", 2, statuses=("succeeded",))
    assert [d["attempts"] for d in items] == [2, 2]
    got = receiver.wait_for(4, WAIT, path="/replay/")
    assert [r.status for r in got] == [500, 500, 200, 200]
    by_id: defaultdict[str | None, list[int | None]] = defaultdict(list)
    for request in got:
        by_id[request.header("webhook-id")].append(request.status)
    assert set(by_id) == {d["id"] for d in items}  # the replay kept each delivery's webhook-id

    receiver.script("/replay/", Reply(500))
    third = post_generic(client, REPLAY, {"n": 3})
    (one,) = [d for d in settled(client, "replay", 3) if d["event_id"] == third]
    assert one["status"] == "dead"
    receiver.script("/replay/", Reply(200))
    assert api_post(client, f"/api/deliveries/{one['id']}/replay") == {"replayed": 1}
    wait_until(
        lambda: delivery(client, one["id"])["status"] == "succeeded",
        timeout=WAIT,
        what="the replayed delivery to succeed",
    )
    assert [a["response_status"] for a in delivery(client, one["id"])["attempts"]] == [500, 200]


# --- the rate limit (slow by nature: 500 requests at 25/s) ----------------------------------------


def gmetri_batch(rows: int) -> bytes:
    if rows == 500 and GMETRI500.is_file():
        return GMETRI500.read_bytes()
    row = {"identifier": "user123@x.com", "variables": {"score": 75, "quizCompleted": False}}
    return json.dumps(
        {"type": "variables", "data": {"orgSlug": "o", "depSlug": "d", "rows": [row] * rows}}
    ).encode()


def test_500_events_drain_at_the_rate_limit_without_a_single_429(
    client: httpx.Client, receiver: Receiver
) -> None:
    receiver.limit("/paced/", per_second=30)
    started = time.monotonic()
    assert post_gmetri(client, GM_PACED, gmetri_batch(500))["accepted"] == 500

    got = receiver.wait_for(500, 45.0, path="/paced/")
    elapsed = got[-1].arrived - started
    items = settled(client, "paced", 500, statuses=("succeeded",), timeout=WAIT)

    assert [r.status for r in got if r.status != 200] == []  # no 429 at all
    assert len(got) == 500 and len(webhook_ids(got)) == 500
    assert len(items) == 500
    assert 18.0 <= elapsed <= 30.0, elapsed
    busiest = max(sum(1 for r in got if t <= r.arrived < t + 1.0) for t in (r.arrived for r in got))
    assert busiest <= 30, busiest
    body = json.loads(got[0].body)  # the zapier preset: one flat object
    assert body["data__score"] == 75 and body["event_type"] == "gmetri.variables.changed"


# --- SIGKILL with deliveries in flight ------------------------------------------------------------


def all_events_arrived(receiver: Receiver, path: str, count: int) -> list[Recorded] | None:
    """The requests under `path` once they hold `count` distinct events (by the body's id)."""
    got = receiver.requests(path)
    return got if len({json.loads(r.body)["id"] for r in got}) >= count else None


def test_sigkill_with_deliveries_in_flight_loses_nothing(
    tmp_path: Path, receiver: Receiver
) -> None:
    gm = relay("gm-crash", "gmetri", "gm-crash-secret-0123456789")
    receiver.script("/slow/", Reply(200, delay=0.3))
    # timeout 1: a claim's lease is at least the request's timeout (+ pacing), so that a live
    # dispatcher never sees its own delivery claimed again; lease_seconds = 2 rules here.
    hooks = [
        {
            "name": "slow",
            "events": ["*"],
            "url": receiver.url + "/slow/",
            "timeout": 1,
            "concurrency": 4,
            "retry": {"schedule": [0, 0.5, 0.5, 0.5], "jitter": 0},
        }
    ]
    rows = [{"identifier": f"viewer{n:02d}@x.com", "variables": {"n": n}} for n in range(40)]
    body = json.dumps(
        {"type": "variables", "data": {"orgSlug": "o", "depSlug": "d", "rows": rows}}
    ).encode()

    with RelayhookProcess(tmp_path, config([gm], hooks, lease_seconds=2)) as server:
        with http_client(base_url=server.url) as c:
            assert post_gmetri(c, gm, body)["accepted"] == 40
            receiver.wait_for(6, WAIT, path="/slow/")
            server.kill()  # 4 requests in flight (each answered after 0.3 s), claimed
            assert receiver.count("/slow/") < 40
            server.start()
            got = wait_until(
                lambda: all_events_arrived(receiver, "/slow/", 40),
                timeout=30.0,
                what="every event at the receiver",
            )
            items = settled(c, "slow", 40, statuses=("succeeded",), timeout=30.0)
            counts = api(c, "/api/hooks")["items"][0]["deliveries"]
            # Read again once all have settled: the events in flight at the kill had already
            # arrived once, so "every event arrived" can come before their second sending.
            got = receiver.requests("/slow/")

    events: defaultdict[str, set[str | None]] = defaultdict(set)
    for request in got:
        events[json.loads(request.body)["id"]].add(request.header("webhook-id"))
    assert len(events) == 40
    assert all(len(ids) == 1 for ids in events.values()), events  # duplicates: same webhook-id
    # The requests in flight at the kill were sent again after their lease ran out.
    assert len(got) > 40, "no delivery was in flight at the kill"
    assert {d["id"] for d in items} == {next(iter(ids)) for ids in events.values()}
    assert counts["succeeded"] == 40 and counts["claimed"] == 0, counts
    with contextlib.closing(sqlite3.connect(server.db_path)) as db:
        rows_left = db.execute(
            "SELECT count(*) FROM deliveries WHERE status = 'claimed' OR lease_owner IS NOT NULL"
        ).fetchone()[0]
    assert rows_left == 0


# --- SSRF with the default policy -----------------------------------------------------------------

LOOPBACK_FORMS = [
    "127.0.0.1",
    "127.1",
    "0x7f000001",
    "2130706433",
    "localhost",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "127.000.000.001",
    "0x7f.1",
    "localhost.",
    "127.0.0.1.",
    "api.localhost",
    "x.localhost.",
    "xn--localhost-",
]  # the last: class internal


@pytest.fixture
def loopback_canary() -> Iterator[list[Canary]]:
    """Canaries on 127.0.0.1 and on ::1 at the same port, so that every loopback form leads to
    one (only the first where this machine has no IPv6 loopback)."""
    for _ in range(20):  # bounded: a port free on both
        canaries = [Canary("127.0.0.1")]
        try:
            canaries.append(Canary("::1", port=canaries[0].port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                canaries[0].close()
                continue
        try:
            yield canaries
        finally:
            for canary in canaries:
                canary.close()
        return
    pytest.fail("no port free on both 127.0.0.1 and ::1")


def test_fixed_loopback_urls_make_serve_refuse_to_start(
    tmp_path: Path, loopback_canary: list[Canary]
) -> None:
    port = loopback_canary[0].port
    hooks = [
        {"name": f"fixed-{n}", "events": ["*"], "url": f"http://{host}:{port}/"}
        for n, host in enumerate(LOOPBACK_FORMS)
    ]
    process = RelayhookProcess(tmp_path, config([relay("gen-ssrf")], hooks, allow_loopback=False))
    try:
        with pytest.raises(ServerStartError) as failure:
            process.start()
    finally:
        process.close(quiet=True)

    log = str(failure.value)
    assert process.process is not None and process.process.returncode != 0
    for n, host in enumerate(LOOPBACK_FORMS):
        line = next((part for part in log.splitlines() if f"'fixed-{n}'" in part), None)
        assert line is not None, f"no refusal for {host} in:\n{log}"
        assert "destination refused" in line and "loopback" in line, line
    assert [canary.connections() for canary in loopback_canary] == [0] * len(loopback_canary)


def test_templated_loopback_hosts_are_refused_when_sent(
    tmp_path: Path, loopback_canary: list[Canary]
) -> None:
    port = loopback_canary[0].port
    gen = relay("gen-ssrf")
    hooks = [
        {
            "name": f"templated-{n}",
            "events": ["*"],
            "url": f"http://{{{{ secrets.host_{n} }}}}:{port}/",
            "retry": {"schedule": [0, 0.1, 0.1], "jitter": 0},
        }
        for n in range(len(LOOPBACK_FORMS))
    ]
    text = config([gen], hooks, allow_loopback=False).replace(
        "[secrets]\n",
        "[secrets]\n" + "".join(f'host_{n} = "{host}"\n' for n, host in enumerate(LOOPBACK_FORMS)),
    )
    with RelayhookProcess(tmp_path, text) as server, http_client(base_url=server.url) as c:
        post_generic(c, gen, {"n": 1})
        for n, host in enumerate(LOOPBACK_FORMS):
            (item,) = settled(c, f"templated-{n}", 1)
            detail = delivery(c, item["id"])
            assert detail["status"] == "dead", (host, detail)
            (attempt,) = detail["attempts"]  # no retry: it cannot heal by itself
            assert attempt["error_class"] == "destination", (host, attempt)
            assert "destination refused" in attempt["error"], (host, attempt)
            assert "loopback" in attempt["error"], (host, attempt)
            assert attempt["response_status"] is None
        assert server.running
    assert [canary.connections() for canary in loopback_canary] == [0] * len(loopback_canary)
