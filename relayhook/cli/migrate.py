"""`relayhook migrate`: bring the store's schema to this relayhook's version.

    relayhook migrate            apply pending migrations (serve does too, unless --no-migrate)
    relayhook migrate --check    exit 1 if migrations are pending, changing nothing

Several processes may start at once: each migration is applied once, under the database's lock.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, TextIO

from relayhook.cli.common import add_config_flag, settings_of
from relayhook.store import StoreError


def cmd_migrate(args: argparse.Namespace, out: TextIO) -> int:
    from relayhook.assembly import open_settings_store

    settings = settings_of(args)
    store = open_settings_store(settings)

    async def run() -> None:
        try:
            await store.open(migrate=not args.check)
        finally:
            await store.close()

    try:
        asyncio.run(run())
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    applied = store.migrations_applied
    for migration in applied:
        print(f"applied migration {migration}", file=out)
    state = "up to date" if not applied else "migrated"
    print(f"schema version {store.schema_version}, {state}", file=out)
    return 0


def register(sub: Any) -> None:
    migrate = sub.add_parser("migrate", help="apply the store's pending schema migrations")
    add_config_flag(migrate)
    migrate.add_argument(
        "--check", action="store_true", help="apply nothing; exit 1 if migrations are pending"
    )
    migrate.set_defaults(func=cmd_migrate)
