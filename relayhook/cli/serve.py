"""`relayhook serve`: check the config, print what to paste where, run the server."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from relayhook.cli.admin import first_password
from relayhook.cli.authoring import check_config
from relayhook.cli.common import add_config_flag, settings_of
from relayhook.core.connectors import SHIPPED_DIR, emitted_types
from relayhook.live import CONFIG_INACTIVE, LiveConfig
from relayhook.settings import DEFAULT_CONFIG, Settings, sample_config

log = logging.getLogger("relayhook.serve")


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    import uvicorn

    from relayhook.assembly import load_hooks, load_relays, load_sealer
    from relayhook.logs import Redactor, configure_logging
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
    level = args.log_level or settings.log.level
    redact = Redactor.from_settings(settings, relays.values(), load_hooks(settings).values())
    configure_logging(level=level, fmt=settings.log.format, redact=redact)
    _, new_key_file = load_sealer(settings)
    if new_key_file is not None:
        print(f"Made the key that seals secrets at rest: {new_key_file} (mode 0600). Back it"
              " up with the database: without it, relays and hooks created at run time cannot"
              " be read. Or set RELAYHOOK_SECRET_KEY.", file=out)
    # Before anything else opens the store: --no-migrate must find a database that is behind
    # still behind (and say so), and several processes starting at once migrate it once.
    asyncio.run(prepare_schema(settings, migrate=args.migrate))
    if not start_allowed(settings, accept_errors=args.accept_findings):
        return 2
    console = None
    if args.role in ("all", "web"):
        console = console_login_hint(settings, asyncio.run(first_password(settings)))
    live = asyncio.run(_live_config(settings))
    print(banner(settings, live, wrote_config=wrote_config, console=console), file=out)
    log_inactive_hooks(live)
    out.flush()
    app = create_app(settings, role=args.role, migrate=args.migrate)
    redact.follow(app.state.relayhook.live)  # and the relays and hooks made at run time
    # Everything loaded so far lives as long as the process: out of the collector's sight, a
    # full collection no longer walks it (those took 19-37 ms: the ingest p99 tail).
    gc.collect()
    gc.freeze()
    limits = ConnectionLimits(header_timeout=settings.server.header_timeout,
                              body_timeout=settings.server.body_timeout,
                              max_connections=settings.server.max_connections,
                              max_header_line_bytes=settings.limits.max_header_line_bytes,
                              max_header_bytes=settings.limits.max_header_bytes,
                              max_header_fields=settings.limits.max_header_fields)
    # log_config=None: uvicorn keeps the handler configure_logging set (format, redaction).
    # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told: it is told our list, and to
    # read no proxy header at all when the list is empty (relayhook.core.clients).
    proxies = settings.server.forwarded_allow_ips
    uvicorn.run(app, host=settings.server.host, port=settings.server.port, log_config=None,
                log_level=level, access_log=args.access_log, http=guarded_protocol(limits),
                proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None)
    return 0


def start_allowed(settings: Settings, *, accept_errors: bool = False) -> bool:
    """`serve` is as strict as `check` (relayhook.diagnostics, with the store's traffic and
    hooks): an error stops it with check's message on stderr; each warning is logged once at
    WARNING and the server starts. `accept_errors` (`--accept-findings`, the config file's
    "Save anyway") logs the errors at WARNING too and starts."""
    from relayhook.cli.authoring import config_findings_with_store

    findings = asyncio.run(config_findings_with_store(settings))
    errors = [f for f in findings if f.level == "error"]
    if not accept_errors:
        for finding in errors:
            print(finding, file=sys.stderr)
    if errors and not accept_errors:
        print(f"Not starting: {len(errors)} error(s) in the configuration (what `relayhook "
              "check` prints); fix them, then start again.", file=sys.stderr)
        return False
    for finding in findings:
        log.warning("%s", finding, extra={"location": finding.location})
    return True


def log_inactive_hooks(live: LiveConfig) -> None:
    """One log line per inactive hook at start, for log collectors (the banner says it too)."""
    active = live.active()
    for name in live.hooks:
        if not active[name]:
            reason = live.reason(name) or "disabled"
            log.warning("hook %r is inactive: %s; its deliveries wait, paused", name, reason,
                        extra={"hook": name, "reason": reason})


async def prepare_schema(settings: Settings, *, migrate: bool) -> None:
    """Apply the store's pending migrations, or (not `migrate`) refuse a database that has
    some with a StoreError naming `relayhook migrate`; a newer schema is refused either way."""
    from relayhook.assembly import open_settings_store

    store = open_settings_store(settings)
    try:
        await store.open(migrate=migrate)
    finally:
        await store.close()


async def _live_config(settings: Settings) -> LiveConfig:
    """Relays and hooks as the server will start with them: the config's and the store's,
    and which hooks stay inactive (a 410, the API) across this restart."""
    from relayhook.assembly import running

    async with running(settings) as parts:
        return parts.live


def console_login_hint(settings: Settings, password: str | None) -> str:
    """Where the console is and how to sign in: the password itself when it was just made
    (shown this once: only its argon2 hash is kept)."""
    if password is not None:
        return (f"Console: {settings.public_url()}/\nConsole password (shown once; `relayhook "
                f"admin password` sets another): {password}")
    return (f"Console: {settings.public_url()}/ - sign in with the admin password "
            "(`relayhook admin password` sets a new one).")


def banner(settings: Settings, live: LiveConfig, *, wrote_config: bool,
           console: str | None = None) -> str:
    """What `serve` prints before it starts: where it is, where its credentials are, what to
    paste where for each relay, and what to do next."""
    config = settings.config_file or DEFAULT_CONFIG
    lines = [f"Relayhook on {settings.public_url()}, store {settings.storage.url}"]
    if settings.server.public_url:
        lines.append(f"Relay URLs start with {settings.public_url()} ([server] public_url).")
    else:
        lines.append(f"Relay URLs start with {settings.public_url()}: providers on the internet "
                     f"cannot reach that. Set [server] public_url in {config} (or "
                     "RELAYHOOK_SERVER__PUBLIC_URL) to the https address they reach this "
                     "server at.")
    lines.append(_admin_line(settings, config, wrote_config))
    if console is not None:
        lines.append(console)
    lines += _hook_lines(live, config)
    for relay in live.relays.values():
        url = settings.public_url() + "/in/" + relay.token
        # Secrets are printed once, when they were just made up; after that they stay in the
        # config file and out of service logs.
        secret = relay.secret if wrote_config else f"(the secret of relay {relay.name!r})"
        setup = relay.connector.setup.render({"relay_url": url, "secret": secret})
        lines.append(f"\n== relay {relay.name} ({relay.connector.spec.title}) ==\n"
                     f"Relay URL: {url}\n{setup}")
    return "\n".join(lines)


def _admin_line(settings: Settings, config: Path | str, wrote_config: bool) -> str:
    if not settings.admin.token:
        return f"Admin API: off ([admin] token in {config} is empty)."
    if wrote_config:
        return (f"Admin API token (shown once; it is [admin] token in {config}): "
                f"{settings.admin.token}")
    where = ("RELAYHOOK_ADMIN__TOKEN" if os.environ.get("RELAYHOOK_ADMIN__TOKEN")
             else f"[admin] token in {config}")
    return f"Admin API token: {where} (send it as Authorization: Bearer <token>)."


def _example_type(live: LiveConfig) -> str:
    """A type a relay's connector emits as its first rule says it (a fine first hook)."""
    for relay in live.relays.values():
        first = next((rule.type for rule in relay.connector.spec.events if rule.type), None)
        if first is not None and first in emitted_types(relay.connector)[0]:
            return first
    return "*"


