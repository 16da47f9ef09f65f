"""Nothing silent: a table of deliberate mistakes across connectors, hooks and settings, each
asserting WHERE it is caught (`check`, `serve` at start, a console save, the API) and the exact
message (relayhook.core.diagnostics: one set of rules behind all four).

- check:   `relayhook check CONFIG` (in process), the line it prints;
- serve:   what `serve` runs before it starts (`start_allowed`): an error on stderr and no
           start, a warning logged once at WARNING;
- api:     POST /api/hooks over create_app and a real SQLite file: an error is a 422 with the
           findings, a warning comes back with the saved hook;
- console: the hook form's Save over the same app, signed in: an error is a 422 page with the
           message at its field (warnings are console19's "Save anyway" screen: not asserted).

A connector mistake is caught where connectors are read: `check` and `serve` (neither the API
nor the console edits connectors); a relay secret where relays are made: check, serve, API.
"""

from __future__ import annotations

import asyncio
import html
import io
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import run

from relayhook.cli import main
from relayhook.cli.serve import start_allowed
from relayhook.core.connectors import SHIPPED_DIR
from relayhook.core.events import Event
from relayhook.passwords import set_password
from relayhook.settings import load_settings
from relayhook.store import SQLiteStore
from relayhook.web.app import create_app

TOKEN = "admin-token-0123456789abcdef"
PASSWORD = "console-password-0123456789"
FIXTURES = Path(__file__).parent / "fixtures"
BASE = """\
[storage]
url = "sqlite:///relayhook.db"

[delivery]
allow_private_destinations = true

[admin]
token = "admin-token-0123456789abcdef"

[connectors]
dirs = ["connectors"]

[[relays]]
name = "pay"
connector = "stripe"
token = "pay-token-0123456789"
secret = "whsec_relayhookExampleSecret0123456789"

[[relays]]
name = "chat"
connector = "slack"
token = "chat-token-0123456789"
secret = "slack-secret-0123456789"

[[relays]]
name = "forms"
connector = "typeform"
token = "forms-token-0123456789"
secret = "typeform-secret-0123456789"

[[relays]]
name = "deals"
connector = "crm"
token = "deals-token-0123456789"
"""
GOOD_HOOK = {"name": "h", "events": ["stripe.invoice.paid"], "url": "http://127.0.0.1:9/h"}


@dataclass
class Mistake:
    """One deliberate mistake: what changes, the message, and where it must be caught."""

    id: str
    message: str  # the finding as `check` prints it, `{where}` for the file's location
    where: tuple[str, ...]  # of "check", "serve", "api", "console"
    hook: dict[str, Any] | None = None  # a hook with the mistake (config, API and console)
    config: str = ""  # TOML added to the config (a relay, a setting)
    connector: tuple[str, str, str] | None = None  # (file, text replaced, replacement)
    extra_connector: str | None = None  # a whole connector file, written to connectors/
    stored: list[Event] = field(default_factory=list)  # traffic the store has seen
    warning: bool = False


def hook(**changes: Any) -> dict[str, Any]:
    return {**GOOD_HOOK, **changes}


def stored_event(type: str, data: Any, n: int = 0, relay: str = "deals") -> Event:
    return Event(
        f"00000000-0000-7000-8000-{n:012d}",
        "crm",
        type,
        "d-1",
        "2024-12-01T10:00:00.000Z",
        data,
        relay,
        request_id="",
    )


ALL = ("check", "serve", "api", "console")
FILES = ("check", "serve")
SEEN = [stored_event("crm.contact.updated", {"title": "Acme", "fields": {}}, n) for n in range(3)]

