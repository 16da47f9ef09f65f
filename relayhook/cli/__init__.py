"""The `relayhook` command.

    relayhook serve [--config FILE] [--host H] [--port P] [--role all|web|worker]
    relayhook check [FILES...]               connectors and configs; file:key:line on error
    relayhook map CONNECTOR [PAYLOAD] [--query k=v] [--header 'Name: value'] [--method M]
    relayhook remap [--relay NAME]           map kept rejected requests again
    relayhook replay --hook NAME [--status dead,failed] [--since T]
    relayhook render HOOK [--event FILE]     a hook's exact request as a cURL command
    relayhook send-test HOOK [--event FILE]  send an example event through a hook
    relayhook schema                         the connector JSON Schema
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import sys
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from relayhook.connectors import (
    SHIPPED_DIR,
    Connector,
    ConnectorSpec,
    load_connector,
    load_connectors,
)
from relayhook.errors import ConnectorError, LocatedError, LocatedErrors, UsageError
from relayhook.mapping import InboundRequest, MappingError, map_request
from relayhook.settings import DEFAULT_CONFIG, Settings, load_settings, sample_config
from relayhook.templating import RenderError


def _config_path(given: str | None) -> Path | None:
    if given is not None:
        return Path(given)
    default = Path(DEFAULT_CONFIG)
    return default if default.is_file() else None


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(_config_path(args.config), **overrides)


# --- serve ---------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    import uvicorn

    from relayhook.assembly import load_relays
    from relayhook.web.app import create_app

    wrote_config = args.config is None and not Path(DEFAULT_CONFIG).exists()
    if wrote_config:
        shipped = sorted(p.stem for p in SHIPPED_DIR.glob("*.toml"))
        Path(DEFAULT_CONFIG).write_text(sample_config(shipped), encoding="utf-8")
        print(f"No config given: wrote {DEFAULT_CONFIG} with a sample relay per connector.",
              file=out)
    server: dict[str, Any] = {}
    if args.host is not None:
        server["host"] = args.host
    if args.port is not None:
        server["port"] = args.port
    settings = _settings(args, **({"server": server} if server else {}))
    check_config(settings)  # what would stop the start, said as file:key:line, before it
    _, relays = load_relays(settings)
    print(f"Relayhook on {settings.public_url()}, store {settings.storage.url}", file=out)
    for relay in relays.values():
        url = settings.public_url() + "/in/" + relay.token
        # Secrets are printed once, when they were just made up; after that they stay in the
        # config file and out of service logs.
        secret = relay.secret if wrote_config else f"(the secret of relay {relay.name!r})"
        setup = relay.connector.setup.render({"relay_url": url, "secret": secret})
        print(f"\n== relay {relay.name} ({relay.connector.spec.title}) ==\n"
              f"Relay URL: {url}\n{setup}", file=out)
    out.flush()
    app = create_app(settings, role=args.role)
    # Everything loaded so far lives as long as the process: out of the collector's sight, a
    # full collection no longer walks it (those took 19-37 ms: the ingest p99 tail).
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=settings.server.host, port=settings.server.port,
                log_level=args.log_level, access_log=args.access_log)
    return 0


# --- check ---------------------------------------------------------------------------------


def _is_connector_file(path: Path) -> bool:
    # A config has none of a connector's top-level keys, and a connector none of a config's.
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return path.parent.name == "connectors" or "relays" not in path.read_text(errors="ignore")
    return bool({"id", "events", "auth", "accept"} & data.keys()) or not (
        {"relays", "server", "storage", "admin", "limits", "connectors", "hooks", "secrets",
         "delivery"} & data.keys()
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
        config = _config_path(args.config)
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


# --- map -----------------------------------------------------------------------------------


def _find_connector(name: str, args: argparse.Namespace) -> Connector:
    path = Path(name)
    if path.suffix == ".toml":
        return load_connector(path)
    dirs = [SHIPPED_DIR]
    config = _config_path(args.config)
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


def cmd_remap(args: argparse.Namespace, out: TextIO) -> int:
    from relayhook.cli import stored as cli_store

    return asyncio.run(cli_store.remap(_settings(args), args.relay, out))


def cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    from relayhook.cli import stored as cli_store

    statuses = [s for s in args.status.split(",") if s]
    return asyncio.run(cli_store.replay(_settings(args), args.hook, statuses, args.since, out,
                                        sys.stderr))


def cmd_render(args: argparse.Namespace, out: TextIO) -> int:
    from relayhook.cli import stored as cli_store

    return asyncio.run(cli_store.render(_settings(args), args.hook, args.event, out))


def cmd_send_test(args: argparse.Namespace, out: TextIO) -> int:
    from relayhook.cli import stored as cli_store

    return asyncio.run(cli_store.send_test(_settings(args), args.hook, args.event, out))


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    print(schema_json(), file=out)
    return 0


def schema_json() -> str:
    schema = ConnectorSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Relayhook connector"
    return json.dumps(schema, indent=2, ensure_ascii=False)


# --- entry ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relayhook", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help=f"config file (default: ./{DEFAULT_CONFIG} if present)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the relay server")
    serve.add_argument("--config", default=argparse.SUPPRESS)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--role", choices=["all", "web", "worker"], default="all",
                       help="web: take requests; worker: send deliveries; all: both")
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--no-access-log", dest="access_log", action="store_false")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="validate connector and config files")
    check.add_argument("--config", default=argparse.SUPPRESS)
    check.add_argument("files", nargs="*")
    check.set_defaults(func=cmd_check)

    mapping = sub.add_parser("map", help="print the events a payload maps to")
    mapping.add_argument("--config", default=argparse.SUPPRESS)
    mapping.add_argument("connector", help="a connector id, or the path of a .toml file")
    mapping.add_argument("payload", nargs="?", help="body file, - for stdin; default: example")
    mapping.add_argument("--query", action="append", type=_query_pair, default=[])
    mapping.add_argument("--header", action="append", type=_header_pair, default=[])
    mapping.add_argument("--method")
    mapping.add_argument("--relay", default="example")
    mapping.set_defaults(func=cmd_map)

    remap = sub.add_parser("remap", help="map kept requests again with the current connectors")
    remap.add_argument("--config", default=argparse.SUPPRESS)
    remap.add_argument("--status", choices=["rejected"], default="rejected",
                       help="only rejected requests: accepted ones already have their events")
    remap.add_argument("--relay")
    remap.set_defaults(func=cmd_remap)

    replay = sub.add_parser("replay", help="send a hook's dead or failed deliveries again")
    replay.add_argument("--config", default=argparse.SUPPRESS)
    replay.add_argument("--hook", required=True)
    replay.add_argument("--status", default="dead", help="dead, failed or dead,failed")
    replay.add_argument("--since", help="only deliveries created at or after this RFC 3339 time")
    replay.set_defaults(func=cmd_replay)

    for name, func, text in (
        ("render", cmd_render, "print a hook's exact request as a cURL command"),
        ("send-test", cmd_send_test, "send an example event through a hook now"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("--config", default=argparse.SUPPRESS)
        command.add_argument("hook")
        command.add_argument("--event", help="a CloudEvent JSON file (as `relayhook map` prints)")
        command.set_defaults(func=func)

    schema = sub.add_parser("schema", help="print the connector JSON Schema")
    schema.set_defaults(func=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    stream = out or sys.stdout
    try:
        code: int = args.func(args, stream)
    except (LocatedError, LocatedErrors) as exc:
        print(exc, file=sys.stderr)
        return 2
    except (MappingError, RenderError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
