"""OpenTelemetry traces (`[tracing] enabled = true`; the optional extra `relayhook[otel]`).

One span per ingest (`relayhook.ingest`: relay, connector, events, outcome) and one per delivery
attempt (`relayhook.delivery`: hook, delivery, attempt, status, duration), each attempt a child
of the ingest span of the request its event came from, so that a backend shows a request and
every delivery it caused as one trace. Destinations receive a W3C `traceparent` header (a hook
turns it off with `traceparent = false`).

The link costs no storage: a request's trace id and its ingest span's id are derived from the
request id (`trace_ids`), so a delivery attempt, the console and the log lines find the trace
from the delivery's event alone, in this process or any other, after a restart too. The
ingest span is a root span; only its ids are chosen (an IdGenerator that takes them from a
context variable while that span starts), the SDK does everything else.

When tracing is off nothing here is imported or built: the intake and the dispatcher hold
`tracing = None` and pay one attribute check on their paths.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

    from relayhook.settings import Settings, TracingSettings

INGEST_SPAN = "relayhook.ingest"
ATTEMPT_SPAN = "relayhook.delivery"
TRACEPARENT = "traceparent"
# The ids the next span to start takes (the ingest span's), set only while it starts.
_next_ids: ContextVar[tuple[int, int] | None] = ContextVar("relayhook_trace_ids", default=None)


def trace_ids(request_id: str) -> tuple[int, int]:
    """(trace id, ingest span id) of a request: 128 and 64 bits of SHA-256 of its id (never 0,
    which W3C reserves for "invalid")."""
    digest = hashlib.sha256(request_id.encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    return trace_id, span_id


def trace_id_hex(request_id: str) -> str:
    """The request's trace id as backends show it: 32 lower-case hex digits."""
    return f"{trace_ids(request_id)[0]:032x}"


def _id_generator() -> Any:
    from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

    class RequestIds(IdGenerator):
        """Random ids, except for the span started while `_next_ids` holds a pair."""

        def __init__(self) -> None:
            self._random = RandomIdGenerator()

        def generate_span_id(self) -> int:
            ids = _next_ids.get()
            return ids[1] if ids is not None else self._random.generate_span_id()

        def generate_trace_id(self) -> int:
            ids = _next_ids.get()
            return ids[0] if ids is not None else self._random.generate_trace_id()

    return RequestIds()


class Tracing:
    """The tracer and the spans Relayhook makes. `exporter`: where spans go (tests pass the
    SDK's in-memory exporter, exported at once); else OTLP/HTTP to `settings.endpoint`,
    batched on the SDK's thread."""

    def __init__(self, settings: TracingSettings, exporter: SpanExporter | None = None) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

        self.provider: TracerProvider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            id_generator=_id_generator(),
            # By the trace id alone, not the parent's flag: the trace id is the request's, so a
            # request's ingest and every attempt of its deliveries are kept or dropped together.
            sampler=TraceIdRatioBased(settings.sample_ratio),
        )
        if exporter is not None:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(
                BatchSpanProcessor(
                    OTLPSpanExporter(endpoint=settings.endpoint, timeout=settings.export_timeout)
                )
            )
        self.tracer = self.provider.get_tracer("relayhook")
        self.log_filter = TraceIdFilter()

    @contextlib.contextmanager
    def ingest(self, request_id: str, relay: str, connector: str) -> Iterator[Span]:
        """The span of one request's ingest, a root span with the request's own ids."""
        from opentelemetry.context import Context
        from opentelemetry.trace import SpanKind, use_span

        token = _next_ids.set(trace_ids(request_id))
        try:
            span = self.tracer.start_span(
                INGEST_SPAN,
                context=Context(),
                kind=SpanKind.SERVER,
                attributes={
                    "relayhook.relay": relay,
                    "relayhook.connector": connector,
                    "relayhook.request_id": request_id,
                },
            )
        finally:
            _next_ids.reset(token)
        with use_span(span, end_on_exit=True):
            yield span

    @contextlib.contextmanager
    def attempt(self, request_id: str, hook: str, delivery_id: str, number: int) -> Iterator[Span]:
        """The span of one delivery attempt, a child of its request's ingest span."""
        from opentelemetry.trace import (
            NonRecordingSpan,
            SpanContext,
            SpanKind,
            TraceFlags,
            set_span_in_context,
            use_span,
        )

        trace_id, span_id = trace_ids(request_id)
        parent = SpanContext(
            trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
        )
        span = self.tracer.start_span(
            ATTEMPT_SPAN,
            context=set_span_in_context(NonRecordingSpan(parent)),
            kind=SpanKind.CLIENT,
            attributes={
                "relayhook.hook": hook,
                "relayhook.delivery_id": delivery_id,
                "relayhook.attempt": number,
                "relayhook.request_id": request_id,
            },
        )
        with use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            yield span

    def shutdown(self) -> None:
        """Export what is left (bounded by the exporter's timeout) and stop."""
        self.provider.shutdown()


def traceparent(span: Span) -> str:
    """The W3C `traceparent` value that makes the receiver's work a child of `span`."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


class TraceIdFilter(logging.Filter):
    """Adds `trace_id` to every record made inside a span (installed only when tracing is on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from opentelemetry.trace import get_current_span

        context = get_current_span().get_span_context()
        if context.is_valid and getattr(record, "trace_id", None) is None:
            record.trace_id = f"{context.trace_id:032x}"
        return True


def start_tracing(settings: Settings, exporter: SpanExporter | None = None) -> Tracing | None:
    """The tracer when `[tracing] enabled` (None otherwise: nothing imported, nothing paid), and
    the trace id on every log line written inside a span."""
    if not settings.tracing.enabled:
        return None
    try:
        tracing = Tracing(settings.tracing, exporter)
    except ImportError as exc:
        from relayhook.errors import RelayhookError

        raise RelayhookError(
            "[tracing] enabled = true needs OpenTelemetry: pip install 'relayhook[otel]'"
        ) from exc
    for handler in logging.getLogger().handlers:
        handler.addFilter(tracing.log_filter)
    return tracing


def stop_tracing(tracing: Tracing) -> None:
    """Export the spans left and stop (blocking: run it off the event loop)."""
    for handler in logging.getLogger().handlers:
        handler.removeFilter(tracing.log_filter)
    tracing.shutdown()
