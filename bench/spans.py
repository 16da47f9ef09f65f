"""What one span costs when `[tracing]` is on: CPU microseconds per ingest span and per attempt
span, made as Relayhook makes them (relayhook.tracing), exported to an exporter that drops them,
then to one that encodes them as the OTLP/HTTP exporter does (protobuf), without the network.

    python bench/spans.py              # 5,000 spans of each kind, best of 3 rounds
    python bench/spans.py --spans 20000 --rounds 5

In process, no server, no traffic: a benchmark, it asserts nothing.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relayhook.settings import TracingSettings
from relayhook.tracing import Tracing, traceparent


class Dropped(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Encoded(SpanExporter):
    """What OTLPSpanExporter does to a batch before it posts it."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode_spans(spans).SerializeToString()
        return SpanExportResult.SUCCESS


def one_round(tracing: Tracing, count: int) -> tuple[float, float]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    start = time.process_time()
    for request_id in ids:
        with tracing.ingest(request_id, "relay", "generic") as span:
            span.set_attributes(
                {"relayhook.events": 1, "relayhook.deliveries": 1, "relayhook.outcome": "accepted"}
            )
    middle = time.process_time()
    for request_id in ids:
        with tracing.attempt(request_id, "hook", request_id, 1) as span:
            traceparent(span)
            span.set_attributes(
                {
                    "relayhook.outcome": "succeeded",
                    "relayhook.duration_ms": 1.0,
                    "http.response.status_code": 200,
                }
            )
    end = time.process_time()
    return 1e6 * (middle - start) / count, 1e6 * (end - middle) / count


def _encode_batches(spans: Sequence[ReadableSpan], size: int = 512) -> float:
    start = time.process_time()
    for first in range(0, len(spans), size):
        encode_spans(spans[first : first + size]).SerializeToString()
    return 1e6 * (time.process_time() - start) / max(1, len(spans))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=5000, help="spans of each kind a round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best is kept")
    args = parser.parse_args(argv)
    print("| exporter | ingest span, CPU us | attempt span (with traceparent), CPU us |")
    print("| --- | --- | --- |")
    exporters: list[tuple[str, Any]] = [
        ("dropped (the SDK's span alone)", Dropped()),
        ("OTLP protobuf encoding, one span a batch", Encoded()),
    ]
    for label, exporter in exporters:
        tracing = Tracing(TracingSettings(enabled=True), exporter)
        rounds = [one_round(tracing, args.spans) for _ in range(max(1, args.rounds))]
        ingest, attempt = min(r[0] for r in rounds), min(r[1] for r in rounds)
        print(f"| {label} | {ingest:.1f} | {attempt:.1f} |")
        tracing.shutdown()
    # As the BatchSpanProcessor exports: 512 spans a batch (its default), on its own thread.
    kept = InMemorySpanExporter()
    tracing = Tracing(TracingSettings(enabled=True), kept)
    one_round(tracing, args.spans)
    spans = kept.get_finished_spans()
    best = min(_encode_batches(spans) for _ in range(max(1, args.rounds)))
    print(
        f"| OTLP protobuf encoding, 512 spans a batch (both kinds mixed) | {best:.1f} a span |"
        " (the same) |"
    )
    tracing.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