MISTAKES = [
    # --- hook patterns -------------------------------------------------------------------
    Mistake(
        "payload type typo under stripe.",
        "{where}:hooks[0].events[0]:{line}: warning: event pattern 'stripe.invoice.payed' "
        "matches none of the event types the examples produce or the store has seen (0 "
        "events): a typo? the hook fires only if such a type ever comes; nearest: "
        "stripe.invoice.paid",
        ("check", "serve", "api"),
        hook=hook(events=["stripe.invoice.payed"]),
        warning=True,
    ),
    Mistake(
        "payload type typo under slack.",
        "{where}:hooks[0].events[0]:{line}: warning: event pattern 'slack.messages' matches "
        "none of the event types the examples produce or the store has seen (0 events): a "
        "typo? the hook fires only if such a type ever comes; nearest: slack.message",
        ("check", "serve", "api"),
        hook=hook(events=["slack.messages"]),
        warning=True,
    ),
    Mistake(
        "payload type typo, known only from the store",
        "{where}:hooks[0].events[0]:{line}: warning: event pattern 'crm.contacts.updated' "
        "matches none of the event types the examples produce or the store has seen (3 "
        "events): a typo? the hook fires only if such a type ever comes; nearest: "
        "crm.contact.updated (seen 3 times)",
        ("check", "serve", "api"),
        hook=hook(events=["crm.contacts.updated"]),
        stored=SEEN,
        warning=True,
    ),
    Mistake(
        "`slack.message.*` does not match slack.message",
        "{where}:hooks[0].events[0]:{line}: warning: event pattern 'slack.message.*' "
        "matches none of the event types the examples produce or the store has seen (0 "
        "events): a typo? the hook fires only if such a type ever comes; nearest: "
        "slack.message",
        ("check", "serve", "api"),
        hook=hook(events=["slack.message.*"]),
        warning=True,
    ),
    Mistake(
        "a type no connector can emit",
        "{where}:hooks[0].events[0]:{line}: event pattern 'gmetri.variable.changed' matches "
        "no event type the connectors can emit (the hook would never fire); nearest: "
        "gmetri.variables.changed, gmetri.rule.triggered, gmetri.session.created",
        ALL,
        hook=hook(events=["gmetri.variable.changed"]),
    ),
    Mistake(
        "a hook limited to a relay whose connector cannot emit the type",
        "{where}:hooks[0].events[0]:{line}: event pattern 'stripe.invoice.paid' matches no "
        "event type the connectors can emit (the hook would never fire); nearest: "
        "slack.*",
        ("check", "serve", "api"),
        hook=hook(relays=["chat"]),
    ),
    # --- hooks rendered against examples and stored events ---------------------------------
    Mistake(
        "a body typo",
        "{where}:hooks[0].body.c:{line}: body.c fails on the example event "
        "'stripe.invoice.paid' and 1 more of the 2 it matches: 'dict object' has no "
        "attribute 'costum'; the delivery would die",
        ALL,
        hook=hook(body={"c": "{{ event.data.costum }}"}),
    ),
    Mistake(
        "a condition typo",
        "{where}:hooks[0].when:{line}: when fails on the example event "
        "'stripe.invoice.paid' and 1 more of the 2 it matches: 'dict object' has no "
        "attribute 'amount_payed'; the delivery would die",
        ALL,
        hook=hook(when="{{ event.data.amount_payed > 0 }}"),
    ),
    Mistake(
        "a header typo",
        "{where}:hooks[0].headers.X-Customer:{line}: headers.X-Customer fails on the "
        "example event 'stripe.invoice.paid' and 1 more of the 2 it matches: 'dict object'"
        " has no attribute 'subjct'; the delivery would die",
        ALL,
        hook=hook(headers={"X-Customer": "{{ event.subjct }}"}),
    ),
    Mistake(
        "a URL placeholder typo",
        "{where}:hooks[0].url:{line}: url fails on the example event 'stripe.invoice.paid'"
        " and 1 more of the 2 it matches: 'dict object' has no attribute 'subjet'; the "
        "delivery would die",
        ALL,
        hook=hook(url="http://127.0.0.1:9/c/{event.subjet}"),
    ),
    Mistake(
        "a field of a form answer that is not there",
        "{where}:hooks[0].body.to:{line}: body.to fails on the example event "
        "'typeform.form_response.submitted' and 1 more of the 2 it matches: 'dict object' "
        "has no attribute 'e_mail'; the delivery would die",
        ALL,
        hook=hook(
            events=["typeform.form_response.submitted"],
            body={"to": "{{ event.data.answers.e_mail }}"},
        ),
    ),
    Mistake(
        "a field every stored event lacks",
        "{where}:hooks[0].body.a:{line}: body.a fails on stored event "
        "00000000-0000-7000-8000-000000000002 (crm.contact.updated) and 2 more of the 3 it "
        "matches: 'dict object' has no attribute 'amount'; the delivery would die",
        ALL,
        hook=hook(events=["crm.contact.updated"], body={"a": "{{ event.data.amount }}"}),
        stored=SEEN,
    ),
    Mistake(
        "a typo in a [secrets] name",
        "{where}:hooks[0].headers.Authorization:{line}: headers.Authorization fails on the "
        "example event 'stripe.invoice.paid' and 1 more of the 2 it matches: 'dict object' has "
        "no attribute 'crm_tokn'; the delivery would die",
        ALL,
        hook=hook(headers={"Authorization": "Bearer {{ secrets.crm_tokn }}"}),
    ),
    # --- bounds ----------------------------------------------------------------------------
    Mistake(
        "a retry schedule in milliseconds",
        "{where}:hooks[0].retry.schedule:{line}: retry.schedule waits 1800000 s at once and"
        " 24 days in all; it is in seconds, each wait at most 604800 s (7 days): "
        "milliseconds? [0, 5, 300, 1800]",
        ALL,
        hook=hook(retry={"schedule": [0, 5000, 300000, 1800000]}),
    ),
    Mistake(
        "a timeout in milliseconds",
        "{where}:hooks[0].timeout:{line}: Input should be less than or equal to 300",
        ALL,
        hook=hook(timeout=5000),
    ),
    Mistake(
        "a rate-limit window in milliseconds",
        "{where}:hooks[0].rate_limit.window:{line}: warning: rate_limit.window is 60000 s "
        "(16.7 hours): it is in seconds, at most 86400 (a day): milliseconds? 60",
        ("check", "serve", "api"),
        hook=hook(rate_limit={"requests": 30, "window": 60000}),
        warning=True,
    ),
    Mistake(
        "a rate-limit window in milliseconds, past a day",
        "{where}:hooks[0].rate_limit.window:{line}: rate_limit.window is 3600000 s (1000.0 "
        "hours): it is in seconds, at most 86400 (a day): milliseconds? 3600",
        ("check", "serve", "api"),
        hook=hook(rate_limit={"requests": 1000, "window": 3600000}),
    ),
    Mistake(
        "a timeout of a few milliseconds",
        "{where}:hooks[0].timeout:{line}: warning: timeout = 0.05 s: few receivers answer "
        "that fast; it is in seconds (default 10, at most 300)",
        ("check", "serve", "api"),
        hook=hook(timeout=0.05),
        warning=True,
    ),
    Mistake(
        "a rate per day written as per second",
        "{where}:hooks[0].rate_limit.per_second:{line}: warning: rate_limit.per_second = "
        "86400 is no limit at all: per second, not per hour or per day?",
        ("check", "serve", "api"),
        hook=hook(rate_limit={"per_second": 86400}),
        warning=True,
    ),
    Mistake(
        "a negative retry wait",
        "{where}:hooks[0].retry:{line}: Value error, retry.schedule holds seconds to wait; "
        "none may be negative",
        ALL,
        hook=hook(retry={"schedule": [0, -5]}),
    ),
    Mistake(
        "a signing secret that is not whsec base64",
        "{where}:hooks[0].signing_secret:{line}: a whsec_ secret is whsec_ and base64",
        ALL,
        hook=hook(signing_secret="whsec_not*base64"),
    ),
    # --- connectors: times ---------------------------------------------------------------
    Mistake(
        "a time in epoch seconds without | epoch_s",
        "{where}:events[0].time:{line}: event 'stripe.invoice.paid' of the examples has "
        "time 1970-01-21T01:24:10.000Z, before 2000 or after 2100: epoch seconds read as "
        "milliseconds? write `{{ ... | epoch_s }}` (a text with a fraction, "
        "'1733050000.000100', is read as seconds)",
        FILES,
        connector=("stripe.toml", "{{ body.created | epoch_s }}", "{{ body.created }}"),
    ),
    Mistake(
        "epoch milliseconds through | epoch_s",
        "{where}:events[1].time:{line}: events[1].time of rule 'event callback' fails on "
        "example 'example': 1733050000000 is not a time in epoch seconds (epoch "
        "milliseconds? drop `| epoch_s`: numbers are epoch milliseconds)",
        FILES,
        connector=(
            "slack.toml",
            "{{ body.event.event_ts | default('') }}",
            "{{ (body.event_time * 1000) | epoch_s }}",
        ),
    ),
    Mistake(
        "a text with a fraction (epoch seconds) through | epoch_ms",
        "{where}:events[1].time:{line}: event 'slack.message' of the examples has time "
        "1970-01-21T01:24:10.000Z, before 2000 or after 2100: epoch seconds read as "
        "milliseconds? write `{{ ... | epoch_s }}` (a text with a fraction, "
        "'1733050000.000100', is read as seconds)",
        FILES,
        connector=(
            "slack.toml",
            "{{ body.event.event_ts | default('') }}",
            "{{ body.event.event_ts | epoch_ms }}",
        ),
    ),
    # --- connectors: signatures (signed offline) --------------------------------------------
    Mistake(
        "a wrong signature header name",
        "{where}:auth:{line}: example 'example' signed with a dummy secret as "
        "auth.sign_headers writes it is refused: missing X-Slack-Signatur signature header",
        FILES,
        connector=("slack.toml", 'header = "X-Slack-Signature"', 'header = "X-Slack-Signatur"'),
    ),
    Mistake(
        "a wrong signature prefix",
        "{where}:auth:{line}: example 'example' signed with a dummy secret as "
        "auth.sign_headers writes it is refused: wrong signature in X-Slack-Signature",
        FILES,
        connector=("slack.toml", 'prefix = "v0="', 'prefix = "v1="'),
    ),
    Mistake(
        "a pattern that refuses upper-case hex",
        "{where}:examples[0]:{line}: example 'invoice paid' carries the provider's "
        "signature, and the relay refuses it: wrong signature in Stripe-Signature: check "
        "auth.header, prefix, pattern, content and secret_format against the provider's "
        "docs",
        FILES,
        connector=("stripe.toml", "v1=([0-9a-fA-F]+)", "v1=([0-9A-F]+)"),
    ),
    Mistake(
        "content signed in the wrong order",
        "{where}:examples[0]:{line}: example 'invoice paid' carries the provider's "
        "signature, and the relay refuses it: wrong signature in Stripe-Signature: check "
        "auth.header, prefix, pattern, content and secret_format against the provider's "
        "docs",
        FILES,
        connector=(
            "stripe.toml",
            'content = "{{ timestamp }}.{{ body }}"',
            'content = "{{ body }}.{{ timestamp }}"',
        ),
    ),
    Mistake(
        "a content template reading a header the provider does not send",
        "{where}:auth:{line}: example 'example' signed with a dummy secret as "
        "auth.sign_headers writes it is refused: cannot make the signed content: 'dict "
        "object' has no attribute 'x-slack-timestamp'",
        FILES,
        connector=(
            "slack.toml",
            "headers['x-slack-request-timestamp']",
            "headers['x-slack-timestamp']",
        ),
    ),
    Mistake(
        "secret_format whsec for Stripe's text secrets",
        "{where}:examples[0]:{line}: example 'invoice paid' carries the provider's "
        "signature, and the relay refuses it: wrong signature in Stripe-Signature: check "
        "auth.header, prefix, pattern, content and secret_format against the provider's "
        "docs",
        FILES,
        connector=("stripe.toml", 'secret_format = "text"', 'secret_format = "whsec"'),
    ),
    Mistake(
        "a base64 signature declared hex",
        "{where}:examples[0]:{line}: example 'form response' carries the provider's "
        "signature, and the relay refuses it: wrong signature in Typeform-Signature: check "
        "auth.header, prefix, pattern, content and secret_format against the provider's "
        "docs",
        FILES,
        connector=("typeform.toml", 'encoding = "base64"', 'encoding = "hex"'),
    ),
    # --- connectors: examples, each, let ------------------------------------------------------
    Mistake(
        "a typo hidden behind default",
        "{where}:events[0].data.title:{line}: `titel` never resolves on any of the 2 "
        "examples, even where a default covers it: did you mean `title`?",
        FILES,
        connector=(
            "typeform.toml",
            "definition.title | default('')",
            "definition.titel | default('')",
        ),
    ),
    Mistake(
        "an each table with keys =",
        "{where}:events[0].data.answers.keys:{line}: a table with `each` takes `each`, "
        "`key`, `value` and optionally `when`, not `keys`; did you mean `key`?",
        FILES,
        connector=(
            "typeform.toml",
            'key = "{{ answer.field.ref }}"',
            'keys = "{{ answer.field.ref }}"',
        ),
    ),
    Mistake(
        "a let that fails on another rule's request",
        "{where}:events[0].let.challenge:{line}: `let` value 'challenge' of rule "
        "'url_verification handshake' fails on example 'example': 'dict object' has no "
        "attribute 'challenge'. A rule's `let` values are computed before its `when`, on "
        "every request: "
        "guard it (`| default(...)`, `if ... else`) for requests the rule is not for",
        FILES,
        connector=(
            "slack.toml",
            'name = "url_verification handshake"\n',
            'name = "url_verification handshake"\nlet = { challenge = "{{ body.challenge }}" }\n',
        ),
    ),
    Mistake(
        "an example body that is not JSON",
        "{where}:examples[0]:{line}: example 'url_verification' does not map: body is not "
        "valid JSON: Expecting ':' delimiter (line 1, column 51)",
        FILES,
        connector=("examples/slack-url-verification.json", '"challenge"', '"challenge" x'),
    ),
    # --- settings ----------------------------------------------------------------------------
    Mistake(
        "a Standard Webhooks relay secret that is not base64",
        "{where}:relays[4].secret:{line}: connector 'hookcaster': a Standard Webhooks "
        "secret is whsec_ followed by base64",
        ("check", "serve"),
        config='[[relays]]\nname = "caster"\nconnector = "hookcaster"\ntoken = '
        '"caster-token-0123456789"\nsecret = "whsec_not base64!"\n',
    ),
]


