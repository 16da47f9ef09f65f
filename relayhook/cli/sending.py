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
import json
import time
from pathlib import Path
from typing import Any, TextIO

from relayhook.assembly import Parts, new_uuid, running
from relayhook.cli.common import add_config_flag, settings_of
from relayhook.core.events import Event
from relayhook.core.hooks import Hook
from relayhook.core.outbound import render_request
from relayhook.errors import NotFoundError, UsageError
from relayhook.settings import Settings
from relayhook.store import Attempt

MAX_SHOWN = 2000  # characters of an answer's body printed


def event_from_json(data: dict[str, object]) -> Event:
    try:
        return Event(
            id=str(data["id"]),
            source=str(data["source"]),
            type=str(data["type"]),
            subject=None if data.get("subject") is None else str(data["subject"]),
            time=str(data["time"]),
            data=data.get("data"),
            relay=str(data.get("relay", "example")),
        )
    except KeyError as exc:
        raise UsageError(f"the event file lacks the attribute {exc}") from exc


async def choose_event(
    parts: Parts, hook: Hook, event_file: str | None, newest: bool, sample: str | None = None
) -> Event:
    if event_file is not None and sample is None:
        return event_from_json(json.loads(Path(event_file).read_text(encoding="utf-8")))
    try:
        chosen = await parts.operations.choose_event(
            hook, sample=sample, newest=newest, example=not newest
        )
    except NotFoundError as exc:
        hint = "" if newest or sample is not None else "; pass --newest or --event FILE"
        raise UsageError(f"{exc}{hint}") from exc
    return chosen.event


def _hook(parts: Parts, name: str) -> Hook:
    hooks = parts.live.hooks
    if name not in hooks:
        raise UsageError(f"no hook named {name!r} (hooks: {', '.join(sorted(hooks))})")
    return hooks[name]


async def render(
    settings: Settings,
    name: str,
    event_file: str | None,
    newest: bool,
    out: TextIO,
    sample: str | None = None,
) -> int:
    async with running(settings) as parts:
        hook = _hook(parts, name)
        event = await choose_event(parts, hook, event_file, newest, sample)
    request = render_request(
        hook, event, delivery_id=new_uuid(), secrets=settings.template_secrets(), now=time.time()
    )
    print(request.as_curl(), file=out)
    return 0


async def send_test(
    settings: Settings,
    name: str,
    event_file: str | None,
    newest: bool,
    out: TextIO,
    sample: str | None = None,
) -> int:
    """Send one event through the hook by the Sender the dispatcher uses, print the request
    and the answer, and keep it in the hook's history as a test delivery."""
    async with running(settings) as parts:
        hook = _hook(parts, name)
        event = await choose_event(parts, hook, event_file, newest, sample)
        sent = await parts.operations.send_test(hook, event)
    print(_shown_request(sent.request, sent.event), file=out)
    print(_shown_answer(sent.attempt), file=out)
    print(
        f"\nrecorded in the history of hook {hook.name!r} as test delivery {sent.delivery_id}",
        file=out,
    )
    return 0 if sent.outcome.status == "succeeded" else 1


def _shown_request(record: dict[str, Any], event: Event) -> str:
    lines = [f"event: {event.type} (relay {event.relay}, subject {event.subject})", ""]
    if not record:  # not rendered: the answer says why
        return lines[0]
    lines.append(f"> {record['method']} {record['url']}")
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
    return asyncio.run(
        render(settings_of(args), args.hook, args.event, args.newest, out, args.sample)
    )


def cmd_send_test(args: argparse.Namespace, out: TextIO) -> int:
    return asyncio.run(
        send_test(settings_of(args), args.hook, args.event, args.newest, out, args.sample)
    )


def register(sub: Any) -> None:
    for name, func, text in (
        ("render", cmd_render, "print a hook's exact request as a cURL command"),
        (
            "send-test",
            cmd_send_test,
            "send an example event through a hook now (kept in its history as a test)",
        ),
    ):
        command = sub.add_parser(name, help=text)
        add_config_flag(command)
        command.add_argument("hook")
        which = command.add_mutually_exclusive_group()
        which.add_argument("--event", help="a CloudEvent JSON file (as `relayhook map` prints)")
        which.add_argument(
            "--newest",
            action="store_true",
            help="the newest stored event the hook matches (real data)",
        )
        which.add_argument(
            "--sample", metavar="NAME", help="a saved sample (POST /api/samples, or Pin as sample)"
        )
        command.set_defaults(func=func)
