"""Why a hook did or did not fire for a kept request, and routing it again after a fix.

relayhook why REQUEST_ID                 every hook and its outcome for the request
relayhook why REQUEST_ID --run-again     route it again with the hooks as they are now
relayhook why REQUEST_ID --json          the same as GET /api/requests/{id}/outcomes
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any, TextIO

from relayhook.assembly import running
from relayhook.cli.common import add_config_flag, settings_of
from relayhook.errors import UsageError
from relayhook.explain import request_outcomes
from relayhook.settings import Settings


async def why(
    settings: Settings, request_id: str, *, again: bool, as_json: bool, out: TextIO
) -> int:
    async with running(settings) as parts:
        record = await parts.store.get_request(request_id)
        if record is None:
            raise UsageError(f"no kept request has the id {request_id!r}")
        if again:
            print(await parts.operations.run_again(record), file=out)
        items = await request_outcomes(parts, record)
    if as_json:
        print(
            json.dumps(
                {
                    "request_id": record.id,
                    "status": record.status,
                    "error": record.error,
                    "items": items,
                },
                indent=2,
            ),
            file=out,
        )
        return 0
    print(f"request {record.id} ({record.relay}, {record.received_at}, {record.status})", file=out)
    width = max((len(item["hook"]) for item in items), default=4)
    for item in items:
        print(f"  {item['hook']:<{width}}  {item['outcome']:<20}  {item['summary']}", file=out)
    if not items:
        print("  there is no hook", file=out)
    return 0


def cmd_why(args: argparse.Namespace, out: TextIO) -> int:
    return asyncio.run(
        why(settings_of(args), args.request_id, again=args.run_again, as_json=args.json, out=out)
    )


def register(sub: Any) -> None:
    command = sub.add_parser("why", help="why each hook did or did not fire for a kept request")
    add_config_flag(command)
    command.add_argument("request_id", help="the request's id (its answer's `request_id`)")
    command.add_argument(
        "--run-again",
        action="store_true",
        help="route it again with the hooks as they are now first",
    )
    command.add_argument("--json", action="store_true", help="print JSON")
    command.set_defaults(func=cmd_why)
