"""`relayhook relays ...` and `relayhook hooks ...`: change relays and hooks in the store the
config names. A running server applies the change within a second, without a restart.

    relayhook relays list
    relayhook relays add NAME --connector ID [--secret-stdin]   prints the URL and the secret
    relayhook relays secret NAME [--rotate]
    relayhook relays remove NAME
    relayhook hooks list
    relayhook hooks add FILE [--replace]     [[hooks]] tables (TOML) or hook objects (JSON)
    relayhook hooks activate NAME | deactivate NAME | remove NAME
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from relayhook.assembly import Parts, running
from relayhook.cli.common import add_config_flag, settings_of
from relayhook.cli.users import audit_cli
from relayhook.core.redaction import redacted_url
from relayhook.core.tomlpos import format_path, locate_error
from relayhook.errors import HookError, InvalidError, LocatedError, LocatedErrors, UsageError

Action = Callable[[Parts, argparse.Namespace, TextIO], Awaitable[int]]


# -- relays


async def relays_list(parts: Parts, args: argparse.Namespace, out: TextIO) -> int:
    for relay in sorted(parts.live.relays.values(), key=lambda relay: relay.name):
        print(
            f"{relay.name}\t{relay.connector.id}\t{relay.source}\t{parts.manager.relay_url(relay)}",
            file=out,
        )
    return 0


async def relays_add(parts: Parts, args: argparse.Namespace, out: TextIO) -> int:
    secret = sys.stdin.readline().strip() if args.secret_stdin else None
    relay = await parts.manager.create_relay(args.name, args.connector, secret)
    _print_relay(parts, relay.name, out, secret=relay.secret)
    return 0


async def relays_secret(parts: Parts, args: argparse.Namespace, out: TextIO) -> int:
    relay = await parts.manager.relay_secret(args.name, rotate=args.rotate)
    _print_relay(parts, relay.name, out, secret=relay.secret)
    return 0


async def relays_remove(parts: Parts, args: argparse.Namespace, out: TextIO) -> int:
    await parts.manager.delete_relay(args.name)
    print(
        f"removed relay {args.name!r}: its URL answers 404; its requests and events stay", file=out
    )
    return 0


def _print_relay(parts: Parts, name: str, out: TextIO, *, secret: str) -> None:
    relay = parts.manager.relay(name)
    url = parts.manager.relay_url(relay)
    print(
        f"relay {relay.name} ({relay.connector.spec.title})\nRelay URL: {url}\nSecret: {secret}\n",
        file=out,
    )
    print(relay.connector.setup.render({"relay_url": url, "secret": secret}), file=out)


# -- hooks


async def hooks_list(parts: Parts, args: argparse.Namespace, out: TextIO) -> int:
    live = parts.live
    for name, hook in sorted(live.hooks.items()):
        state = "active" if live.active()[name] else f"inactive ({live.reason(name)})"
        source = "config" if live.is_config_hook(name) else "api"
        print(
            f"{name}\t{source}\t{state}\t{','.join(hook.spec.events)}\t"
            f"{hook.method} {redacted_url(hook.url.source)}",
            file=out,
        )
    return 0


def read_hooks_file(path: Path) -> tuple[list[dict[str, Any]], str]:
    """The hooks in a file: `[[hooks]]` tables or one table (TOML), or an object or a list of
    objects (JSON). Also returns the text, for error lines."""
    text = path.read_text(encoding="utf-8")
    try:
        data: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("hooks"), list):
        data = data["hooks"]
    hooks = data if isinstance(data, list) else [data]
    if not all(isinstance(hook, dict) for hook in hooks):
        raise UsageError(f"{path}: expected [[hooks]] tables, or JSON hook objects")
    return hooks, text


async def hooks_add(parts: Parts, args: argparse.Namespace, out: TextIO) -> int:
    path = Path(args.file)
    hooks, text = read_hooks_file(path)
    prefix = ("hooks",) if "[[hooks]]" in text or path.suffix == ".json" else ()
    for index, raw in enumerate(hooks):
        name = raw.get("name")
        try:
            accept = args.accept_findings
            if args.replace and isinstance(name, str) and name in parts.live.hooks:
                await parts.manager.replace_hook(name, raw, accept_findings=accept)
                verb = "replaced"
            else:
                await parts.manager.create_hook(raw, accept_findings=accept)
                verb = "added"
        except InvalidError as exc:
            errors: list[LocatedError] = []
            for error in exc.errors:
                where = (*prefix, index, *error.key) if prefix else error.key
                key, line = locate_error(text, where)
                errors.append(HookError(path, key or format_path(where), line, error.message))
            raise LocatedErrors(errors) from exc
        print(f"{verb} hook {name!r}", file=out)
        for finding in await parts.manager.hook_findings(str(name)):
            print(finding, file=out)  # warnings, or the errors accepted
    return 0


def _hook_action(action: str) -> Action:
    async def run(parts: Parts, args: argparse.Namespace, out: TextIO) -> int:
        if action == "remove":
            cancelled = await parts.manager.delete_hook(args.name)
            print(f"removed hook {args.name!r}; {cancelled} unsent deliveries cancelled", file=out)
        else:
            changed = await parts.manager.set_active(
                args.name, action == "activate", "deactivated from the command line"
            )
            print(
                f"hook {args.name!r} {action}d; {changed} deliveries "
                f"{'resumed' if action == 'activate' else 'paused'}",
                file=out,
            )
        return 0

    return run


# -- the commands


def _command(action: Action) -> Callable[[argparse.Namespace, TextIO], int]:
    def command(args: argparse.Namespace, out: TextIO) -> int:
        async def go() -> int:
            async with running(settings_of(args)) as parts:
                code = await action(parts, args, out)
                if args.action != "list":  # a change, or a secret shown: in the audit log
                    await audit_cli(
                        parts.store,
                        f"{args.command}.{args.action}",
                        target_of(args),
                        {"rotate": getattr(args, "rotate", None)},
                    )
                return code

        return asyncio.run(go())

    return command


def target_of(args: argparse.Namespace) -> str:
    name = getattr(args, "name", None)
    return f"{args.command.rstrip('s')}:{name}" if name else ""


class _Leaves:
    """Subcommands that each take `--config` after them too."""

    def __init__(self, sub: Any) -> None:
        self.sub = sub

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self.sub.add_parser(name, **kwargs)
        add_config_flag(parser)
        return parser


def register(sub: Any) -> None:
    relays = sub.add_parser("relays", help="list, add, remove relays; reveal or rotate a secret")
    relay_sub = _Leaves(relays.add_subparsers(dest="action", required=True))
    relay_sub.add_parser("list", help="relays and their URLs").set_defaults(
        func=_command(relays_list)
    )
    add = relay_sub.add_parser("add", help="a new relay URL; prints its URL and secret")
    add.add_argument("name")
    add.add_argument("--connector", required=True, help="a connector id (relayhook map lists)")
    add.add_argument(
        "--secret-stdin",
        action="store_true",
        help="read the secret from standard input instead of making one up",
    )
    add.set_defaults(func=_command(relays_add))
    secret = relay_sub.add_parser("secret", help="print a relay's secret, or --rotate it")
    secret.add_argument("name")
    secret.add_argument(
        "--rotate", action="store_true", help="make a new secret; the old one stops working at once"
    )
    secret.set_defaults(func=_command(relays_secret))
    remove = relay_sub.add_parser("remove", help="remove a relay (its requests stay)")
    remove.add_argument("name")
    remove.set_defaults(func=_command(relays_remove))

    hooks = sub.add_parser("hooks", help="list, add, remove, activate, deactivate hooks")
    hook_sub = _Leaves(hooks.add_subparsers(dest="action", required=True))
    hook_sub.add_parser("list", help="hooks and whether each is active").set_defaults(
        func=_command(hooks_list)
    )
    add_hooks = hook_sub.add_parser("add", help="add the hooks of a TOML or JSON file")
    add_hooks.add_argument("file")
    add_hooks.add_argument(
        "--replace", action="store_true", help="replace hooks of the same name (made at run time)"
    )
    add_hooks.add_argument(
        "--accept-findings",
        action="store_true",
        help="save a hook even where `relayhook check` finds an error in it",
    )
    add_hooks.set_defaults(func=_command(hooks_add))
    for action, text in (
        ("remove", "remove a hook; its unsent deliveries are cancelled"),
        ("activate", "switch a hook on: its paused deliveries are sent"),
        ("deactivate", "switch a hook off: its deliveries wait, paused"),
    ):
        command = hook_sub.add_parser(action, help=text)
        command.add_argument("name")
        command.set_defaults(func=_command(_hook_action(action)))
