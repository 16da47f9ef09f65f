"""One assembly: settings -> the running parts (connectors, relays, hooks, the destination
policy, the store). The web app, the worker and every CLI command build from here; nothing here
imports the web app.

    settings = load_settings(path)
    connectors, relays = load_relays(settings)
    store = open_settings_store(settings)        # not yet opened: `await store.open()`
    parts = assemble(settings, role="all")       # all of it, for a process (relayhook.runtime)
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import httpx

from relayhook.core.connectors import SHIPPED_DIR, Connector, load_connectors
from relayhook.core.hooks import Hook, build_hooks
from relayhook.core.ssrf import DestinationPolicy, DestinationRefused, Resolver
from relayhook.core.tomlpos import format_path
from relayhook.delivery.destinations import SystemResolver, check_destination
from relayhook.errors import HookError, LocatedError, LocatedErrors
from relayhook.intake import Intake
from relayhook.live import LiveConfig, RunSettings
from relayhook.manage import Manager
from relayhook.metrics import Metrics
from relayhook.operations import Operations
from relayhook.relays import Relay, build_relays
from relayhook.retention import cutoffs_at
from relayhook.sealing import Sealer, read_or_create_key_file
from relayhook.settings import RetentionSettings, Settings
from relayhook.shapewatch import ShapeWatch
from relayhook.spool import Spool
from relayhook.store import PruneResult, Store, open_store, sqlite_path
from relayhook.store.base import MaintenanceStore
from relayhook.tracing import start_tracing

if TYPE_CHECKING:
    from relayhook.tracing import Tracing

log = logging.getLogger("relayhook")


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    """A UUIDv7: time-ordered, so new rows land at the end of the store's id indexes."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    h = f"{value:032x}"  # 6x faster than str(uuid.UUID(int=...)): 500 ids per GMetri batch
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def load_relays(settings: Settings) -> tuple[dict[str, Connector], dict[str, Relay]]:
    """The connectors (shipped, then the config's folders) and the relays bound to them."""
    connectors = load_connectors([SHIPPED_DIR, *settings.connector_dirs()])
    return connectors, build_relays(settings, connectors)


def load_hooks(settings: Settings) -> dict[str, Hook]:
    """The config's hooks, merged over their presets and compiled. Raises ConfigError."""
    return build_hooks(
        settings.hooks, str(settings.config_file or "(settings)"), locate=settings.line_of
    )


def destination_policy(settings: Settings) -> DestinationPolicy:
    try:
        return DestinationPolicy.from_config(
            allow_private_destinations=settings.delivery.allow_private_destinations,
            allow_cidrs=settings.delivery.allow_cidrs,
        )
    except ValueError as exc:
        raise settings.error_at(("delivery", "allow_cidrs"), str(exc)) from exc


async def check_destinations(
    hooks: Mapping[str, Hook], policy: DestinationPolicy, resolver: Resolver | None = None
) -> dict[str, str]:
    """Check each hook's fixed URL when it is saved (loaded); templated hosts are checked when
    sent. Returns the refusals by hook name; a name that does not resolve now is let through."""
    refusals: dict[str, str] = {}
    for hook in hooks.values():
        url = hook.url.source
        if not hook.url.is_constant:
            continue
        try:
            await check_destination(url, policy, resolver or SystemResolver())
        except DestinationRefused as exc:
            refusals[hook.name] = f"destination refused: {exc}"
        except OSError as exc:  # no DNS here now: checked again when sent
            # The host only: the URL may hold credentials or a token.
            log.warning(
                "hook %r: cannot resolve %s now (%s); checked when sent",
                hook.name,
                urlsplit(url).hostname,
                exc.strerror or type(exc).__name__,
            )
    return refusals


async def refuse_destinations(
    settings: Settings,
    hooks: Mapping[str, Hook],
    policy: DestinationPolicy,
    resolver: Resolver | None = None,
) -> None:
    """LocatedErrors, one HookError at `hooks[i].url` per config hook whose fixed URL is
    refused."""
    refusals = await check_destinations(hooks, policy, resolver)
    errors: list[LocatedError] = []
    for index, raw in enumerate(settings.hooks):
        message = refusals.get(str(raw.get("name")))
        if message is not None:
            path = ("hooks", index, "url")
            errors.append(
                HookError(
                    settings.config_file or "(settings)",
                    format_path(path),
                    settings.line_of(path),
                    f"hook {raw['name']!r}: {message}",
                )
            )
    if errors:
        raise LocatedErrors(errors)


