"""Relay pages: the list, New relay, a relay's URL, secret and setup text, its Example tab
(the latest raw requests, searchable), Send sample."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from starlette.responses import Response

from relayhook.core.auth import credentials_for
from relayhook.core.examples import example_events
from relayhook.errors import ConflictError
from relayhook.relays import Relay
from relayhook.web.console import changes
from relayhook.web.console.pages import Ctx, relay_address, shown_problems
from relayhook.web.console.people import last_change
from relayhook.web.readmodel import relay_shapes, relay_summaries

if TYPE_CHECKING:
    from relayhook.web.console.core import Console

EXAMPLE_PAGE = 25
MASK = "••••••••"


async def list_relays(console: Console, ctx: Ctx) -> Response:
    relays = await relay_summaries(console.parts, console.now())
    return ctx.render("relays.html", title="Relays", relays=relays)


def connector_choices(console: Console) -> list[dict[str, str]]:
    return [
        {"id": c.id, "title": c.spec.title, "description": c.spec.description.strip()}
        for c in sorted(console.connectors.values(), key=lambda c: c.spec.title.lower())
    ]


async def new_relay(console: Console, ctx: Ctx) -> Response:
    values = {"name": ctx.form.get("name").strip(), "connector": ctx.form.get("connector")}
    errors: dict[str, str] = {}
    if ctx.request.method == "POST":
        errors = await changes.create_relay(console, values["name"], values["connector"])
        if not errors:
            return ctx.redirect(
                relay_address(values["name"]),
                f"Relay {values['name']!r} is ready: paste its URL and secret "
                "into the provider's webhook settings.",
            )
    return ctx.render(
        "relay_new.html",
        422 if errors else 200,
        title="New relay",
        connectors=connector_choices(console),
        values=values,
        errors=errors,
    )


def setup_text(console: Console, relay: Relay, secret: str) -> str:
    return str(
        relay.connector.setup.render(
            {"relay_url": console.parts.manager.relay_url(relay), "secret": secret}
        )
    ).strip()


async def relay_page(
    console: Console, ctx: Ctx, *, revealed: str | None = None, answer: str | None = None
) -> Response:
    relay = console.relay_named(ctx.param("name"))
    summaries = await relay_summaries(console.parts, console.now())
    summary = next(r for r in summaries if r["name"] == relay.name)
    text = ctx.request.query_params.get("text", "").strip()
    asked = ctx.request.query_params.get("tab")
    tab = "example" if asked == "example" or text else "fields" if asked == "fields" else "setup"
    before = ctx.request.query_params.get("before") or None
    records = await console.parts.store.list_requests(
        relay=relay.name, limit=EXAMPLE_PAGE, before=before, text=text or None
    )
    events = {}
    for record in records[:10]:  # the newest few open with their events shown
        events[record.id] = await console.parts.store.list_events(request_id=record.id, limit=50)
    return ctx.render(
        "relay.html",
        title=f"Relay {relay.name}",
        relay=summary,
        tab=tab,
        text=text,
        wiring=await wiring(console, relay.name, summary),
        private_url=private_address(console.parts.manager.relay_url(relay)),
        records=records,
        events=events,
        revealed=revealed,
        answer=answer,
        setup=setup_text(console, relay, revealed or MASK),
        mask=MASK,
        has_secret=bool(relay.secret),
        has_sample=bool(example_events(relay.connector, relay.name)),
        more=len(records) == EXAMPLE_PAGE,
        next_before=records[-1].id if records else None,
        problems=shown_problems(await console.parts.store.list_problems(relay=relay.name)),
        shapes=await relay_shapes(console.parts, relay.name) if tab == "fields" else [],
        last_change=await last_change(console, f"relay:{relay.name}"),
    )


SAMPLE_AGENT = "Relayhook console sample"
WIRING_LOOKBACK = 50  # requests looked through for the provider's own newest one


async def wiring(console: Console, name: str, summary: dict[str, Any]) -> dict[str, Any]:
    """What the relay's status banner says, honestly: nothing yet; only the console's own
    sample; the provider's last request accepted (wired) or rejected (why); or credentials
    refused since the provider's last accepted request."""
    records = await console.parts.store.list_requests(relay=name, limit=WIRING_LOOKBACK)
    own = [r for r in records if dict(r.headers).get("user-agent") != SAMPLE_AGENT]
    accepted = next((r for r in own if r.status == "accepted"), None)
    refused_at = summary.get("last_auth_failure")
    if refused_at and (accepted is None or refused_at > accepted.received_at):
        return {
            "level": "refused",
            "count": summary.get("auth_failures", 0),
            "at": refused_at,
            "record": None,
        }
    if own:
        newest = own[0]
        level = "wired" if newest.status == "accepted" else "rejected"
        return {
            "level": level,
            "record": newest,
            "at": newest.received_at,
            "why": plain_rejection(newest.error),
        }
    return {
        "level": "sample" if records else "nothing",
        "record": None,
        "at": records[0].received_at if records else None,
    }


