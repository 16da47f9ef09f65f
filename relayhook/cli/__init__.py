"""The `relayhook` command.

relayhook serve [--config FILE] [--host H] [--port P] [--role all|web|worker] [--no-migrate]
relayhook migrate [--check]              apply the store's pending schema migrations
relayhook check [FILES...]               connectors and configs; file:key:line on error
relayhook map CONNECTOR [PAYLOAD] [--query k=v] [--header 'Name: value'] [--method M]
relayhook remap [--relay NAME]           map kept rejected requests again
relayhook diff FILE [--last N] [--json] [--remap]   what a changed connector or hook would
                                         change over the last kept requests
relayhook replay --hook NAME [--status dead,failed] [--since T]
relayhook render HOOK [--event FILE | --newest | --sample NAME]   exact request, as cURL
relayhook send-test HOOK [--event FILE | --newest | --sample NAME]  send it (a test)
relayhook schema                         the connector JSON Schema
relayhook relays list|add|secret|remove  relays created at run time (and the config's)
relayhook hooks list|add FILE|remove|activate|deactivate
relayhook admin password                 set the web console's password (stdin if piped)
relayhook users list|add|disable|enable|reset   people of the console, with their roles
relayhook prune                          delete what [retention] lets go
relayhook backup FILE                    a consistent copy of the store, while serving
relayhook restore FILE                   put a backup in the stopped store's place
relayhook keys rotate|new                seal every stored secret with a new key
relayhook print-unit [--user U] [--exec P] [--config F]   a systemd unit for serve
relayhook erase --subject EMAIL          erase a person from every kept record and the spool
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from relayhook.cli import (
    admin,
    authoring,
    deploy,
    diff,
    erase,
    keys,
    manage,
    migrate,
    ops,
    sending,
    serve,
    signing,
    stored,
    users,
    why,
)
from relayhook.core.mapping import MappingError
from relayhook.core.templating import RenderError
from relayhook.errors import (
    ConflictError,
    InvalidError,
    LocatedError,
    LocatedErrors,
    NotFoundError,
    UsageError,
)
from relayhook.settings import DEFAULT_CONFIG
from relayhook.store import StoreError

# Each adds its subcommands.
FAMILIES = (
    serve,
    migrate,
    authoring,
    signing,
    stored,
    diff,
    erase,
    sending,
    manage,
    ops,
    admin,
    users,
    why,
    deploy,
    keys,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relayhook", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help=f"config file (default: ./{DEFAULT_CONFIG} if present)")
    sub = parser.add_subparsers(dest="command", required=True)
    for family in FAMILIES:
        family.register(sub)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    stream = out or sys.stdout
    try:
        code: int = args.func(args, stream)
    except (LocatedError, LocatedErrors) as exc:
        print(exc, file=sys.stderr)
        return 2
    except (
        MappingError,
        RenderError,
        UsageError,
        InvalidError,
        ConflictError,
        NotFoundError,
        StoreError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
