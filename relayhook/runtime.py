"""The process's background tasks, started from the assembled parts, each one supervised.

    parts = assemble(settings, role="worker")
    runtime = Runtime(parts)
    async with runtime.running():       # the store opened once, the tasks started, then stopped
        ...                              # serve HTTP (web roles), or wait for a signal

By role: `worker` and `all` run the dispatcher, the alerter (when `[alerts]` has a channel) and
the pruner (`[retention] interval`); `web` and `all` drain the spool; `web` alone follows the
changes other processes make (a worker's dispatcher already does).

Every task runs under a `Supervisor`: an exception is logged with its traceback at ERROR,
counted (`relayhook_task_failures_total{task=...}`) and the task started again after a backoff
(0.5 s, doubling to 30 s; back to 0.5 s after a minute of running well). A task that reports
progress (the dispatcher's claim rounds) and makes none for `[worker] stalled_after` seconds is
cancelled and started again the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from relayhook.assembly import Parts, prune_now, refuse_destinations, spool_path, utc_now
from relayhook.core.ssrf import Resolver
from relayhook.delivery.alerts import Alerter, alert_channels
from relayhook.delivery.dispatcher import Dispatcher
from relayhook.delivery.http import make_http_transport
from relayhook.delivery.watch import QuietWatch
from relayhook.intake import SpoolDrainer
from relayhook.readiness import MIB, Readiness, free_bytes
from relayhook.settings import RetentionSettings
from relayhook.store import PruneResult, Store, StoreError, sqlite_path
from relayhook.tracing import stop_tracing

log = logging.getLogger("relayhook.runtime")

FOLLOW_INTERVAL = 0.5  # seconds: a change made in another process shows here within this
BACKOFF_MIN = 0.5
BACKOFF_MAX = 30.0
HEALTHY_AFTER = 60.0  # a task that ran this long before it failed starts again at BACKOFF_MIN
CHECK_EVERY = 1.0  # seconds between two looks at a task's progress


class TaskStalledError(Exception):
    """A supervised task made no progress for too long; it was cancelled."""


@dataclass
class Supervisor:
    """Runs tasks and starts each again when it fails, ends or stalls. `failed(name)` is told
    of every such end (metrics count them); `sleep` and `clock` are injected in tests."""

    failed: Callable[[str], None] = lambda name: None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    backoff_min: float = BACKOFF_MIN
    backoff_max: float = BACKOFF_MAX
    healthy_after: float = HEALTHY_AFTER
    check_every: float = CHECK_EVERY
    _watchers: dict[str, asyncio.Task[None]] = field(default_factory=dict, init=False)
    _stopping: bool = field(default=False, init=False)

    def start(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        *,
        progress: Callable[[], int] | None = None,
        stalled_after: float = 0.0,
    ) -> None:
        """Run `run()` as the task `name`, started again whenever it ends. With `progress` (a
        counter the task moves as it works), a task whose counter stays still for
        `stalled_after` seconds is cancelled and started again too."""
        if name in self._watchers:
            raise ValueError(f"a task named {name!r} runs already")
        self._watchers[name] = asyncio.create_task(
            self._watch(name, run, progress, stalled_after), name=f"relayhook {name}"
        )

    def stopping(self) -> None:
        """From now on a task that ends is not started again (it is being stopped)."""
        self._stopping = True

    async def stop(self) -> None:
        """Cancel every task (after `stopping()`, those that end by themselves end well)."""
        self._stopping = True
        watchers, self._watchers = list(self._watchers.values()), {}
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)

    async def _watch(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        progress: Callable[[], int] | None,
        stalled_after: float,
    ) -> None:
        delay = self.backoff_min
        while not self._stopping:
            started = self.clock()
            log.debug("%s: running", name, extra={"task": name})
            try:
                await self._run_once(run, progress, stalled_after)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    return
                if self.clock() - started >= self.healthy_after:
                    delay = self.backoff_min
                if isinstance(exc, TaskStalledError):
                    log.error("%s: %s; cancelled, starting it again in %g s", name, exc, delay)
                else:
                    log.exception(
                        "%s failed; starting it again in %g s", name, delay, extra={"task": name}
                    )
            else:
                if self._stopping:
                    return
                log.error(
                    "%s ended by itself; starting it again in %g s",
                    name,
                    delay,
                    extra={"task": name},
                )
            self._tell(name)
            await self.sleep(delay)
            delay = min(self.backoff_max, delay * 2)

    async def _run_once(
        self,
        run: Callable[[], Awaitable[None]],
        progress: Callable[[], int] | None,
        stalled_after: float,
    ) -> None:
        task = asyncio.ensure_future(run())
        try:
            if progress is None or stalled_after <= 0:
                await task
                return
            seen, since = progress(), self.clock()
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.check_every)
                if done:
                    return task.result()
                now, current = self.clock(), progress()
                if current != seen:
                    seen, since = current, now
                elif now - since >= stalled_after:
                    raise TaskStalledError(f"no progress for {now - since:.0f} s")
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _tell(self, name: str) -> None:
        try:
            self.failed(name)
        except Exception:  # counting must never stop the supervision
            log.exception("cannot count the failure of %s", name)


class Runtime:
    """The background tasks of one process, from `parts` (see the module's docstring).
    Collaborators are arguments: tests pass a mock transport, a fixed clock, a fast sleep."""

    def __init__(
        self,
        parts: Parts,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
        clock: Callable[[], datetime] = utc_now,
        rand: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        disk_free: Callable[[Path], int] = free_bytes,
    ) -> None:
        self.parts = parts
        self.resolver = resolver
        self.clock = clock
        settings = parts.settings
        self.supervisor = Supervisor(
            failed=parts.metrics.observe_task_failure, sleep=sleep, clock=monotonic
        )
        self._own_transport = transport is None and parts.delivers
        self.transport = transport
        self.dispatcher: Dispatcher | None = None
        if parts.delivers:
            self.transport = transport or make_http_transport(
                parts.policy, resolver=resolver, max_connections=settings.delivery.max_connections
            )
            self.dispatcher = Dispatcher(
                parts.store,
                parts.live,
                self.transport,
                settings.template_secrets(),
                clock=lambda: clock().timestamp(),
                rand=rand or random.Random(),
                lease_seconds=settings.delivery.lease_seconds,
                poll_interval=settings.delivery.poll_interval,
                report=parts.metrics.observe_delivery,
                disable_after=settings.alerts.disable_after,
                store_deadline=settings.worker.store_deadline,
                tracing=parts.tracing,
            )
        dispatcher = self.dispatcher
        self.readiness = Readiness(
            parts.store,
            spool_depth=parts.metrics.spool_depth_now,
            clock=monotonic,
            rounds=(lambda: dispatcher.rounds) if dispatcher is not None else None,
            stalled_after=settings.worker.stalled_after,
            disk_paths=disk_paths(parts),
            min_free_bytes=int(settings.storage.min_free_mb * MIB),
            disk_free=disk_free,
        )
        self._opened: tuple[bool, bool] = (False, False)  # (the store, the spool) by us

    async def open(self, *, migrate: bool = True, open_store: bool = True) -> None:
        """What must hold before the tasks start: the config's fixed destinations allowed,
        the store open (unless its owner opens it: `open_store` False) and migrated (unless
        not `migrate`), the config's hooks synced into it, the spool open (web roles)."""
        parts = self.parts
        await refuse_destinations(parts.settings, parts.live.hooks, parts.policy, self.resolver)
        if open_store:
            await parts.store.open(migrate=migrate)
        self._opened = (open_store, False)
        await parts.live.sync(parts.store, self.clock().timestamp())
        if parts.spool is not None:  # what a crash left in it is stored from now on
            parts.spool.open()
            self._opened = (open_store, True)

    def start(self) -> None:
        """Start the role's tasks, each supervised."""
        parts, supervisor = self.parts, self.supervisor
        if parts.spool is not None:
            drainer = SpoolDrainer(parts.intake, parts.spool, parts.live.relay_named)
            parts.spooled.connect(drainer.wake)
            supervisor.start("spool drainer", drainer.run)
        if parts.shapes is not None:
            supervisor.start("shape watch", parts.shapes.run)
        if self.dispatcher is None:  # the dispatcher keeps a worker's copy fresh
            supervisor.start("config follower", lambda: follow_changes(parts))
            return
        dispatcher = self.dispatcher
        parts.store.subscribe(dispatcher.notice)
        parts.due.connect(dispatcher.wake)
        settings = parts.settings
        # A round waits at most a poll interval, then one store call per hook at a time.
        stalled_after = max(
            settings.worker.stalled_after,
            2 * settings.delivery.poll_interval + settings.worker.store_deadline,
        )
        supervisor.start(
            "dispatcher",
            dispatcher.run,
            progress=lambda: dispatcher.beats,
            stalled_after=stalled_after,
        )
        assert self.transport is not None
        channels = alert_channels(settings.alerts, self.transport, settings.server.public_url)
        if channels:
            alerter = Alerter(parts.store, channels, settings.alerts.interval)
            supervisor.start("alerter", alerter.run)
        if settings.watch.interval > 0:
            watch = QuietWatch(
                parts.store,
                lambda: parts.live.relays.values(),
                settings.watch,
                clock=lambda: self.clock().timestamp(),
            )
            supervisor.start("quiet watch", watch.run)
        if settings.retention.interval > 0:
            supervisor.start(
                "pruner", lambda: prune_periodically(parts.store, settings.retention, self.clock)
            )

    async def stop(self) -> None:
        """Stop the tasks: deliveries in flight get a grace period (see Dispatcher.stop)."""
        self.supervisor.stopping()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        await self.supervisor.stop()
        if self._own_transport and self.transport is not None:
            await self.transport.aclose()
        await self.parts.operations.aclose()
        if self.parts.tracing is not None:
            await asyncio.to_thread(stop_tracing, self.parts.tracing)

    async def close(self) -> None:
        """Close what `open` opened."""
        store_opened, spool_opened = self._opened
        self._opened = (False, False)
        try:
            if store_opened:
                await self.parts.store.close()
        finally:
            if spool_opened and self.parts.spool is not None:
                self.parts.spool.close()

    @contextlib.asynccontextmanager
    async def running(
        self, *, migrate: bool = True, open_store: bool = True
    ) -> AsyncIterator[Runtime]:
        """`open`, `start`; at the end `stop` and `close`."""
        try:
            await self.open(migrate=migrate, open_store=open_store)
            self.start()
            yield self
        finally:
            try:
                await self.stop()
            finally:
                await self.close()


def disk_paths(parts: Parts) -> list[Path]:
    """Where this process writes to disk: the SQLite database and the spool (web roles)."""
    paths: list[Path] = []
    settings = parts.settings
    with contextlib.suppress(ValueError):  # not SQLite: the database's disk is not ours
        paths.append(sqlite_path(settings.storage.url, base_dir=settings.config_dir))
    if parts.spool is not None:
        paths.append(spool_path(settings))
    return paths


async def follow_changes(parts: Parts, interval: float = FOLLOW_INTERVAL) -> None:
    """Apply what another process changed (a relay created, a hook edited, a 410 seen by a
    worker): at once when the store tells (PostgreSQL's NOTIFY), else by polling the config
    version every `interval`. A store failure is logged and tried again."""
    changed = asyncio.Event()
    parts.store.subscribe(lambda topic: changed.set() if topic == "config" else None)
    while True:
        changed.clear()
        try:
            await parts.live.refresh(parts.store)
        except StoreError as exc:
            log.error("cannot read the live configuration (trying again): %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), interval)


async def prune_periodically(
    store: Store,
    retention: RetentionSettings,
    clock: Callable[[], datetime],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Prune what `[retention]` lets go now, then every `interval` seconds, until cancelled.
    A failure is logged and tried again at the next round."""
    while True:
        try:
            result = await prune_now(store, retention, clock().timestamp())
        except StoreError as exc:
            log.error(
                "retention: the prune failed (tried again in %g s): %s", retention.interval, exc
            )
        else:
            if result != PruneResult():
                log.info(
                    "retention: pruned %d requests, %d events, %d deliveries, %d attempts",
                    result.requests,
                    result.events,
                    result.deliveries,
                    result.attempts,
                )
        await sleep(retention.interval)
