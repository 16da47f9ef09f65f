"""`relayhook render` and `relayhook send-test`: a hook's request for one event, shown or sent.

    relayhook render HOOK [--event FILE | --newest | --sample NAME]     the request, as cURL
    relayhook send-test HOOK [--event FILE | --newest | --sample NAME]  send it now (a test)

The event is, by default, the connector example for the hook's first matching type (what a
fresh install has, and no customer's data); `--newest` takes the newest stored event, `--event`
a CloudEvent file, `--sample` a saved sample (its first event the hook takes). Both commands
give the request the id form real deliveries have (a UUIDv7, also its `webhook-id`). A
send-test is kept in the hook's history: a request, a copy of the event and a delivery, each
marked `test`, with the attempt (`GET /api/deliveries/{id}`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, TextIO

from relayhook.assembly import Parts, new_uuid, running
from relayhook.cli.common import add_config_flag, settings_of
from relayhook.core.events import Event, format_time
from relayhook.core.examples import example_event, newest_event
from relayhook.core.hooks import Hook
from relayhook.core.outbound import OutboundRequest, record_request, render_request
from relayhook.core.samples import sample_event
from relayhook.errors import UsageError
from relayhook.settings import Settings
from relayhook.store import Attempt, NewDelivery, Outcome, RequestRecord

MAX_SHOWN = 2000  # characters of an answer's body printed


def event_from_json(data: dict[str, object]) -> Event:
    try:
        return Event(id=str(data["id"]), source=str(data["source"]), type=str(data["type"]),
                     subject=None if data.get("subject") is None else str(data["subject"]),
                     time=str(data["time"]), data=data.get("data"),
                     relay=str(data.get("relay", "example")))
    except KeyError as exc:
        raise UsageError(f"the event file lacks the attribute {exc}") from exc


async def choose_event(parts: Parts, hook: Hook, event_file: str | None, newest: bool,
                       sample: str | None = None) -> Event:
    if sample is not None:
        return await _sample_event(parts, hook, sample)
    if event_file is not None:
        return event_from_json(json.loads(Path(event_file).read_text(encoding="utf-8")))
    if newest:
        event = await newest_event(parts.store, hook)
        if event is None:
            raise UsageError(f"hook {hook.name!r}: no stored event matches {hook.spec.events}")
        return event
    event = example_event(hook, ((r.connector, r.name) for r in parts.live.relays.values()))
    if event is None:
        raise UsageError(f"hook {hook.name!r}: no connector example of its relays matches "
                         f"{hook.spec.events}; pass --newest or --event FILE")
    return event


async def _sample_event(parts: Parts, hook: Hook, name: str) -> Event:
    saved = await parts.store.get_sample(name)
    if saved is None:
        names = [s.name for s in await parts.store.list_samples()]
        raise UsageError(f"no sample named {name!r} (samples: {', '.join(names) or 'none'})")
    event = sample_event(saved, hook)
    if event is None:
        raise UsageError(f"sample {name!r} holds no event: its request mapped to none")
    return event


def _hook(parts: Parts, name: str) -> Hook:
    hooks = parts.live.hooks
    if name not in hooks:
        raise UsageError(f"no hook named {name!r} (hooks: {', '.join(sorted(hooks))})")
    return hooks[name]


async def render(settings: Settings, name: str, event_file: str | None, newest: bool,
                 out: TextIO, sample: str | None = None) -> int:
    async with running(settings) as parts:
        hook = _hook(parts, name)
        event = await choose_event(parts, hook, event_file, newest, sample)
    request = render_request(hook, event, delivery_id=new_uuid(),
                             secrets=settings.template_secrets(), now=time.time())
    print(request.as_curl(), file=out)
    return 0


async def send_test(settings: Settings, name: str, event_file: str | None, newest: bool,
                    out: TextIO, sample: str | None = None) -> int:
    """Send one event through the hook with the guarded client the dispatcher uses, print the
    request and the answer, and keep it in the hook's history as a test delivery."""
    async with running(settings) as parts:
        hook = _hook(parts, name)
        event = dataclasses.replace(await choose_event(parts, hook, event_file, newest, sample),
                                    id=new_uuid())  # a copy: the test is its own event
        delivery_id = new_uuid()
        secrets = settings.template_secrets()
        started = time.time()
        request = render_request(hook, event, delivery_id=delivery_id, secrets=secrets,
                                 now=started)
        record = record_request(hook, event, request, delivery_id=delivery_id,
                                secrets=secrets, now=started)
        print(_shown_request(record, event), file=out)
        attempt, outcome = await _send(parts, hook, request, record, delivery_id, started)
        print(_shown_answer(attempt), file=out)
        await parts.store.record_test(_test_request(event, started), event,
                                      NewDelivery(delivery_id, event.id, hook.name,
                                                  event.subject, "pending", started),
                                      attempt, outcome)
    print(f"\nrecorded in the history of hook {hook.name!r} as test delivery {delivery_id}",
          file=out)
    return 0 if outcome.status == "succeeded" else 1


