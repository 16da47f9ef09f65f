"""The integrator's commands: `check`, `map` and `schema`. No server, no database."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import tomllib
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from relayhook.cli.common import add_config_flag, config_path
from relayhook.core.connectors import (
    SHIPPED_DIR,
    Connector,
    ConnectorSpec,
    ExampleRequest,
    load_connector,
    load_connectors,
)
from relayhook.core.diagnostics import NO_TRAFFIC, Finding, Traffic
from relayhook.core.hooks import Hook
from relayhook.core.mapping import InboundRequest, map_inbound
from relayhook.diagnostics import connector_file_diagnosis, diagnose, read_traffic
from relayhook.errors import ConnectorError, LocatedError, LocatedErrors, UsageError
from relayhook.settings import Settings, load_settings
from relayhook.store.base import Store


def _is_connector_file(path: Path) -> bool:
    # A config has none of a connector's top-level keys, and a connector none of a config's.
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return path.parent.name == "connectors" or "relays" not in path.read_text(errors="ignore")
    return bool({"id", "events", "auth", "accept"} & data.keys()) or not (
        {
            "relays",
            "server",
            "storage",
            "admin",
            "limits",
            "connectors",
            "hooks",
            "secrets",
            "delivery",
            "log",
            "metrics",
            "retention",
        }
        & data.keys()
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


def config_findings(
    settings: Settings,
    traffic: Traffic = NO_TRAFFIC,
    stored_hooks: Mapping[str, Hook] | None = None,
) -> list[Finding]:
    """The findings of a config that loads (relayhook.diagnostics): its connector folders, its
    hooks and the store's hooks against the examples and the traffic the store has seen."""
    from relayhook.assembly import load_hooks, load_relays

    connectors, relays = load_relays(settings)
    return diagnose(
        settings,
        connectors,
        relays.values(),
        stored_hooks,
        traffic,
        config_hooks=load_hooks(settings),
    )


async def config_findings_with_store(settings: Settings) -> list[Finding]:
    """config_findings with the store's traffic and hooks, when its database exists."""
    from relayhook.assembly import assemble

    async with stored_traffic(settings) as (traffic, store):
        stored: dict[str, Hook] = {}
        if store is not None:
            parts = assemble(settings, store=store)
            await parts.live.refresh(store, force=True)
            stored = dict(parts.live.hooks)
        return config_findings(settings, traffic, stored)


@contextlib.asynccontextmanager
async def stored_traffic(settings: Settings) -> AsyncIterator[tuple[Traffic, Store | None]]:
    """The store's traffic when its database exists and is current; none otherwise (`check`
    on a machine without the database neither makes nor migrates one)."""
    from relayhook.assembly import open_settings_store
    from relayhook.errors import RelayhookError
    from relayhook.store import sqlite_path

    with contextlib.suppress(ValueError):
        if not sqlite_path(settings.storage.url, base_dir=settings.config_dir).exists():
            yield NO_TRAFFIC, None
            return
    store = open_settings_store(settings)
    try:
        await store.open(migrate=False)
    except (RelayhookError, OSError):
        yield NO_TRAFFIC, None
        return
    try:
        yield await read_traffic(store), store
    finally:
        await store.close()


def connector_findings(path: Path) -> list[Finding]:
    """Load a connector file and run it over its examples (`relayhook.core.diagnostics`)."""
    return connector_file_diagnosis(path)


def _files_to_check(args: argparse.Namespace) -> list[Path]:
    files = [Path(f) for f in args.files]
    if files:
        return files
    files = sorted(SHIPPED_DIR.glob("*.toml"))
    config = config_path(args.config)
    if config is not None:
        try:
            dirs = load_settings(config).connector_dirs()
        except LocatedError:
            dirs = []  # reported when the config itself is checked
        files += [p for d in dirs for p in sorted(d.glob("*.toml"))]
        files.append(config)
    return files


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    """Exit 1 when any file has an error; warnings are printed and do not fail (`--strict`:
    they do)."""
    files = _files_to_check(args)
    errors = 0
    printed: set[str] = set()  # a connector of the config's folders fails both: said once
    for path in files:
        try:
            if _is_connector_file(path):
                findings: list[Finding | LocatedError | LocatedErrors] = list(
                    connector_findings(path)
                )
            else:
                settings = load_settings(path)
                check_config(settings)
                findings = list(asyncio.run(config_findings_with_store(settings)))
        except (LocatedError, LocatedErrors) as exc:
            findings = [exc]
        for finding in findings:
            if str(finding) not in printed:
                print(finding, file=out)
                printed.add(str(finding))
        errors += any(
            not isinstance(f, Finding) or f.level == "error" or args.strict for f in findings
        )
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
        raise ConnectorError(
            name, "(id)", 1, f"no connector {name!r}; known: " + ", ".join(sorted(connectors))
        )
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


def _example(connector: Connector, name: str | None) -> ExampleRequest:
    examples = connector.examples()
    if name is None:
        return examples[0] if examples else ExampleRequest("example", "", "", (), b"")
    for example in examples:
        if example.name == name:
            return example
    known = ", ".join(e.name for e in examples) or "none"
    raise UsageError(f"connector {connector.id!r} has no example {name!r} (examples: {known})")


def cmd_map(args: argparse.Namespace, out: TextIO) -> int:
    """Exit 0: mapped (a handshake answer and zero events included); 1: the request is refused
    (the 400 the provider would get); 2: the connector or a file cannot be read."""
    from urllib.parse import parse_qsl, urlencode

    connector = _find_connector(args.connector, args)
    headers = list(args.header)
    if args.payload is None:
        example = _example(connector, args.example)
        method = args.method or example.method
        body = b"" if method.upper() == "GET" else example.body
        query = dict(parse_qsl(example.query, keep_blank_values=True))
        headers = [*example.headers, *headers]
    else:
        body = sys.stdin.buffer.read() if args.payload == "-" else Path(args.payload).read_bytes()
        query = {}
        method = args.method
    query.update(args.query)  # --query k=v replaces the example's k
    method = (method or connector.spec.accept.methods[-1]).upper()
    request = InboundRequest(method, urlencode(query), tuple(headers), body)
    counter = itertools.count(1)
    mapped = map_inbound(
        connector,
        request,
        relay=args.relay,
        received_at=datetime.now(UTC),
        new_id=lambda: f"{args.relay}-{next(counter)}",
    )
    if mapped.answer is not None:
        print(json.dumps({"answer": mapped.answer.to_json()}, ensure_ascii=False), file=out)
    for event in mapped.events:
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
    check.add_argument("--strict", action="store_true", help="fail on warnings too")
    check.set_defaults(func=cmd_check)

    mapping = sub.add_parser("map", help="print the events a payload maps to")
    add_config_flag(mapping)
    mapping.add_argument("connector", help="a connector id, or the path of a .toml file")
    mapping.add_argument("payload", nargs="?", help="body file, - for stdin; default: example")
    mapping.add_argument("--query", action="append", type=_query_pair, default=[])
    mapping.add_argument("--header", action="append", type=_header_pair, default=[])
    mapping.add_argument("--method")
    mapping.add_argument("--relay", default="example")
    mapping.add_argument("--example", help="which of the connector's examples (by name)")
    mapping.set_defaults(func=cmd_map)

    schema = sub.add_parser("schema", help="print the connector JSON Schema")
    schema.set_defaults(func=cmd_schema)
