"""The integrator's commands: `check`, `map` and `schema`. No server, no database."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from relayhook.cli.common import add_config_flag, config_path
from relayhook.connectors import (
    SHIPPED_DIR,
    Connector,
    ConnectorSpec,
    load_connector,
    load_connectors,
)
from relayhook.errors import ConnectorError, LocatedError, LocatedErrors
from relayhook.mapping import InboundRequest, map_request
from relayhook.settings import Settings, load_settings


def _is_connector_file(path: Path) -> bool:
    # A config has none of a connector's top-level keys, and a connector none of a config's.
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return path.parent.name == "connectors" or "relays" not in path.read_text(errors="ignore")
    return bool({"id", "events", "auth", "accept"} & data.keys()) or not (
        {"relays", "server", "storage", "admin", "limits", "connectors", "hooks", "secrets",
         "delivery", "log", "metrics", "retention"} & data.keys()
    )


def check_config(settings: Settings) -> None:
    """Everything `serve` checks before it starts. Raises ConfigError or ConnectorError."""
    from relayhook.assembly import (
        destination_policy,
        load_hooks,
        load_relays,
        refuse_destinations,
    )

    load_relays(settings)
    asyncio.run(refuse_destinations(settings, load_hooks(settings), destination_policy(settings)))


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    files = [Path(f) for f in args.files]
    if not files:
        files = sorted(SHIPPED_DIR.glob("*.toml"))
        config = config_path(args.config)
        files += [config] if config is not None else []
    errors = 0
    for path in files:
        try:
            if _is_connector_file(path):
                load_connector(path)
            else:
                check_config(load_settings(path))
        except (LocatedError, LocatedErrors) as exc:
            print(exc, file=out)
            errors += 1
    print(f"{len(files) - errors} of {len(files)} files ok", file=sys.stderr)
    return 1 if errors else 0


def _find_connector(name: str, args: argparse.Namespace) -> Connector:
    path = Path(name)
    if path.suffix == ".toml":
        return load_connector(path)
    dirs = [SHIPPED_DIR]
    config = config_path(args.config)
    if config is not None:
        dirs += load_settings(config).connector_dirs()
    connectors = load_connectors(dirs)
    if name not in connectors:
        raise ConnectorError(name, "(id)", 1, f"no connector {name!r}; known: "
                             + ", ".join(sorted(connectors)))
    return connectors[name]


def _header_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip().lower(), value.strip()


def _query_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected k=v, got {text!r}")
    return name, value


def cmd_map(args: argparse.Namespace, out: TextIO) -> int:
    from urllib.parse import urlencode

    connector = _find_connector(args.connector, args)
    if args.payload is None:
        body = b"" if (args.method or "").upper() == "GET" else connector.example_body() or b""
        query = dict(connector.spec.example_query)
    else:
        body = sys.stdin.buffer.read() if args.payload == "-" else Path(args.payload).read_bytes()
        query = {}
    query.update(args.query)  # --query k=v replaces the example's k
    method = (args.method or connector.spec.accept.methods[-1]).upper()
    request = InboundRequest(method, urlencode(query), tuple(args.header), body)
    counter = itertools.count(1)
    events = map_request(connector, request, relay=args.relay, received_at=datetime.now(UTC),
                         new_id=lambda: f"{args.relay}-{next(counter)}")
    for event in events:
        print(json.dumps(event.to_cloudevent(), ensure_ascii=False), file=out)
    return 0


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    print(schema_json(), file=out)
    return 0


def schema_json() -> str:
    schema = ConnectorSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Relayhook connector"
    return json.dumps(schema, indent=2, ensure_ascii=False)



def register(sub: Any) -> None:
    check = sub.add_parser("check", help="validate connector and config files")
    add_config_flag(check)
    check.add_argument("files", nargs="*")
    check.set_defaults(func=cmd_check)

    mapping = sub.add_parser("map", help="print the events a payload maps to")
    add_config_flag(mapping)
    mapping.add_argument("connector", help="a connector id, or the path of a .toml file")
    mapping.add_argument("payload", nargs="?", help="body file, - for stdin; default: example")
    mapping.add_argument("--query", action="append", type=_query_pair, default=[])
    mapping.add_argument("--header", action="append", type=_header_pair, default=[])
    mapping.add_argument("--method")
    mapping.add_argument("--relay", default="example")
    mapping.set_defaults(func=cmd_map)

    schema = sub.add_parser("schema", help="print the connector JSON Schema")
    schema.set_defaults(func=cmd_schema)
