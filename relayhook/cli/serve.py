"""`relayhook serve`: assemble the parts once, open the store once, print what to paste where,
run the role's tasks (relayhook.runtime) and, for the web roles, the HTTP server."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from relayhook.cli.common import add_config_flag, settings_of
from relayhook.core.connectors import SHIPPED_DIR, emitted_types
from relayhook.live import CONFIG_INACTIVE, LiveConfig
from relayhook.settings import DEFAULT_CONFIG, Settings, sample_config

if TYPE_CHECKING:
    from relayhook.assembly import Parts
    from relayhook.core.diagnostics import Finding
    from relayhook.runtime import Runtime

log = logging.getLogger("relayhook.serve")


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    from relayhook.assembly import assemble
    from relayhook.logs import Redactor, configure_logging

    wrote_config = args.config is None and not Path(DEFAULT_CONFIG).exists()
    if wrote_config:
        shipped = sorted(p.stem for p in SHIPPED_DIR.glob("*.toml"))
        address = {"host": args.host, "port": args.port}
        Path(DEFAULT_CONFIG).write_text(
            sample_config(
                shipped, **{key: value for key, value in address.items() if value is not None}
            ),
            encoding="utf-8",
        )
        print(
            f"No config given: wrote {DEFAULT_CONFIG} with a sample relay per connector.", file=out
        )
    server: dict[str, Any] = {}
    if args.host is not None:
        server["host"] = args.host
    if args.port is not None:
        server["port"] = args.port
    overrides: dict[str, Any] = {"server": server} if server else {}
    if args.metrics_port is not None:
        overrides["worker"] = {"metrics_port": args.metrics_port}
    settings = settings_of(args, **overrides)
    # Assembled once, for this role: a config mistake stops the start here, as file:key:line.
    parts = assemble(settings, role=args.role)
    level = args.log_level or settings.log.level
    redact = Redactor.from_settings(settings, parts.live.relays.values(), parts.live.hooks.values())
    configure_logging(level=level, fmt=settings.log.format, redact=redact)
    redact.follow(parts.live)  # and the relays and hooks made at run time
    if parts.new_key_file is not None:
        print(
            f"Made the key that seals secrets at rest: {parts.new_key_file} (mode 0600). Back"
            " it up with the database: without it, relays and hooks created at run time cannot"
            " be read. Or set RELAYHOOK_SECRET_KEY.",
            file=out,
        )
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(serve_parts(parts, args, out, wrote_config=wrote_config, level=level))


async def serve_parts(
    parts: Parts, args: argparse.Namespace, out: TextIO, *, wrote_config: bool, level: str
) -> int:
    """Open the store (once: migrating it, or refusing a database that is behind), check the
    config as `check` does (its errors stop the start), say what to paste where, start the
    role's tasks, then serve HTTP (web roles; a worker only with `[worker] metrics_port`) or
    wait for SIGTERM / SIGINT; stop the tasks, close the store. The exit code."""
    from relayhook.passwords import ensure_password
    from relayhook.runtime import Runtime

    settings = parts.settings
    runtime = Runtime(parts)
    try:
        await runtime.open(migrate=args.migrate)
        await parts.live.refresh(parts.store, force=True)
        if not start_allowed(await findings_of(parts), accept_errors=args.accept_findings):
            return 2
        console = None
        if parts.takes_requests:
            console = console_login_hint(settings, await ensure_password(parts.store, time.time()))
        print(
            banner(
                settings, parts.live, wrote_config=wrote_config, console=console, role=parts.role
            ),
            file=out,
        )
        log_inactive_hooks(parts.live)
        out.flush()
        # Everything loaded so far lives as long as the process: out of the collector's sight,
        # a full collection no longer walks it (those took 19-37 ms: the ingest p99 tail).
        gc.collect()
        gc.freeze()
        runtime.start()
        owner = f" (claims as {runtime.dispatcher.owner})" if runtime.dispatcher else ""
        log.info("relayhook serve --role %s: started%s", parts.role, owner)
        port = settings.server.port if parts.takes_requests else settings.worker.metrics_port
        if port is None:
            await _until_signalled()
        else:
            await _serve_http(runtime, args, level, port)
        return 0
    finally:
        try:
            await runtime.stop()
        finally:
            await runtime.close()


async def _serve_http(runtime: Runtime, args: argparse.Namespace, level: str, port: int) -> None:
    import uvicorn

    from relayhook.web.app import create_app  # serve alone runs the ASGI app
    from relayhook.web.slow import ConnectionLimits, guarded_protocol

    settings = runtime.parts.settings
    app = create_app(settings, role=args.role, runtime=runtime)
    limits = ConnectionLimits(
        header_timeout=settings.server.header_timeout,
        body_timeout=settings.server.body_timeout,
        max_connections=settings.server.max_connections,
        max_header_line_bytes=settings.limits.max_header_line_bytes,
        max_header_bytes=settings.limits.max_header_bytes,
        max_header_fields=settings.limits.max_header_fields,
    )
    # log_config=None: uvicorn keeps the handler configure_logging set (format, redaction).
    # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told: it is told our list, and to
    # read no proxy header at all when the list is empty (relayhook.core.clients).
    proxies = settings.server.forwarded_allow_ips
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=port,
        log_config=None,
        log_level=level,
        access_log=args.access_log,
        http=guarded_protocol(limits),
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )
    # uvicorn raises the signal that stopped it again once it has stopped; with a handler of
    # ours in place, that ends nothing: the runtime's tasks still stop (and the store closes).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, frame: None)
    await uvicorn.Server(config).serve()


async def _until_signalled() -> None:
    """Wait for SIGTERM or SIGINT (a worker with no port)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("relayhook serve: stopping")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (as uvicorn picks it), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def findings_of(parts: Parts) -> list[Finding]:
    """What `relayhook check` finds (relayhook.diagnostics), with the open store's traffic
    and hooks."""
    from relayhook.cli.authoring import config_findings
    from relayhook.diagnostics import read_traffic

    traffic = await read_traffic(parts.store)
    return config_findings(parts.settings, traffic, dict(parts.live.hooks))