# --- the four places ---------------------------------------------------------------------


def make_config(tmp_path: Path, mistake: Mistake, with_hook: bool) -> Path:
    connectors = tmp_path / "connectors"
    (connectors / "examples").mkdir(parents=True)
    for name in ("stripe", "slack", "typeform"):  # copies of the shipped ones, in the config's
        shutil.copy(SHIPPED_DIR / f"{name}.toml", connectors / f"{name}-copy.toml")
    shutil.copy(FIXTURES / "keyed" / "crm.toml", connectors / "crm.toml")
    shutil.copy(FIXTURES / "keyed" / "examples" / "crm.json", connectors / "examples")
    shutil.copy(FIXTURES / "signed" / "hookcaster.toml", connectors / "hookcaster.toml")
    shutil.copy(FIXTURES / "signed" / "examples" / "hookcaster.json", connectors / "examples")
    for example in (SHIPPED_DIR / "examples").glob("*"):
        shutil.copy(example, connectors / "examples")
    for name in ("stripe", "slack", "typeform"):
        copy = connectors / f"{name}-copy.toml"
        copy.write_text(copy.read_text().replace(f'id = "{name}"', f'id = "{name}-copy"'))
    if mistake.connector is not None:
        file, old, new = mistake.connector
        target = connectors / (file.replace(".toml", "-copy.toml"))
        text = target.read_text()
        assert old in text, (file, old)
        target.write_text(text.replace(old, new, 1))
    text = BASE + mistake.config
    if with_hook and mistake.hook is not None:
        text += "\n" + hook_toml(mistake.hook)
    config = tmp_path / "relayhook.toml"
    config.write_text(text)
    if mistake.stored:
        run(seed(tmp_path / "relayhook.db", mistake.stored))
    return config


