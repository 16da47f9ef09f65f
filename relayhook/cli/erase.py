"""`relayhook erase --subject EMAIL`: erase a person from everything Relayhook keeps.

    relayhook erase --subject ann@example.com [--json]

Events about them (their subject) are deleted with their deliveries; every other occurrence, in
every table, the samples and the spool, is written over; the report names what was found and
what is not covered (backups, logs). SQLite's file is rebuilt (VACUUM) and its WAL emptied.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any, TextIO

from relayhook.assembly import running, spool_path
from relayhook.cli.common import add_config_flag, settings_of
from relayhook.erase import erase
from relayhook.errors import UsageError
from relayhook.settings import Settings


async def erase_command(settings: Settings, subject: str, as_json: bool, out: TextIO) -> int:
    async with running(settings) as parts:
        try:
            report = await erase(parts.store, subject, spool_path=spool_path(settings))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if as_json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False), file=out)
    else:
        out.write(report.text())
    return 0


def cmd_erase(args: argparse.Namespace, out: TextIO) -> int:
    return asyncio.run(erase_command(settings_of(args), args.subject, args.json, out))


def register(sub: Any) -> None:
    command = sub.add_parser(
        "erase",
        help="erase a person (an e-mail address, an id) from "
        "every kept request, event, delivery and the spool",
    )
    add_config_flag(command)
    command.add_argument("--subject", required=True, help="the value to erase, e.g. an e-mail")
    command.add_argument("--json", action="store_true", help="print the report as JSON")
    command.set_defaults(func=cmd_erase)