async def _send(parts: Parts, hook: Hook, request: OutboundRequest, record: dict[str, Any],
                delivery_id: str, started: float) -> tuple[Attempt, Outcome]:
    import httpx

    from relayhook.delivery.dispatcher import MAX_RESPONSE_BODY, classify
    from relayhook.delivery.http import make_http_client

    client = make_http_client(parts.policy)
    try:
        response = await client.request(request.method, request.url,
                                        headers=list(request.headers),
                                        content=request.body or None,
                                        timeout=httpx.Timeout(hook.timeout))
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        error_class, message = classify(exc, hook.timeout)
        attempt = Attempt(delivery_id, 1, started, (time.time() - started) * 1000, record,
                          None, (), b"", error_class, message)
        return attempt, Outcome("dead", error=message)
    finally:
        await client.aclose()
    attempt = Attempt(delivery_id, 1, started, (time.time() - started) * 1000, record,
                      response.status_code, tuple(response.headers.multi_items()),
                      response.content[:MAX_RESPONSE_BODY], None, None)
    if response.is_success:
        return attempt, Outcome("succeeded", response_status=response.status_code)
    return attempt, Outcome("dead", response_status=response.status_code,
                            error=f"HTTP {response.status_code}")


def _test_request(event: Event, at: float) -> RequestRecord:
    from datetime import UTC, datetime

    body = json.dumps(event.to_cloudevent(), ensure_ascii=False).encode("utf-8")
    return RequestRecord(id=new_uuid(), relay=event.relay,
                         received_at=format_time(datetime.fromtimestamp(at, UTC)),
                         method="POST", query="", headers=(("content-type", "application/json"),),
                         body=body, status="accepted", test=True)


def _shown_request(record: dict[str, Any], event: Event) -> str:
    lines = [f"event: {event.type} (relay {event.relay}, subject {event.subject})", "",
             f"> {record['method']} {record['url']}"]
    lines += [f"> {name}: {value}" for name, value in record["headers"]]
    return "\n".join(lines) + ("\n>\n" + record["body"] if record["body"] else "")


def _shown_answer(attempt: Attempt) -> str:
    if attempt.response_status is None:
        return f"\nerror ({attempt.error_class}): {attempt.error}"
    lines = ["", f"< {attempt.response_status}"]
    lines += [f"< {name}: {value}" for name, value in attempt.response_headers]
    body = attempt.response_body.decode("utf-8", errors="replace")
    return "\n".join(lines) + "\n<\n" + body[:MAX_SHOWN]


def cmd_render(args: argparse.Namespace, out: TextIO) -> int:
    return asyncio.run(render(settings_of(args), args.hook, args.event, args.newest, out,
                              args.sample))


def cmd_send_test(args: argparse.Namespace, out: TextIO) -> int:
    return asyncio.run(send_test(settings_of(args), args.hook, args.event, args.newest, out,
                                 args.sample))


def register(sub: Any) -> None:
    for name, func, text in (
        ("render", cmd_render, "print a hook's exact request as a cURL command"),
        ("send-test", cmd_send_test, "send an example event through a hook now (kept in its "
                                     "history as a test)"),
    ):
        command = sub.add_parser(name, help=text)
        add_config_flag(command)
        command.add_argument("hook")
        which = command.add_mutually_exclusive_group()
        which.add_argument("--event", help="a CloudEvent JSON file (as `relayhook map` prints)")
        which.add_argument("--newest", action="store_true",
                           help="the newest stored event the hook matches (real data)")
        which.add_argument("--sample", metavar="NAME",
                           help="a saved sample (POST /api/samples, or Pin as sample)")
        command.set_defaults(func=func)

