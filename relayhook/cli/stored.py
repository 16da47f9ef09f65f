"""The commands that work on a stored state: remap and replay (render and send-test are in
`relayhook.cli.sending`).

    relayhook remap [--relay NAME]                     map kept rejected requests again
    relayhook replay --hook NAME [--status dead,failed] [--since T]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, TextIO

from relayhook.assembly import (
    running,
)
from relayhook.cli.common import add_config_flag, settings_of
from relayhook.cli.users import audit_cli
from relayhook.core.events import parse_time
from relayhook.core.records import DELIVERY_STATUSES, DeliveryFilter
from relayhook.errors import UsageError
from relayhook.operations import ReplayJob
from relayhook.settings import Settings

# --- remap ---------------------------------------------------------------------------------


async def remap(settings: Settings, relay_name: str | None, out: TextIO) -> int:
    """Map every kept rejected request again; new events get their deliveries."""
    fixed = failed = skipped = 0
    async with running(settings) as parts:
        store = parts.store
        before: str | None = None
        for _ in range(1_000_000):  # bounded: pages of 200 until none is left
            page = await store.list_requests(
                relay=relay_name, status="rejected", limit=200, before=before
            )
            if not page:
                break
            before = page[-1].id
            for record in page:
                message = await parts.operations.map_again(record)
                print(f"{record.id}: {message}", file=out)
                fixed += message.startswith("accepted")
                failed += message.startswith("still rejected")
                skipped += message.startswith("skipped")
    print(
        f"remapped {fixed + failed} requests: {fixed} accepted, {failed} still rejected; "
        f"skipped {skipped} that cannot be mapped",
        file=out,
    )
    return 1 if failed else 0


# --- replay --------------------------------------------------------------------------------


def _progress(done: int, total: int, out: TextIO) -> None:
    width = 30
    filled = width * done // total if total else width
    out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    out.flush()


async def replay(
    settings: Settings,
    hook: str,
    statuses: list[str],
    since: str | None,
    out: TextIO,
    progress: TextIO,
) -> int:
    """Make a hook's dead (or failed) deliveries due again; the dispatcher sends them."""
    since_at = parse_time(since).timestamp() if since else None
    async with running(settings) as parts:
        if hook not in parts.live.hooks:
            known = ", ".join(sorted(parts.live.hooks))
            raise UsageError(f"no hook named {hook!r} (hooks: {known})")
        wrong = [s for s in statuses if s not in DELIVERY_STATUSES or s == "claimed"]
        if wrong:
            raise UsageError(f"--status takes dead, failed, succeeded or skipped, not {wrong[0]!r}")
        where = DeliveryFilter(
            hook=hook,
            statuses=tuple(statuses),  # type: ignore[arg-type]
            since=since_at,
        )
        job = ReplayJob(id="cli", hook=hook, total=await parts.operations.count_matching(where))
        _progress(0, job.total, progress)
        done = await parts.operations.replay_matching(
            where, job, lambda job: _progress(job.done, max(job.total, job.done), progress)
        )
        await audit_cli(
            parts.store,
            "hooks.replay",
            f"hook:{hook}",
            {"status": statuses, "since": since, "replayed": done},
        )
    progress.write("\n")
    print(f"replayed {done} deliveries of hook {hook!r}; a running worker sends them now", file=out)
    return 0


# --- the commands ---------------------------------------------------------------------


def cmd_remap(args: argparse.Namespace, out: TextIO) -> int:
    return asyncio.run(remap(settings_of(args), args.relay, out))


def cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    statuses = [s for s in args.status.split(",") if s]
    return asyncio.run(replay(settings_of(args), args.hook, statuses, args.since, out, sys.stderr))


def register(sub: Any) -> None:
    remap = sub.add_parser("remap", help="map kept requests again with the current connectors")
    add_config_flag(remap)
    remap.add_argument(
        "--status",
        choices=["rejected"],
        default="rejected",
        help="only rejected requests: accepted ones already have their events",
    )
    remap.add_argument("--relay")
    remap.set_defaults(func=cmd_remap)

    replay = sub.add_parser("replay", help="send a hook's dead or failed deliveries again")
    add_config_flag(replay)
    replay.add_argument("--hook", required=True)
    replay.add_argument("--status", default="dead", help="dead, failed or dead,failed")
    replay.add_argument("--since", help="only deliveries created at or after this RFC 3339 time")
    replay.set_defaults(func=cmd_replay)