async def prune_now(
    store: MaintenanceStore, retention: RetentionSettings, now: float
) -> PruneResult:
    """Delete what `[retention]` lets go at `now` (epoch seconds); what was deleted. The audit
    log has its own, longer `audit_days`."""
    result = await store.prune(
        cutoffs_at(now, days=retention.days, relays=retention.relays, hooks=retention.hooks)
    )
    if retention.audit_days > 0:
        before = now - retention.audit_days * 86400
        for _ in range(10_000):  # bounded: each batch deletes up to 500 lines
            if await store.prune_audit(before) < 500:
                break
    return result


@contextlib.asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[Store]:
    """The settings' store, opened for the block and closed after it (the CLI's way in)."""
    store = open_settings_store(settings)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def open_settings_store(settings: Settings) -> Store:
    """The store the settings name, not yet opened."""
    try:
        return open_store(
            settings.storage.url,
            base_dir=settings.config_dir,
            synchronous=settings.storage.synchronous,
            busy_timeout=settings.storage.busy_timeout,
        )
    except ValueError as exc:
        raise settings.error_at(("storage", "url"), str(exc)) from exc


def spool_path(settings: Settings) -> Path:
    """`[spool] path` (relative to the config file), by default beside the database:
    relayhook.db -> relayhook.spool."""
    if settings.spool.path:
        return settings.config_dir / settings.spool.path
    try:
        database = sqlite_path(settings.storage.url, base_dir=settings.config_dir)
    except ValueError:
        return settings.config_dir / "relayhook.spool"
    path = database.with_suffix(".spool")
    return path if path != database else database.with_name(database.name + ".spool")


def key_file(settings: Settings) -> Path:
    """Where the generated key lives when none is configured: beside the SQLite database
    (`relayhook.db.key`), or beside the config for another engine."""
    scheme, _, rest = settings.storage.url.partition("://")
    if scheme.lower() == "sqlite" and rest.startswith("/") and rest != "/":
        path = Path(rest[1:])
        path = path if path.is_absolute() else settings.config_dir / path
        return path.with_name(path.name + ".key")
    return settings.config_dir / "relayhook.key"


def load_sealer(settings: Settings) -> tuple[Sealer, Path | None]:
    """The sealer of secrets at rest, and the key file's path if it was made just now. A
    configured key (with the previous one, during a rotation) or the key file's ring, which
    the sealer reads again when `relayhook keys rotate` changes it."""
    keys = settings.sealing_keys()
    if keys:
        try:
            return Sealer.from_keys(keys), None
        except ValueError as exc:
            raise settings.error_at(("secrets", "key"), str(exc)) from exc
    path = key_file(settings)
    _, created = read_or_create_key_file(path)
    try:
        return Sealer.from_key_file(path), path if created else None
    except ValueError as exc:
        raise settings.error_at(("secrets", "key"), f"{path}: {exc}") from exc


Role = Literal["web", "worker", "all"]


