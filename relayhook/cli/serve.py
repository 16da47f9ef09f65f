"""`relayhook serve`: check the config, print what to paste where, run the server."""

from __future__ import annotations

import argparse
import asyncio
import gc
from pathlib import Path
from typing import Any, TextIO

from relayhook.cli.admin import first_password
from relayhook.cli.authoring import check_config
from relayhook.cli.common import add_config_flag, settings_of
from relayhook.connectors import SHIPPED_DIR
from relayhook.settings import DEFAULT_CONFIG, sample_config


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    import uvicorn

    from relayhook.assembly import load_relays, load_sealer
    from relayhook.web.app import create_app  # serve alone runs the ASGI app
    from relayhook.web.slow import ConnectionLimits, guarded_protocol

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
    _, new_key_file = load_sealer(settings)
    if new_key_file is not None:
        print(f"Made the key that seals secrets at rest: {new_key_file} (mode 0600). Back it"
              " up with the database: without it, relays and hooks created at run time cannot"
              " be read. Or set RELAYHOOK_SECRET_KEY.", file=out)
    if args.role in ("all", "web"):
        password = asyncio.run(first_password(settings))
        print(f"Console: {settings.public_url()}/", file=out)
        if password is not None:
            # Shown this once: only its argon2 hash is kept.
            print(f"Console password (shown once; `relayhook admin password` sets another): "
                  f"{password}", file=out)
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
    limits = ConnectionLimits(header_timeout=settings.server.header_timeout,
                              body_timeout=settings.server.body_timeout,
                              max_connections=settings.server.max_connections)
    uvicorn.run(app, host=settings.server.host, port=settings.server.port,
                log_level=args.log_level, access_log=args.access_log,
                http=guarded_protocol(limits))
    return 0



def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the relay server")
    add_config_flag(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--role", choices=["all", "web", "worker"], default="all",
                       help="web: take requests; worker: send deliveries; all: both")
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--no-access-log", dest="access_log", action="store_false")
    serve.set_defaults(func=cmd_serve)

