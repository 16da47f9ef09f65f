"""`relayhook serve`: check the config, print what to paste where, run the server."""

from __future__ import annotations

import argparse
import gc
from pathlib import Path
from typing import Any, TextIO

from relayhook.cli.authoring import check_config
from relayhook.cli.common import add_config_flag, settings_of
from relayhook.connectors import SHIPPED_DIR
from relayhook.settings import DEFAULT_CONFIG, sample_config


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
    settings = settings_of(args, **({"server": server} if server else {}))
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
    app = create_app(settings, role=args.role, migrate=args.migrate)
    # Everything loaded so far lives as long as the process: out of the collector's sight, a
    # full collection no longer walks it (those took 19-37 ms: the ingest p99 tail).
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=settings.server.host, port=settings.server.port,
                log_level=args.log_level, access_log=args.access_log)
    return 0



def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the relay server")
    add_config_flag(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--role", choices=["all", "web", "worker"], default="all",
                       help="web: take requests; worker: send deliveries; all: both")
    serve.add_argument("--no-migrate", dest="migrate", action="store_false",
                       help="refuse to start on a database with migrations pending, rather than"
                       " apply them (then run `relayhook migrate` first)")
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--no-access-log", dest="access_log", action="store_false")
    serve.set_defaults(func=cmd_serve)

