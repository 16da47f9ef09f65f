"""`relayhook admin password`: set the console's admin password (ends every signed-in session).

relayhook admin password                      asks twice on a terminal
echo "$NEW_PASSWORD" | relayhook admin password   reads one line from standard input
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from typing import Any, TextIO

from relayhook.assembly import opened_store
from relayhook.cli.common import add_config_flag, settings_of
from relayhook.errors import UsageError
from relayhook.passwords import MIN_PASSWORD, set_password
from relayhook.settings import Settings


def read_password(stdin: TextIO) -> str:
    if not stdin.isatty():
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass("New console password: ")
    if getpass.getpass("Again: ") != first:
        raise UsageError("the two passwords differ; nothing changed")
    return first


async def set_admin_password(settings: Settings, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"a console password has at least {MIN_PASSWORD} characters")
    async with opened_store(settings) as store:
        await set_password(store, password, time.time())


def cmd_password(args: argparse.Namespace, out: TextIO) -> int:
    settings = settings_of(args)
    asyncio.run(set_admin_password(settings, read_password(sys.stdin)))
    print(
        f"The console password is set; sign in at {settings.public_url()}/ "
        "(browsers signed in before must sign in again).",
        file=out,
    )
    return 0


def register(sub: Any) -> None:
    admin = sub.add_parser("admin", help="the web console's admin password")
    family = admin.add_subparsers(dest="admin_command", required=True)
    password = family.add_parser(
        "password",
        help="set a new console password (read from standard input when it is not a terminal)",
    )
    add_config_flag(password)
    password.set_defaults(func=cmd_password)
