"""Payload shapes, kept off the hot path: the intake hands each stored request and its events
to `ShapeWatch.note` (an append to a bounded queue, nothing more); a background task learns
their shapes (relayhook.core.shapes), per relay and event type (`""`: the request body
itself, paths under `body.`, unless its events carry it whole, as the generic connector's
do), opens a relay problem for each change, naming the hooks and
connector rules that read the changed path, and saves the shapes every `flush_interval`.

When requests come faster than the task learns them, the queue keeps the newest QUEUE and
the oldest are skipped: shapes are a sample then, never a brake on ingest.

    watch = ShapeWatch(store, live, clock=time.time)
    intake.observe = watch.note
    task = asyncio.create_task(watch.run())
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from relayhook.core.events import Event
from relayhook.core.shapes import (
    ITEMS,
    Change,
    Shape,
    body_names,
    event_names,
    json_type,
    observe,
    paths_of,
    reads,
    recount,
    template_strings,
)
from relayhook.live import LiveConfig
from relayhook.store import RequestRecord, Store, StoreError

log = logging.getLogger("relayhook.shapewatch")
QUEUE = 200  # requests waiting to be learned (their parsed bodies held meanwhile)
BODY = ""  # the event type key of the request body's own shape


def event_paths(
    events: Sequence[Event], body: Any = None, body_paths: dict[str, str] | None = None
) -> dict[str, dict[str, str]]:
    """Per event type, the union of the paths of its first ITEMS events. An event whose data
    is the request body itself (the generic connector's) reuses `body_paths` (under `body`)."""
    by_type: dict[str, dict[str, str]] = {}
    counts: dict[str, int] = {}
    for event in events:
        seen = counts.get(event.type, 0)
        if seen >= ITEMS:
            continue
        counts[event.type] = seen + 1
        found = by_type.setdefault(event.type, {})
        if found.get("subject", "null") == "null":
            found["subject"] = json_type(event.subject)
        if found.get("data", "null") == "null":
            found["data"] = json_type(event.data)
        if body_paths is not None and event.data is body and not seen:
            found.update({f"data{path[4:]}": kind for path, kind in body_paths.items()})
        else:
            paths_of(event.data, "data", found)
    return by_type


@dataclass
class ShapeWatch:
    store: Store
    live: LiveConfig
    clock: Callable[[], float]
    flush_interval: float = 5.0
    queue: deque[tuple[RequestRecord, Sequence[Event], Any]] = field(
        default_factory=lambda: deque(maxlen=QUEUE)
    )
    shapes: dict[tuple[str, str], Shape] = field(default_factory=dict)
    opened: dict[tuple[str, str], tuple[str, Change]] = field(default_factory=dict)
    _loaded: set[str] = field(default_factory=set)
    _dirty: set[tuple[str, str]] = field(default_factory=set)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def note(self, record: RequestRecord, events: Sequence[Event], body: Any = None) -> None:
        """A stored request, its events and its body as the mapping parsed it (None: parse it
        again). The hot path: one append."""
        if record.status == "accepted" and not record.truncated:
            self.queue.append((record, events, body))
            self._wake.set()

    async def run(self) -> None:
        """Learn what is noted until cancelled; save the shapes every `flush_interval`."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.drain()
                await self.flush()
            except StoreError as exc:
                log.error("payload shapes: the store failed: %s", exc)

    async def drain(self, limit: int = QUEUE) -> int:
        """Learn up to `limit` noted requests; how many."""
        done = 0
        while self.queue and done < limit:
            record, events, body = self.queue.popleft()
            await self.learn(record, events, body)
            done += 1
            if done % 50 == 0:
                await asyncio.sleep(0)  # let the ingress answer in between
        return done

    async def learn(
        self, record: RequestRecord, events: Sequence[Event], body: Any = None
    ) -> list[Change]:
        """Learn one request's shapes; open a problem per change (returned)."""
        await self._load(record.relay)
        found: dict[str, dict[str, str]] = {}
        try:
            parsed = orjson.loads(record.body) if body is None else body
            found[BODY] = paths_of(parsed, "body")
        except orjson.JSONDecodeError:
            pass  # not JSON: its body has no shape to keep, its events still do
        found.update(event_paths(events, body, found.get(BODY)))
        if body is not None and events and all(event.data is body for event in events):
            del found[BODY]  # its events carry the body whole: one shape, one problem per change
        changes = []
        for type_, paths in found.items():
            key = (record.relay, type_)
            shape = self.shapes.setdefault(key, Shape())
            self._dirty.add(key)
            for change in observe(shape, paths, record.id):
                changes.append(change)
                await self._open(record.relay, type_, change)
        return changes

    async def flush(self) -> None:
        """Save the shapes learned since the last flush; bring the open problems' counts ("12
        of the last 20") up to date."""
        now = self.clock()
        for key in sorted(self._dirty):
            await self.store.save_shape(
                key[0], key[1], json.dumps(self.shapes[key].to_json()), at=now
            )
        self._dirty.clear()
        for (relay, signature), (type_, change) in list(self.opened.items()):
            shape = self.shapes.get((relay, type_))
            if shape is None:
                continue
            counted = recount(shape, change)
            if counted.recent != change.recent or counted.window != change.window:
                self.opened[(relay, signature)] = (type_, counted)
                await self.store.open_relay_problem(
                    relay,
                    signature,
                    self.describe(relay, type_, counted),
                    at=now,
                    request=counted.request,
                )

    async def _open(self, relay: str, type_: str, change: Change) -> None:
        signature = f"{type_ or 'request'} {change.signature}"
        self.opened[(relay, signature)] = (type_, change)
        text = self.describe(relay, type_, change)
        if await self.store.open_relay_problem(
            relay, signature, text, at=self.clock(), request=change.request
        ):
            log.warning("relay %r: %s", relay, text)

    def describe(self, relay: str, type_: str, change: Change) -> str:
        """ "`data.score` is now a text in 12 of the last 20 payloads (was a number), in
        gmetri.rule.triggered events; read by hook 'Scores to Zapier'"."""
        where = "the request body" if type_ == BODY else f"{type_} events"
        readers = self.readers(relay, type_, change.path)
        read = f"; read by {', '.join(readers)}" if readers else "; nothing reads it"
        return f"{change.text()}, in {where}{read}"

    def readers(self, relay: str, type_: str, path: str) -> list[str]:
        """The hooks (of events of this type) and connector rules whose templates read `path`."""
        found = []
        if type_ == BODY:
            named = self.live.relay_named(relay)
            if named is not None:
                for n, rule in enumerate(named.connector.spec.events):
                    written = rule.model_dump(exclude={"for_"}, exclude_defaults=True)
                    texts = list(template_strings(written))
                    if not rule.reject and "data" not in written:
                        texts.append(str(rule.data))  # the default data: the whole body
                    if reads(texts, body_names(path, rule.for_)):
                        label = rule.name or f"events[{n}]"
                        found.append(f"connector {named.connector.id!r} ({label})")
            return found
        for name, hook in sorted(self.live.hooks.items()):
            if hook.matches(type_, relay) and reads(
                template_strings(hook.spec.model_dump()), event_names(path)
            ):
                found.append(f"hook {name!r}")
        return found

    async def _load(self, relay: str) -> None:
        if relay in self._loaded:
            return
        self._loaded.add(relay)
        for type_, text in (await self.store.get_shapes(relay)).items():
            self.shapes.setdefault((relay, type_), Shape.from_json(json.loads(text)))
