"""Whether this process can do its work now: what `/readyz` answers (web/ops.py), on the web
port or on a worker's `[worker] metrics_port`.

    readiness = Readiness(store, spool_depth=..., rounds=lambda: dispatcher.rounds, ...)
    await readiness.check()   # {} when ready, else {"dispatcher": "no claim round for 41 s
                              #  while 12 deliveries wait", ...}

The reasons name no path, version or error text (those go to the log): /readyz needs no token.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from relayhook.store import Store, StoreError

log = logging.getLogger("relayhook.readiness")

PROBE_SECONDS = 1.0  # a readiness probe waits this long for the store's write lock
SPOOL_STUCK_SECONDS = 60.0  # a spool that holds requests and has not shrunk for this long
STALLED_AFTER = 30.0  # a dispatcher with no claim round for this long, deliveries waiting
WAITING = ("pending", "failed", "claimed")  # deliveries not done that a dispatcher should see
MIB = 1024 * 1024


def free_bytes(path: Path) -> int:
    """The free space of the file system that holds `path` (or its nearest existing folder)."""
    for folder in (path, *path.parents):
        if folder.exists():
            return shutil.disk_usage(folder).free
    return shutil.disk_usage(".").free


@dataclass
class Readiness:
    """The checks of `/readyz`. One write probe at a time: a probe still waiting for the lock
    is shared by the checks that come meanwhile. `rounds` counts the dispatcher's claim rounds
    the store answered in full (None where this process dispatches nothing); `disk_paths` are
    the store's file and the spool, checked for `min_free_bytes` by `disk_free`."""

    store: Store
    spool_depth: Callable[[], int] = lambda: 0
    clock: Callable[[], float] = time.monotonic
    probe_seconds: float = PROBE_SECONDS
    stuck_seconds: float = SPOOL_STUCK_SECONDS
    rounds: Callable[[], int] | None = None
    stalled_after: float = STALLED_AFTER
    disk_paths: Sequence[Path] = ()
    min_free_bytes: int = 0
    disk_free: Callable[[Path], int] = free_bytes
    _probe: asyncio.Future[None] | None = field(default=None, init=False)
    _spool: tuple[int, float] = field(default=(0, 0.0), init=False)
    _rounds: tuple[int, float] | None = field(default=None, init=False)

    async def failing(self) -> list[str]:
        """The names of the failing checks: "store", "schema", "spool", "dispatcher", "disk";
        empty when ready."""
        return list(await self.check())

    async def check(self) -> dict[str, str]:
        """The failing checks, each with why, in words for the operator; empty when ready."""
        failing: dict[str, str] = {}
        if not await self._store_writes():
            failing["store"] = "the store takes no writes now"
        elif not await self._schema_current():
            failing["schema"] = "the store's schema is not this version's: relayhook migrate"
        spool = self._spool_stuck()
        if spool:
            failing["spool"] = spool
        dispatcher = await self._dispatcher_stalled()
        if dispatcher:
            failing["dispatcher"] = dispatcher
        disk = self._disk_short()
        if disk:
            failing["disk"] = disk
        return failing

    async def _store_writes(self) -> bool:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self.store.probe_write())
            self._probe.add_done_callback(_retrieve)
        try:
            await asyncio.wait_for(asyncio.shield(self._probe), self.probe_seconds)
        except (StoreError, TimeoutError) as exc:
            log.warning(
                "readiness: the store takes no writes now: %s",
                exc or f"no write lock within {self.probe_seconds:g} s",
            )
            return False
        return True

    async def _schema_current(self) -> bool:
        try:
            current = await self.store.schema_current()
        except StoreError as exc:
            log.warning("readiness: cannot read the schema version: %s", exc)
            return False
        if not current:
            log.warning("readiness: the store's schema is not this version's: relayhook migrate")
        return current

    def _spool_stuck(self) -> str | None:
        depth, now = self.spool_depth(), self.clock()
        last_depth, since = self._spool
        if depth == 0 or depth < last_depth or last_depth == 0:
            self._spool = (depth, now)  # empty, or shrinking, or just started to fill
            return None
        if depth > last_depth:
            self._spool = (depth, since)
        if now - since < self.stuck_seconds:
            return None
        reason = f"the spool has held {depth} requests for {now - since:.0f} s without draining"
        log.warning("readiness: %s", reason)
        return reason

    async def _dispatcher_stalled(self) -> str | None:
        """A reason when the dispatcher has made no claim round the store answered for
        `stalled_after` seconds while deliveries wait (or the store cannot say whether they
        do): it is dead, stuck, or every claim fails."""
        if self.rounds is None:
            return None
        rounds, now = self.rounds(), self.clock()
        if self._rounds is None or self._rounds[0] != rounds:
            self._rounds = (rounds, now)
            return None
        idle = now - self._rounds[1]
        if idle < self.stalled_after:
            return None
        try:
            async with asyncio.timeout(self.probe_seconds):
                backlog = await self.store.backlog()
        except (StoreError, TimeoutError) as exc:
            log.warning("readiness: cannot read the backlog: %s", exc or "no answer")
            waiting = "deliveries may wait (the store does not say)"
        else:
            count = sum(entry.count for entry in backlog if entry.status in WAITING)
            if not count:
                return None
            waiting = f"{count} deliveries wait"
        reason = f"the dispatcher has made no claim round for {idle:.0f} s while {waiting}"
        log.error("readiness: %s", reason)
        return reason

    def _disk_short(self) -> str | None:
        if not self.min_free_bytes:
            return None
        for path in self.disk_paths:
            try:
                free = self.disk_free(path)
            except OSError as exc:
                log.warning("readiness: cannot read the free space under %s: %s", path, exc)
                continue
            if free < self.min_free_bytes:
                log.error(
                    "readiness: %d MiB free under %s, less than the %d MiB needed",
                    free // MIB,
                    path,
                    self.min_free_bytes // MIB,
                )
                return (
                    f"less than {self.min_free_bytes // MIB} MiB free on the disk of the "
                    "store or the spool"
                )
        return None


def _retrieve(future: asyncio.Future[None]) -> None:
    """Take a finished probe's exception, so none is reported as never retrieved."""
    if not future.cancelled():
        future.exception()