def start_allowed(findings: list[Finding], *, accept_errors: bool = False) -> bool:
    """`serve` is as strict as `check`: an error stops it with check's message on stderr; each
    warning is logged once at WARNING and the server starts. `accept_errors`
    (`--accept-findings`, the config file's "Save anyway") logs the errors at WARNING too and
    starts."""
    errors = [f for f in findings if f.level == "error"]
    if not accept_errors:
        for finding in errors:
            print(finding, file=sys.stderr)
    if errors and not accept_errors:
        print(
            f"Not starting: {len(errors)} error(s) in the configuration (what `relayhook "
            "check` prints); fix them, then start again.",
            file=sys.stderr,
        )
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
            log.warning(
                "hook %r is inactive: %s; its deliveries wait, paused",
                name,
                reason,
                extra={"hook": name, "reason": reason},
            )


def console_login_hint(settings: Settings, password: str | None) -> str:
    """Where the console is and how to sign in: the password itself when it was just made
    (shown this once: only its argon2 hash is kept)."""
    if password is not None:
        return (
            f"Console: {settings.public_url()}/\nConsole password (shown once; `relayhook "
            f"admin password` sets another): {password}"
        )
    return (
        f"Console: {settings.public_url()}/ - sign in with the admin password "
        "(`relayhook admin password` sets a new one)."
    )


def banner(
    settings: Settings,
    live: LiveConfig,
    *,
    wrote_config: bool,
    console: str | None = None,
    role: str | None = "all",
) -> str:
    """What `serve` prints before it starts: where it is, where its credentials are, what to
    paste where for each relay, and what to do next (a worker: what it sends, where it
    answers health checks)."""
    config = settings.config_file or DEFAULT_CONFIG
    if role == "worker":
        return "\n".join(
            [
                f"Relayhook worker: sends the deliveries of store {settings.storage.shown_url()}.",
                _worker_port_line(settings, config),
                *_hook_lines(live, config, settings.public_url()),
            ]
        )
    lines = [f"Relayhook on {settings.public_url()}, store {settings.storage.shown_url()}"]
    if settings.server.public_url:
        lines.append(f"Relay URLs start with {settings.public_url()} ([server] public_url).")
    else:
        lines.append(
            f"Relay URLs start with {settings.public_url()}: providers on the internet "
            f"cannot reach that. Set [server] public_url in {config} (or "
            "RELAYHOOK_SERVER__PUBLIC_URL) to the https address they reach this "
            "server at."
        )
    lines.append(_admin_line(settings, config, wrote_config))
    if console is not None:
        lines.append(console)
    lines += _hook_lines(live, config, settings.public_url())
    for relay in live.relays.values():
        url = settings.public_url() + "/in/" + relay.token
        # Secrets are printed once, when they were just made up; after that they stay in the
        # config file and out of service logs.
        secret = relay.secret if wrote_config else f"(the secret of relay {relay.name!r})"
        setup = relay.connector.setup.render({"relay_url": url, "secret": secret})
        lines.append(
            f"\n== relay {relay.name} ({relay.connector.spec.title}) ==\nRelay URL: {url}\n{setup}"
        )
    return "\n".join(lines)