class Signal:
    """Something happened (deliveries became due, a request was spooled): `fire()` calls
    whoever `connect`ed. The web side fires; the runtime connects its tasks when it starts them,
    so the parts need no change after assembly."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []

    def connect(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def fire(self) -> None:
        for callback in self._callbacks:
            callback()


@dataclass(frozen=True)
class Parts:
    """The running parts, built from the settings by `assemble` and never changed after it
    (the app keeps them on `app.state.relayhook`; the runtime starts its tasks from them; the
    CLI uses them without a server)."""

    settings: Settings
    connectors: dict[str, Connector]
    live: LiveConfig
    store: Store
    manager: Manager
    policy: DestinationPolicy
    intake: Intake
    metrics: Metrics
    operations: Operations  # actions on records (replay, test sends, samples...)
    new_key_file: Path | None = None
    role: Role | None = None  # None: a CLI command, no process role
    spool: Spool | None = None  # web roles: `spool.depth` requests wait for the store
    due: Signal = field(default_factory=Signal)  # new deliveries may be due: look now
    spooled: Signal = field(default_factory=Signal)  # a request waits in the spool
    shapes: ShapeWatch | None = None  # web roles with [watch] shapes: payload shapes seen
    tracing: Tracing | None = None  # [tracing] on: the spans' tracer (relayhook.tracing)

    def wake(self) -> None:
        self.due.fire()

    @property
    def takes_requests(self) -> bool:
        return self.role in ("web", "all")

    @property
    def delivers(self) -> bool:
        return self.role in ("worker", "all")


def assemble(
    settings: Settings,
    *,
    role: Role | None = None,
    store: Store | None = None,
    resolver: Resolver | None = None,
    clock: Callable[[], float] = time.time,
    transport: httpx.AsyncBaseTransport | None = None,
    new_id: Callable[[], str] = new_uuid,
    span_exporter: Any = None,
) -> Parts:
    """Settings -> connectors, config relays and hooks, the live configuration over them, the
    destination policy, the store (not opened), the manager that changes the configuration,
    the operations on records (a test send goes through `transport` when one is given), the
    intake of requests and the metrics; for the web roles (`role` "web" or "all") the spool."""
    connectors, relays = load_relays(settings)
    hooks = load_hooks(settings)  # before a key file is made: a config mistake makes none
    sealer, new_key = load_sealer(settings)
    live = LiveConfig(hooks, relays, connectors=connectors, sealer=sealer)
    the_store = store if store is not None else open_settings_store(settings)
    policy = destination_policy(settings)
    manager = Manager(
        the_store,
        live,
        connectors,
        public_url=settings.public_url(),
        policy=policy,
        resolver=resolver,
        clock=clock,
        secrets=settings.template_secrets(),
    )
    live.follow_settings(lambda run: follow_run_settings(run, settings, policy, manager))
    spool = Spool(spool_path(settings)) if role in ("web", "all") else None
    metrics = Metrics(spool_depth=(lambda: spool.depth) if spool is not None else lambda: 0)
    due, spooled = Signal(), Signal()
    shapes = (
        ShapeWatch(the_store, live, clock=clock)
        if role in ("web", "all") and settings.watch.shapes
        else None
    )
    intake = Intake(
        the_store,
        live,
        new_id,
        spool=spool,
        store_timeout=settings.spool.store_timeout,
        wake=due.fire,
        spooled=spooled.fire,
        stored=metrics.observe_stored,
        secrets=settings.template_secrets(),
        explain=settings.outcomes.record,
        render_seconds=settings.limits.render_seconds,
    )
    if shapes is not None:
        intake.observe = shapes.note
    # [tracing] on (relayhook[otel]), for a process: `span_exporter` is where spans go instead
    # of OTLP (tests).
    tracing = start_tracing(settings, span_exporter) if role is not None else None
    intake.tracing = tracing
    operations = Operations(
        the_store,
        live,
        connectors,
        policy=policy,
        secrets=settings.template_secrets(),
        new_id=new_id,
        wake=due.fire,
        transport=transport,
        resolver=resolver,
        clock=clock,
    )
    return Parts(
        settings,
        connectors,
        live,
        the_store,
        manager,
        policy,
        intake,
        metrics,
        operations,
        new_key,
        role,
        spool,
        due,
        spooled,
        shapes,
        tracing,
    )


def follow_run_settings(
    run: RunSettings, settings: Settings, policy: DestinationPolicy, manager: Manager
) -> None:
    """Apply the console's run-time settings in this process: the networks hooks may reach
    besides the config's, and the public URL relay URLs start with."""
    policy.widen(run.allow_cidrs)
    manager.public_url = (run.public_url or settings.public_url()).rstrip("/")


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Parts]:
    """The assembled parts with the store open and the live configuration read (no server):
    the CLI's way to change relays and hooks. A running server sees the change within a
    second."""
    parts = assemble(settings)
    await parts.store.open()
    try:
        await parts.live.refresh(parts.store, force=True)
        yield parts
    finally:
        await parts.operations.aclose()
        await parts.store.close()