def hook_toml(spec: dict[str, Any]) -> str:
    lines = ["[[hooks]]"]
    for key, value in spec.items():
        lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


async def seed(path: Path, events: list[Event]) -> None:
    from relayhook.core.records import RequestRecord

    store = SQLiteStore(path)
    await store.open()
    try:
        for event in events:
            record = RequestRecord(
                id=f"req-{event.id}",
                relay=event.relay,
                received_at=event.time,
                method="POST",
                query="",
                headers=(),
                body=b"{}",
                status="accepted",
                error=None,
            )
            await store.ingest(record, [event], [])
    finally:
        await store.close()


def expected(mistake: Mistake, config: Path) -> str:
    """The message with its location: the config's or the connector copy's file and line."""
    if mistake.connector is not None:
        file = mistake.connector[0]
        path = (
            config.parent
            / "connectors"
            / (file.replace(".toml", "-copy.toml") if file.endswith(".toml") else "slack-copy.toml")
        )
    else:
        path = config
    return mistake.message.replace("{where}", str(path))


def matches(pattern: str, line: str) -> bool:
    regex = re.escape(pattern).replace(re.escape("{line}"), r"\d+")
    return re.fullmatch(regex, line) is not None


def caught_by_check(config: Path) -> list[str]:
    out = io.StringIO()
    main(["check", str(config)], out=out)
    return out.getvalue().splitlines()


