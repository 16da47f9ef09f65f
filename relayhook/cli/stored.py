"""The commands that work on a stored state: remap, replay, render and send-test.

    relayhook remap [--relay NAME]                     map kept rejected requests again
    relayhook replay --hook NAME [--status dead,failed] [--since T]
    relayhook render HOOK [--event FILE]               the exact request, as a cURL command
    relayhook send-test HOOK [--event FILE]            send an example event now
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from relayhook.assembly import (
    destination_policy,
    load_relays,
    new_uuid,
    opened_store,
    running,
)
from relayhook.cli.common import add_config_flag, settings_of
from relayhook.errors import UsageError
from relayhook.events import Event, parse_time
from relayhook.hooks import Hook
from relayhook.live import LiveConfig
from relayhook.mapping import InboundRequest, MappingError, map_request
from relayhook.outbound import OutboundRequest, render_request
from relayhook.relays import Relay
from relayhook.routing import route
from relayhook.settings import Settings
from relayhook.store import RequestRecord, Store

# --- remap ---------------------------------------------------------------------------------


async def remap(settings: Settings, relay_name: str | None, out: TextIO) -> int:
    """Map every kept rejected request again; new events get their deliveries."""
    fixed = failed = skipped = 0
    async with running(settings) as parts:
        store, registry = parts.store, parts.live
        by_name = {relay.name: relay for relay in registry.relays.values()}
        before: str | None = None
        for _ in range(1_000_000):  # bounded: pages of 200 until none is left
            page = await store.list_requests(relay=relay_name, status="rejected", limit=200,
                                             before=before)
            if not page:
                break
            before = page[-1].id
            for record in page:
                message = await _remap_one(record, by_name, store, registry)
                print(f"{record.id}: {message}", file=out)
                fixed += message.startswith("accepted")
                failed += message.startswith("still rejected")
                skipped += message.startswith("skipped")
    print(f"remapped {fixed + failed} requests: {fixed} accepted, {failed} still rejected; "
          f"skipped {skipped} that cannot be mapped", file=out)
    return 1 if failed else 0


async def _remap_one(record: RequestRecord, by_name: dict[str, Relay], store: Store,
                     registry: LiveConfig) -> str:
    if record.truncated:
        return "skipped: its body was cut at the size limit"
    relay = by_name.get(record.relay)
    if relay is None:
        return f"skipped: relay {record.relay!r} is no longer configured"
    request = InboundRequest(record.method, record.query, record.headers, record.body)
    received = parse_time(record.received_at)
    try:
        events = map_request(relay.connector, request, relay=relay.name, received_at=received,
                             new_id=new_uuid)
    except MappingError as exc:
        await store.remap(record.id, (), status="rejected", error=str(exc))
        return f"still rejected: {exc}"
    deliveries = route(events, registry.hooks.values(), active=registry.active(),
                       now=time.time(), new_id=new_uuid)
    result = await store.remap(record.id, events, status="accepted", error=None,
                               deliveries=deliveries)
    return (f"accepted, {result.accepted} new events, {result.duplicates} already stored, "
            f"{result.deliveries} deliveries")


# --- replay --------------------------------------------------------------------------------


def _progress(done: int, total: int, out: TextIO) -> None:
    width = 30
    filled = width * done // total if total else width
    out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    out.flush()


async def replay(settings: Settings, hook: str, statuses: list[str], since: str | None,
                 out: TextIO, progress: TextIO) -> int:
    """Make a hook's dead (or failed) deliveries due again; the dispatcher sends them."""
    since_at = parse_time(since).timestamp() if since else None
    async with running(settings) as parts:
        store = parts.store
        if hook not in parts.live.hooks:
            known = ", ".join(sorted(parts.live.hooks))
            raise UsageError(f"no hook named {hook!r} (hooks: {known})")
        counts = await store.count_deliveries(hook=hook)
        total = sum(counts.get(status, 0) for status in statuses)
        done = 0
        _progress(done, total, progress)
        for _ in range(1_000_000):  # bounded: pages of 200 until none is left
            count = await store.replay(now=time.time(), hook=hook,
                                       statuses=statuses,  # type: ignore[arg-type]
                                       since=since_at, limit=200)
            done += count
            _progress(min(done, max(total, done)), max(total, done), progress)
            if count < 200:
                break
    progress.write("\n")
    print(f"replayed {done} deliveries of hook {hook!r}; a running worker sends them now",
          file=out)
    return 0


# --- render and send-test ------------------------------------------------------------------


async def example_event(settings: Settings, hook: Hook, event_file: str | None) -> Event:
    """The event to show a hook with: a file (a CloudEvent as `relayhook map` prints it), else
    the hook's newest stored event, else the first matching event of a connector's example."""
    if event_file is not None:
        return event_from_json(json.loads(Path(event_file).read_text(encoding="utf-8")))
    async with opened_store(settings) as store:
        newest = await _newest_event(store, hook)
    if newest is not None:
        return newest
    _, relays = load_relays(settings)
    for relay in relays.values():
        for event in _example_events(relay):
            if hook.matches(event.type, relay.name):
                return event
    raise UsageError(f"hook {hook.name!r}: no stored or example event matches "
                      f"{hook.spec.events}; pass --event FILE")


