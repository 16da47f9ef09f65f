"""The operator's commands: `prune`, `backup` and `restore`. They act on the store the config
names; `prune` and `backup` work while `relayhook serve` runs on it, `restore` refuses to.

    relayhook prune                 delete what [retention] lets go now
    relayhook backup FILE           a consistent copy of the store into a new file
    relayhook restore FILE          put a backup in the store's place (SQLite; the server stopped)
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any, TextIO

from relayhook.cli.common import add_config_flag, settings_of
from relayhook.settings import Settings
from relayhook.store import StoreError, sqlite_path

RESTORE_POSTGRES = (
    "relayhook restore puts SQLite backups back; restore a PostgreSQL store with"
    " pg_restore (README: Backup and restore)"
)


async def prune(settings: Settings, out: TextIO) -> int:
    from relayhook.assembly import opened_store, prune_now

    retention = settings.retention
    async with opened_store(settings) as store:
        result = await prune_now(store, retention, time.time())
    kept = "forever" if retention.days <= 0 else f"{retention.days:g} days"
    print(
        f"pruned {result.requests} requests, {result.events} events, {result.deliveries}"
        f" finished deliveries and {result.attempts} attempts (kept: {kept}, unfinished"
        " deliveries and their events always)",
        file=out,
    )
    return 0


async def backup(settings: Settings, target: Path, out: TextIO) -> int:
    from relayhook.assembly import opened_store

    async with opened_store(settings) as store:
        await store.backup(target)
    print(
        f"backed up {settings.storage.shown_url()} into {target} ({target.stat().st_size} bytes);"
        " keep the key that seals its secrets with it (relayhook.db.key, or [secrets] key)",
        file=out,
    )
    return 0


def restore(settings: Settings, source: Path, out: TextIO) -> int:
    from relayhook.assembly import key_file
    from relayhook.store.sqlite.restore import restore as restore_file

    if settings.storage.url.lower().startswith("postgres"):
        raise StoreError(RESTORE_POSTGRES)
    try:
        target = sqlite_path(settings.storage.url, base_dir=settings.config_dir)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    kept = restore_file(source, target)
    if kept is not None:
        print(f"kept what {target} held before as {kept}", file=out)
    print(
        f"restored {source} into {target}. Its secrets open with the key that sealed them:"
        f" put that key file at {key_file(settings)} (or set [secrets] key) before you start"
        " relayhook serve",
        file=out,
    )
    return 0


def cmd_prune(args: argparse.Namespace, out: TextIO) -> int:
    return asyncio.run(prune(settings_of(args), out))


def cmd_backup(args: argparse.Namespace, out: TextIO) -> int:
    return asyncio.run(backup(settings_of(args), Path(args.file), out))


def cmd_restore(args: argparse.Namespace, out: TextIO) -> int:
    return restore(settings_of(args), Path(args.file), out)


def register(sub: Any) -> None:
    pruning = sub.add_parser(
        "prune", help="delete requests, events and finished deliveries older than [retention] days"
    )
    add_config_flag(pruning)
    pruning.set_defaults(func=cmd_prune)

    copy = sub.add_parser("backup", help="copy the store into a new file while it serves")
    add_config_flag(copy)
    copy.add_argument("file", help="the new file (it must not exist)")
    copy.set_defaults(func=cmd_backup)

    back = sub.add_parser(
        "restore",
        help="put a backup in the place of the store (SQLite; stop relayhook serve first)",
    )
    add_config_flag(back)
    back.add_argument("file", help="a file `relayhook backup` wrote")
    back.set_defaults(func=cmd_restore)