def caught_by_serve(
    config: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> tuple[bool, list[str]]:
    from relayhook.errors import LocatedError, LocatedErrors

    settings = load_settings(config)
    caplog.clear()
    capsys.readouterr()
    try:
        from relayhook.cli.authoring import check_config, config_findings_with_store

        check_config(settings)  # serve's first step: what does not load stops it
        # then what `relayhook check` finds, with the store's traffic and hooks (serve asks
        # relayhook.diagnostics the same, through the store it has opened)
        findings = asyncio.run(config_findings_with_store(settings))
        with caplog.at_level(logging.WARNING, logger="relayhook.serve"):
            started = start_allowed(findings)
    except (LocatedError, LocatedErrors) as exc:
        return False, str(exc).splitlines()
    said = capsys.readouterr().err.splitlines()
    said += [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return started, said


async def through_app(config: Path, spec: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    """POST the hook to the API, then the same hook through the console's form (a new name)."""
    settings = load_settings(config)
    app = create_app(settings, role="web")
    async with app.router.lifespan_context(app):
        await set_password(app.state.relayhook.store, PASSWORD, 0.0)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            api = await client.post(
                "/api/hooks", json=spec, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            page = await console_save(client, {**spec, "name": "console-" + spec["name"]})
    return api.status_code, api.json(), page


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def console_save(client: httpx.AsyncClient, spec: dict[str, Any]) -> str:
    page = await client.get("/signin")
    csrf = CSRF.search(page.text)
    assert csrf is not None
    signed = await client.post("/signin", data={"password": PASSWORD, "csrf": csrf.group(1)})
    assert signed.status_code == 303
    form = await client.get("/hooks/new")
    token = CSRF.search(form.text)
    assert token is not None
    data: dict[str, Any] = {
        "csrf": token.group(1),
        "action": "save",
        "name": spec["name"],
        "patterns": "\n".join(spec["events"]),
        "url": spec["url"],
        "method": "POST",
        "active": "on",
        "body_format": "json",
        "body_mode": "default",
    }
    for i, (key, value) in enumerate(spec.get("body", {}).items()):  # "Event field" rows
        field = re.fullmatch(r"\{\{ event\.(.+) \}\}", value)
        assert field is not None
        data.update(
            {
                "body_mode": "rows",
                f"body_key_{i}": key,
                f"body_source_{i}": "event",
                f"body_value_{i}": field.group(1),
            }
        )
    if "when" in spec:
        data["when"] = spec["when"]
    for i, (key, value) in enumerate(spec.get("headers", {}).items()):
        data.update(
            {f"header_key_{i}": key, f"header_source_{i}": "fixed", f"header_value_{i}": value}
        )
    if "retry" in spec:
        data["retry"] = ", ".join(str(s) for s in spec["retry"]["schedule"])
    if "timeout" in spec:
        data["timeout"] = str(spec["timeout"])
    if "relays" in spec:
        data["relays"] = spec["relays"]
    if "signing_secret" in spec:
        data["signing_secret"] = spec["signing_secret"]
    saved = await client.post("/hooks/new", data=data)
    return f"{saved.status_code}\n{html.unescape(saved.text)}"


# --- the table -----------------------------------------------------------------------------


@pytest.mark.parametrize("mistake", [pytest.param(m, id=m.id) for m in MISTAKES])
def test_every_mistake_is_caught_where_the_table_says(
    mistake: Mistake,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = make_config(tmp_path, mistake, with_hook=True)
    message = expected(mistake, config)
    assert mistake.where, "a mistake caught nowhere is silent"
    if "check" in mistake.where:
        lines = caught_by_check(config)
        assert any(matches(message, line) for line in lines), (message, lines)
    if "serve" in mistake.where:
        started, said = caught_by_serve(config, capsys, caplog)
        assert started is mistake.warning
        assert any(matches(message, line) for line in said), (message, said)
    if {"api", "console"} & set(mistake.where):
        assert mistake.hook is not None
        api_config = make_config(tmp_path / "app", mistake, with_hook=False)
        status, answer, page = run(through_app(api_config, mistake.hook))
        head, short = mistake.message.split(":{line}: ", 1)
        short = short.removeprefix("warning: ")  # the message, without its location
        key = head.removeprefix("{where}:hooks[0]").removeprefix(".")
        if "api" in mistake.where:
            said = [f"{f['location']}: {f['message']}" for f in answer.get("findings", [])]
            said += [f"hook 'h': {e['field']}: {e['message']}" for e in answer.get("errors", [])]
            assert status == (201 if mistake.warning else 422), answer
            assert any(matches(f"hook 'h': {key}: {short}", text) for text in said), (short, answer)
        if "console" in mistake.where:
            assert page.startswith("422\n"), page[:300]
            assert re.search(re.escape(short).replace(re.escape("{line}"), r"\d+"), page), short


def test_the_table_has_every_mistake_of_the_issue_and_none_is_silent() -> None:
    assert len(MISTAKES) >= 30
    assert all(m.where for m in MISTAKES)
    caught_before_run_time = sum(bool(m.where) for m in MISTAKES)
    assert caught_before_run_time == len(MISTAKES)


def test_accept_findings_saves_a_hook_with_an_error_and_says_what_was_found(tmp_path: Path) -> None:
    mistake = MISTAKES[6]  # the body typo
    config = make_config(tmp_path, mistake, with_hook=False)

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        app = create_app(load_settings(config), role="web")
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1"
            ) as client:
                checked = await client.post("/api/hooks/check", json=mistake.hook, headers=headers)
                saved = await client.post(
                    "/api/hooks?accept_findings=true", json=mistake.hook, headers=headers
                )
                diagnostics = await client.get("/api/diagnostics", headers=headers)
        return checked, saved, diagnostics

    checked, saved, diagnostics = run(scenario())
    assert checked.status_code == 200
    assert [f["level"] for f in checked.json()["findings"]] == ["error"]
    assert saved.status_code == 201
    assert saved.json()["findings"][0]["location"] == "hook 'h': body.c"
    report = diagnostics.json()
    assert report["errors"] == 1
    assert report["findings"][0]["message"].startswith("body.c fails on the example event")


def test_a_400_is_logged_once_with_its_reason_and_request_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path, MISTAKES[0], with_hook=False)

    async def scenario() -> httpx.Response:
        app = create_app(load_settings(config), role="web")
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1"
            ) as client:
                return await client.post(
                    "/in/deals-token-0123456789",
                    content=b'{"a": [}',
                    headers={"content-type": "application/json"},
                )

    with caplog.at_level(logging.WARNING, logger="relayhook"):
        answer = run(scenario())
    assert answer.status_code == 400
    request_id = answer.json()["request_id"]
    lines = [r.getMessage() for r in caplog.records if request_id in r.getMessage()]
    assert lines == [
        f"relay deals: refused request {request_id} with 400: body is not valid "
        "JSON: Expecting value (line 1, column 8)"
    ]


def test_hooks_add_refuses_an_error_at_its_line_unless_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, MISTAKES[0], with_hook=False)
    file = tmp_path / "hook.toml"
    file.write_text(hook_toml(hook(retry={"schedule": [0, 5000, 300000, 1800000]})))
    args = ["--config", str(config), "hooks", "add", str(file)]
    assert main(args, out=io.StringIO()) == 2
    assert capsys.readouterr().err.strip() == (
        f"{file}:hooks[0].retry.schedule:5: retry.schedule waits 1800000 s at once and 24 days "
        "in all; it is in seconds, each wait at most 604800 s (7 days): milliseconds? "
        "[0, 5, 300, 1800]"
    )
    out = io.StringIO()
    assert main([*args, "--accept-findings"], out=out) == 0
    assert out.getvalue().splitlines() == [
        "added hook 'h'",
        "hook 'h': retry.schedule: retry.schedule waits 1800000 s at once and 24 days in all; "
        "it is in seconds, each wait at most 604800 s (7 days): milliseconds? [0, 5, 300, 1800]",
    ]
