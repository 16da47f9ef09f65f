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
from relayhook.examples import example_event as connector_example
from relayhook.examples import newest_event
from relayhook.hooks import Hook
from relayhook.outbound import OutboundRequest, render_request
from relayhook.remap import remap_request
from relayhook.settings import Settings

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
                message = await remap_request(record, by_name, store, registry, time.time())
                print(f"{record.id}: {message}", file=out)
                fixed += message.startswith("accepted")
                failed += message.startswith("still rejected")
                skipped += message.startswith("skipped")
    print(f"remapped {fixed + failed} requests: {fixed} accepted, {failed} still rejected; "
          f"skipped {skipped} that cannot be mapped", file=out)
    return 1 if failed else 0


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
        newest = await newest_event(store, hook)
    if newest is not None:
        return newest
    _, relays = load_relays(settings)
    example = connector_example(hook, ((relay.connector, relay.name) for relay in relays.values()))
    if example is not None:
        return example
    raise UsageError(f"hook {hook.name!r}: no stored or example event matches "
                      f"{hook.spec.events}; pass --event FILE")


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
    except (httpx.HTTPError, OSError) as exc:
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

