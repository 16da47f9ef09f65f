"""`relayhook users`: people of the console, for scripts (each change is in the audit log).

relayhook users list                              everyone: id, role, state, e-mail, name
relayhook users add EMAIL --name N --role R       invite: prints the one-time link
relayhook users add EMAIL --name N --role R --password-stdin    with a password instead
relayhook users disable EMAIL                     every session ends at once
relayhook users enable EMAIL
relayhook users reset EMAIL                       the password stops working: a new link
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, TextIO

from relayhook.assembly import opened_store
from relayhook.cli.common import add_config_flag, settings_of
from relayhook.core.people import ROLES, Account, Principal
from relayhook.errors import NotFoundError, UsageError
from relayhook.people import People, invite_mailer
from relayhook.settings import Settings
from relayhook.store.base import Store


def cli_principal() -> Principal:
    """Who the audit log names for a change made with this command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown user"
    return Principal("cli", "token", "admin", f"relayhook users ({user})")


async def audit_cli(
    store: Store, action: str, target: str, detail: dict[str, Any] | None = None
) -> None:
    """One audit line for a change made from the command line."""
    people = People(store, clock=time.time, new_id=lambda: str(uuid.uuid4()))
    await people.record(
        cli_principal(),
        "cli",
        action,
        target,
        {k: v for k, v in (detail or {}).items() if v is not None},
    )


@contextlib.asynccontextmanager
async def people_of(settings: Settings) -> AsyncIterator[People]:
    async with opened_store(settings) as store:
        people = People(
            store,
            clock=time.time,
            new_id=lambda: str(uuid.uuid4()),
            mailer=invite_mailer(settings),
            public_url=settings.public_url(),
        )
        await people.ensure_admin()
        yield people


async def _find(people: People, login: str) -> Account:
    found = await people.login(login)
    if found is None:
        raise NotFoundError(f"nobody signs in as {login!r}; `relayhook users list` shows who")
    return found


async def run_users(settings: Settings, args: argparse.Namespace, out: TextIO) -> None:
    async with people_of(settings) as people:
        command = args.users_command
        if command == "list":
            for a in await people.store.list_accounts():
                state = "active" if a.active else "disabled"
                print(f"{a.id}\t{a.role}\t{state}\t{a.email or '-'}\t{a.name}", file=out)
            return
        if command == "add":
            password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else None
            account = await people.add(args.name, args.email, args.role, password=password)
            detail = {"name": account.name, "email": account.email, "role": account.role}
            await people.record(
                cli_principal(), "cli", "people.create", f"people:{account.id}", detail
            )
            if password is None:
                link = await people.new_link(account, "invite")
                print(
                    f"{account.email} is invited as {account.role}. Pass on this link (it "
                    f"works once, for a day):\n{link}",
                    file=out,
                )
            else:
                print(f"{account.email} can sign in as {account.role}.", file=out)
            return
        account = await _find(people, args.email)
        if command in ("disable", "enable"):
            await people.set_disabled(account.id, command == "disable")
            print(
                f"{account.email or account.id} is {command}d"
                f"{' and signed out everywhere' if command == 'disable' else ''}.",
                file=out,
            )
        else:
            link = await people.reset(account.id)
            print(
                f"{account.email or account.id}'s password no longer works; pass on this link "
                f"to choose a new one (once, for a day):\n{link}",
                file=out,
            )
        await people.record(cli_principal(), "cli", f"people.{command}", f"people:{account.id}")


def cmd_users(args: argparse.Namespace, out: TextIO) -> int:
    if getattr(args, "role", None) is not None and args.role not in ROLES:
        raise UsageError(f"--role is one of {', '.join(ROLES)}")
    asyncio.run(run_users(settings_of(args), args, out))
    return 0


def register(sub: Any) -> None:
    users = sub.add_parser("users", help="people of the console: list, add, disable, reset")
    family = users.add_subparsers(dest="users_command", required=True)
    listed = family.add_parser("list", help="everyone, with their role")
    add = family.add_parser("add", help="invite someone (prints a one-time link)")
    add.add_argument("email")
    add.add_argument("--name", required=True)
    add.add_argument("--role", default="viewer", choices=ROLES)
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read their password from standard input instead of making a link",
    )
    commands = [listed, add]
    for name, text in (
        ("disable", "sign them out everywhere and keep them out"),
        ("enable", "let a disabled person sign in again"),
        ("reset", "end their password; prints a link to choose a new one"),
    ):
        command = family.add_parser(name, help=text)
        command.add_argument("email", help="their e-mail (or `admin` for the first admin)")
        commands.append(command)
    for command in commands:
        add_config_flag(command)
        command.set_defaults(func=cmd_users)