def _hook_lines(live: LiveConfig, config: Path | str) -> list[str]:
    if not live.hooks:
        example = _example_type(live)
        return [
            f"No hooks yet: nothing is sent anywhere. Add one to {config} and restart:",
            f'  [[hooks]]\n  name   = "My first hook"\n  events = ["{example}"]\n'
            '  url    = "https://hooks.zapier.com/hooks/catch/123/abc/"   # your catch URL',
            '  then try it: relayhook send-test "My first hook"  (or POST /api/hooks)',
        ]
    active = live.active()
    lines = [f"Hooks: {len(live.hooks)}, {sum(active.values())} active."]
    for name in live.hooks:
        if not active.get(name, True):
            reason = live.reason(name) or "inactive"
            todo = ("set active = true in the config" if reason == CONFIG_INACTIVE
                    else f"POST /api/hooks/{name}/activate")
            lines.append(f"  inactive: {name!r}: {reason}; it stays inactive across restarts "
                         f"until you {todo}.")
    return lines


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
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                       help="default: [log] level (info)")
    serve.add_argument("--no-access-log", dest="access_log", action="store_false")
    serve.add_argument("--accept-findings", action="store_true",
                       help="start even when `relayhook check` finds errors (each is logged at"
                       " WARNING): hooks that would fail, fail at run time")
    serve.set_defaults(func=cmd_serve)

