"""Prometheus metrics: what the ingress and the dispatcher count, and what the store holds.

    metrics = Metrics(spool_depth=lambda: spool.depth())
    metrics.observe_request("gmetri", 200, 0.021)          # the ingress, per request
    metrics.observe_delivery("Zapier", outcome, attempt)   # the dispatcher, per attempt
    await metrics.refresh(store, now)                       # on scrape: backlog from the store
    body = metrics.render()                                 # the Prometheus text format

Each Metrics has its own registry (several apps may live in one process, as in tests). The
per-request cost is kept small: the labelled children are looked up once per label set and
cached, so a request costs one dict lookup, one counter increment and one histogram observation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from relayhook.store import Attempt, IngestResult, Outcome, Store, StoreError

log = logging.getLogger("relayhook.metrics")

# The classic text format every Prometheus reads (prometheus-client 0.22+ labels its output
# 1.0.0, which Prometheus 2 does not know): with our plain names the bytes are the same.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNKNOWN_RELAY = "(unknown)"  # a relay URL nobody configured: never the token itself
# SynthesisVR gives up after 2 s; the GMetri target is p99 < 50 ms.
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
ATTEMPT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REFRESH_SECONDS = 2.0  # scrapes closer together than this share one read of the store


class Metrics:
    def __init__(
        self,
        *,
        spool_depth: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        registry = self.registry = CollectorRegistry()
        self.requests = Counter(
            "relayhook_requests",
            "Requests to relay URLs, by relay and HTTP answer.",
            ["relay", "code"],
            registry=registry,
        )
        self.ack_seconds = Histogram(
            "relayhook_ack_seconds",
            "Time from reading a request to its answer, by relay.",
            ["relay"],
            buckets=ACK_BUCKETS,
            registry=registry,
        )
        self.events = Counter(
            "relayhook_events", "Events stored, by relay.", ["relay"], registry=registry
        )
        self.duplicate_events = Counter(
            "relayhook_duplicate_events",
            "Events already stored (same de-duplication key), by relay.",
            ["relay"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "relayhook_auth_failures",
            "Requests refused for missing or wrong credentials, by relay.",
            ["relay"],
            registry=registry,
        )
        self.headers_refused = Counter(
            "relayhook_headers_refused",
            "Requests refused for their headers before they were "
            "read whole ([limits] max_header_*), by status: 431, or 414 for the request line.",
            ["status"],
            registry=registry,
        )
        self.deliveries = Counter(
            "relayhook_deliveries",
            "Delivery rounds by hook and outcome:"
            " succeeded, failed (retried later), dead, skipped, paused.",
            ["hook", "outcome"],
            registry=registry,
        )
        self.attempt_seconds = Histogram(
            "relayhook_attempt_seconds",
            "Duration of delivery attempts, by hook.",
            ["hook"],
            buckets=ATTEMPT_BUCKETS,
            registry=registry,
        )
        self.stored_deliveries = Gauge(
            "relayhook_stored_deliveries",
            "Deliveries in the store "
            "now, by hook and status (pending, failed, claimed, "
            "paused, dead).",
            ["hook", "status"],
            registry=registry,
        )
        self.oldest_pending = Gauge(
            "relayhook_oldest_pending_age_seconds",
            "Age of the oldest delivery not yet delivered (pending, failed or claimed), by hook.",
            ["hook"],
            registry=registry,
        )
        self.store_readable = Gauge(
            "relayhook_store_readable",
            "1 if the last scrape read the store, 0 if it failed.",
            registry=registry,
        )
        self.task_failures = Counter(
            "relayhook_task_failures",
            "Background tasks (dispatcher, "
            "alerter, spool drainer, pruner...) that failed or stalled "
            "and were restarted, by task.",
            ["task"],
            registry=registry,
        )
        self.spool_depth = Gauge(
            "relayhook_spool_depth",
            "Requests in the spool, waiting for the store to take them.",
            registry=registry,
        )
        self.spool_depth.set_function(lambda: float(spool_depth()))
        self.spool_depth_now = spool_depth
        self._clock = clock
        self._refreshed_at: float | None = None
        self._request_children: dict[
            tuple[str, int], tuple[Counter, Histogram, Counter | None]
        ] = {}
        self._delivery_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    # -- the hot paths

    def observe_request(self, relay: str | None, code: int, seconds: float) -> None:
        key = (relay or UNKNOWN_RELAY, code)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = self._new_request_children(*key)
        requests, ack, refused = children
        requests.inc()
        ack.observe(seconds)
        if refused is not None:
            refused.inc()

    def _new_request_children(
        self, relay: str, code: int
    ) -> tuple[Counter, Histogram, Counter | None]:
        refused = self.auth_failures.labels(relay) if code == 401 else None
        return self.requests.labels(relay, str(code)), self.ack_seconds.labels(relay), refused

    def observe_stored(self, relay: str, result: IngestResult) -> None:
        if result.accepted:
            self.events.labels(relay).inc(result.accepted)
        if result.duplicates:
            self.duplicate_events.labels(relay).inc(result.duplicates)

    def observe_delivery(self, hook: str, outcome: Outcome, attempt: Attempt | None) -> None:
        key = (hook, outcome.status)
        children = self._delivery_children.get(key)
        if children is None:
            children = self._delivery_children[key] = (
                self.deliveries.labels(*key),
                self.attempt_seconds.labels(hook),
            )
        children[0].inc()
        if attempt is not None:
            children[1].observe(attempt.duration_ms / 1000)

    def observe_task_failure(self, task: str) -> None:
        self.task_failures.labels(task).inc()

    # -- on scrape

    async def refresh(self, store: Store, now: float) -> None:
        """Read the delivery backlog from the store (at most every REFRESH_SECONDS); `now` is
        epoch seconds, for the oldest pending age."""
        moment = self._clock()
        if self._refreshed_at is not None and moment - self._refreshed_at < REFRESH_SECONDS:
            return
        self._refreshed_at = moment
        try:
            entries = await store.backlog()
        except StoreError as exc:
            log.error("metrics: cannot read the delivery backlog: %s", exc)
            self.store_readable.set(0)
            return
        self.store_readable.set(1)
        self.stored_deliveries.clear()
        self.oldest_pending.clear()
        oldest: dict[str, float] = {}
        for entry in entries:
            self.stored_deliveries.labels(entry.hook, entry.status).set(entry.count)
            if entry.oldest_created_at is not None:
                oldest[entry.hook] = min(oldest.get(entry.hook, now), entry.oldest_created_at)
        for hook, created_at in oldest.items():
            self.oldest_pending.labels(hook).set(max(0.0, now - created_at))

    def render(self) -> bytes:
        return generate_latest(self.registry)
