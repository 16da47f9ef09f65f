"""`relayhook diff`: what a changed connector or hook would change over the last kept requests.

relayhook diff connectors/gmetri.toml [--last 500] [--json]   nothing is written
relayhook diff my-hooks.toml                                  every hook of the file
relayhook diff connectors/gmetri.toml --remap                 after saving the connector:
                                    write the events it makes differently for those requests
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import tomllib
from pathlib import Path
from typing import Any, TextIO

from relayhook.assembly import running
from relayhook.cli.common import add_config_flag, settings_of
from relayhook.cli.manage import read_hooks_file
from relayhook.core.diffing import diff_json, diff_text
from relayhook.diff import apply_connector, connector_from_text, diff_connector, diff_hook, hook_of
from relayhook.errors import UsageError
from relayhook.settings import Settings


def is_connector(path: Path) -> bool:
    """A connector file has an `id` and `[[events]]`; a hook file has hooks."""
    if path.suffix != ".toml":
        return False
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from exc
    return "id" in raw and "events" in raw


async def diff(
    settings: Settings, path: Path, last: int, as_json: bool, remap: bool, out: TextIO
) -> int:
    async with running(settings) as parts:
        found: list[Any] = []
        if is_connector(path):

            def folders(connector_id: str) -> list[Path]:
                current = parts.connectors.get(connector_id)
                return [path.parent] + ([current.path.parent] if current else [])

            connector = connector_from_text(path.read_text(encoding="utf-8"), folders)
            changed = await diff_connector(parts, connector, last=last)
            found.append(changed)
            if remap:
                for line in await apply_connector(parts, connector, changed, time.time()):
                    print(line, file=out)
                return 0
        else:
            if remap:
                raise UsageError("--remap applies a connector; a hook changes when it is saved")
            specs, _ = read_hooks_file(path)
            for spec in specs:
                found.append(await diff_hook(parts, hook_of(spec), last=last))
    if as_json:
        print(json.dumps([diff_json(d) for d in found], indent=2, ensure_ascii=False), file=out)
    else:
        for item in found:
            out.write(diff_text(item))
    return 0


def cmd_diff(args: argparse.Namespace, out: TextIO) -> int:
    return asyncio.run(
        diff(settings_of(args), Path(args.file), args.last, args.json, args.remap, out)
    )


def register(sub: Any) -> None:
    command = sub.add_parser(
        "diff",
        help="what a changed connector or hook would change over "
        "the last kept requests (nothing is written)",
    )
    add_config_flag(command)
    command.add_argument("file", help="a connector TOML file, or a file of hooks (TOML, JSON)")
    command.add_argument(
        "--last",
        type=int,
        default=500,
        help="how many of the newest kept requests to run it over (500)",
    )
    command.add_argument("--json", action="store_true", help="print JSON")
    command.add_argument(
        "--remap",
        action="store_true",
        help="after saving the connector: write the events it makes "
        "differently for the kept requests it changes",
    )
    command.set_defaults(func=cmd_diff)