def plain_rejection(error: str | None) -> str:
    if not error:
        return "it could not be read"
    lowered = error.lower()
    if "json" in lowered:
        return "its body is not valid JSON"
    if "too large" in lowered or "size" in lowered:
        return "it was too large"
    if "method" in lowered:
        return "it used a method the connector does not accept"
    return error[:200]


def private_address(url: str) -> bool:
    """Whether a relay URL names a loopback, private or link-local address (or localhost):
    a provider on the internet cannot reach it."""
    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "") or host.endswith(".localhost") or host.endswith(".local"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


async def show_relay(console: Console, ctx: Ctx) -> Response:
    return await relay_page(console, ctx)


async def relay_secret(console: Console, ctx: Ctx) -> Response:
    """Reveal (a POST, so the secret is never in a URL or a cache) or rotate the secret."""
    relay = console.relay_named(ctx.param("name"))
    if ctx.form.get("action") == "rotate":
        try:
            secret = await changes.rotate_secret(console, relay.name)
        except ConflictError as exc:
            ctx.session.flash(f"{exc}.")
            return await relay_page(console, ctx)
        ctx.session.flash(
            "A new secret is in use; the old one stopped working. Paste the new "
            "one into the provider's settings."
        )
        return await relay_page(console, ctx, revealed=secret)
    return await relay_page(
        console, ctx, revealed=(await console.parts.manager.relay_secret(relay.name)).secret
    )


async def send_sample(console: Console, ctx: Ctx) -> Response:
    """Post the connector's example through this relay's URL, for real, with its credentials."""
    relay = console.relay_named(ctx.param("name"))
    connector = relay.connector
    body = connector.example_body() or b""
    method = "POST" if "POST" in connector.spec.accept.methods else connector.spec.accept.methods[0]
    url = str(ctx.request.base_url).rstrip("/") + f"/in/{relay.token}"
    headers = {
        "Content-Type": "application/json",
        "User-Agent": SAMPLE_AGENT,
        **credentials_for(connector.spec.auth, relay.secret, body, now=console.now()),
    }
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
            response = await client.request(
                method,
                url,
                params=connector.spec.example_query,
                content=body if method != "GET" else None,
                headers=headers,
            )
        answer = f"{response.status_code} {response.reason_phrase}: {response.text[:500]}"
    except httpx.HTTPError as exc:
        answer = f"the relay URL did not answer: {exc}"
    ctx.request.scope["query_string"] = b"tab=example"
    return await relay_page(console, ctx, answer=answer)


async def delete_relay(console: Console, ctx: Ctx) -> Response:
    name = console.relay_named(ctx.param("name")).name
    error = await changes.delete_relay(console, name)
    if error:
        ctx.session.flash(error)
        return ctx.redirect(relay_address(name))
    return ctx.redirect(
        "/relays",
        f"Relay {name!r} is deleted; its URL answers 404 now. Its kept requests and events stay.",
    )


ROUTES = [
    ("/relays", list_relays, ["GET"]),
    ("/relays/new", new_relay, ["GET", "POST"]),
    ("/relays/{name}", show_relay, ["GET"]),
    ("/relays/{name}/view", show_relay, ["GET"]),  # the page of a relay called `new`
    ("/relays/{name}/secret", relay_secret, ["POST"]),
    ("/relays/{name}/sample", send_sample, ["POST"]),
    ("/relays/{name}/delete", delete_relay, ["POST"]),
]