def _worker_port_line(settings: Settings, config: Path | str) -> str:
    port = settings.worker.metrics_port
    if port is None:
        return (
            f"No port open (no admin API, no console). For /healthz, /readyz and /metrics"
            f" set [worker] metrics_port in {config} or pass --metrics-port."
        )
    return (
        f"Health and metrics: http://{settings.server.host}:{port}/healthz, /readyz,"
        " /metrics (no admin API, no console)."
    )


def _admin_line(settings: Settings, config: Path | str, wrote_config: bool) -> str:
    if not settings.admin.token:
        return f"Admin API: off ([admin] token in {config} is empty)."
    if wrote_config:
        return (
            f"Admin API token (shown once; it is [admin] token in {config}): {settings.admin.token}"
        )
    where = (
        "RELAYHOOK_ADMIN__TOKEN"
        if os.environ.get("RELAYHOOK_ADMIN__TOKEN")
        else f"[admin] token in {config}"
    )
    return f"Admin API token: {where} (send it as Authorization: Bearer <token>)."


def _example_type(live: LiveConfig) -> str:
    """A type a relay's connector emits as its first rule says it (a fine first hook)."""
    for relay in live.relays.values():
        first = next((rule.type for rule in relay.connector.spec.events if rule.type), None)
        if first is not None and first in emitted_types(relay.connector)[0]:
            return first
    return "*"


def _hook_lines(live: LiveConfig, config: Path | str, console_url: str) -> list[str]:
    if not live.hooks:
        example = _example_type(live)
        return [
            f"No hooks yet: nothing is sent anywhere. Make one in the console: "
            f"{console_url}/hooks/new (Hooks > New hook; it takes effect at once).",
            f"Or add one to {config} and restart:",
            f'  [[hooks]]\n  name   = "My first hook"\n  events = ["{example}"]\n'
            '  url    = "https://hooks.zapier.com/hooks/catch/123/abc/"   # your catch URL',
            '  then try it: relayhook send-test "My first hook"  (or POST /api/hooks)',
        ]
    active = live.active()
    lines = [f"Hooks: {len(live.hooks)}, {sum(active.values())} active."]
    for name in live.hooks:
        if not active.get(name, True):
            reason = live.reason(name) or "inactive"
            todo = (
                "set active = true in the config"
                if reason == CONFIG_INACTIVE
                else f"POST /api/hooks/{name}/activate"
            )
            lines.append(
                f"  inactive: {name!r}: {reason}; it stays inactive across restarts "
                f"until you {todo}."
            )
    return lines


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the relay server")
    add_config_flag(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--role",
        choices=["all", "web", "worker"],
        default="all",
        help="web: take requests (ingress, API, console); worker: send "
        "deliveries (no port, unless --metrics-port); all: both",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        help="--role worker: answer /healthz, /readyz and /metrics on this port"
        " ([worker] metrics_port)",
    )
    serve.add_argument(
        "--no-migrate",
        dest="migrate",
        action="store_false",
        help="refuse to start on a database with migrations pending, rather than"
        " apply them (then run `relayhook migrate` first)",
    )
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="default: [log] level (info)",
    )
    serve.add_argument("--no-access-log", dest="access_log", action="store_false")
    serve.add_argument(
        "--accept-findings",
        action="store_true",
        help="start even when `relayhook check` finds errors (each is logged at"
        " WARNING): hooks that would fail, fail at run time",
    )
    serve.set_defaults(func=cmd_serve)