async def _newest_event(store: Store, hook: Hook) -> Event | None:
    """The hook's newest stored event: by type where its patterns are exact, else by paging
    back through the newest 20,000 events."""
    exact = [p for p in hook.spec.events if "*" not in p]
    if len(exact) == len(hook.spec.events):
        found = [e for p in exact for e in await store.list_events(type=p, limit=200)
                 if hook.matches(e.type, e.relay)]
        return max(found, key=lambda e: e.time, default=None)
    before: str | None = None
    for _ in range(40):  # bounded: 40 pages of 500
        page = await store.list_events(limit=500, before=before)
        match = next((e for e in page if hook.matches(e.type, e.relay)), None)
        if match is not None or len(page) < 500:
            return match
        before = page[-1].id
    return None


def _example_events(relay: Relay) -> list[Event]:
    connector = relay.connector
    from urllib.parse import urlencode

    body = connector.example_body() or b""
    request = InboundRequest(connector.spec.accept.methods[-1],
                             urlencode(connector.spec.example_query), (), body)
    try:
        return map_request(connector, request, relay=relay.name,
                           received_at=parse_time("2024-01-01T00:00:00Z"),
                           new_id=lambda: "example-event")
    except MappingError:
        return []


def event_from_json(data: dict[str, object]) -> Event:
    try:
        return Event(id=str(data["id"]), source=str(data["source"]), type=str(data["type"]),
                     subject=None if data.get("subject") is None else str(data["subject"]),
                     time=str(data["time"]), data=data.get("data"),
                     relay=str(data.get("relay", "example")))
    except KeyError as exc:
        raise UsageError(f"the event file lacks the attribute {exc}") from exc


async def _hook(settings: Settings, name: str) -> Hook:
    """A hook of the config or of the store (created through the API or the console)."""
    async with running(settings) as parts:
        hooks = parts.live.hooks
    if name not in hooks:
        raise UsageError(f"no hook named {name!r} (hooks: {', '.join(sorted(hooks))})")
    return hooks[name]


async def rendered(settings: Settings, name: str, event_file: str | None) -> OutboundRequest:
    hook = await _hook(settings, name)
    event = await example_event(settings, hook, event_file)
    return render_request(hook, event, delivery_id=f"test-{new_uuid()}",
                          secrets=settings.template_secrets(), now=time.time())


async def render(settings: Settings, name: str, event_file: str | None, out: TextIO) -> int:
    print((await rendered(settings, name, event_file)).as_curl(), file=out)
    return 0


async def send_test(settings: Settings, name: str, event_file: str | None, out: TextIO) -> int:
    """Send one example event through the same guarded client the dispatcher uses."""
    import httpx

    from relayhook.delivery.http import make_http_client, refusal_reason

    hook = await _hook(settings, name)
    request = await rendered(settings, name, event_file)
    client = make_http_client(destination_policy(settings))
    try:
        response = await client.request(request.method, request.url,
                                        headers=list(request.headers),
                                        content=request.body or None,
                                        timeout=httpx.Timeout(hook.timeout))
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        reason = refusal_reason(exc)
        print(f"error: {'destination refused: ' + reason if reason else exc}", file=sys.stderr)
        return 1
    finally:
        await client.aclose()
    print(f"{response.status_code} {response.reason_phrase}", file=out)
    print(response.text[:2000], file=out)
    return 0 if response.is_success else 1


# --- the commands ---------------------------------------------------------------------


def cmd_remap(args: argparse.Namespace, out: TextIO) -> int:
    return asyncio.run(remap(settings_of(args), args.relay, out))


def cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    statuses = [s for s in args.status.split(",") if s]
    return asyncio.run(replay(settings_of(args), args.hook, statuses, args.since, out,
                                        sys.stderr))


def cmd_render(args: argparse.Namespace, out: TextIO) -> int:
    return asyncio.run(render(settings_of(args), args.hook, args.event, out))


def cmd_send_test(args: argparse.Namespace, out: TextIO) -> int:
    return asyncio.run(send_test(settings_of(args), args.hook, args.event, out))



def register(sub: Any) -> None:
    remap = sub.add_parser("remap", help="map kept requests again with the current connectors")
    add_config_flag(remap)
    remap.add_argument("--status", choices=["rejected"], default="rejected",
                       help="only rejected requests: accepted ones already have their events")
    remap.add_argument("--relay")
    remap.set_defaults(func=cmd_remap)

    replay = sub.add_parser("replay", help="send a hook's dead or failed deliveries again")
    add_config_flag(replay)
    replay.add_argument("--hook", required=True)
    replay.add_argument("--status", default="dead", help="dead, failed or dead,failed")
    replay.add_argument("--since", help="only deliveries created at or after this RFC 3339 time")
    replay.set_defaults(func=cmd_replay)

    for name, func, text in (
        ("render", cmd_render, "print a hook's exact request as a cURL command"),
        ("send-test", cmd_send_test, "send an example event through a hook now"),
    ):
        command = sub.add_parser(name, help=text)
        add_config_flag(command)
        command.add_argument("hook")
        command.add_argument("--event", help="a CloudEvent JSON file (as `relayhook map` prints)")
        command.set_defaults(func=func)

