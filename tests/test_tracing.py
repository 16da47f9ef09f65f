"""OpenTelemetry traces (`[tracing]`, issue 23 item 5).

In process, with the SDK's in-memory exporter: a span per ingest (relay, connector, events,
outcome), a span per delivery attempt (hook, status, duration) that is a child of its ingest
span, `traceparent` sent to destinations (not to a hook with `traceparent = false`), the trace id
in the delivery's log line and on the console's delivery page; off by default.

End to end: `relayhook serve` exports over OTLP/HTTP to a receiver of our own on 127.0.0.1
that decodes the protobuf POSTs (opentelemetry-proto) and counts the spans.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from asgi import in_process, sign_in
from conftest import run
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from receiver import Receiver, Reply
from servers import (
    HOST,
    RelayConfig,
    StartServer,
    clean_env,
    http_client,
    render_config,
    render_hooks,
    render_tables,
    wait_until,
)

from relayhook.tracing import trace_id_hex, trace_ids

RELAY = RelayConfig("shop", "generic", "shop-relay-token-0001")
BODY = {"order": 42}


def config(receiver: Receiver, *, tracing: dict[str, Any] | None = None) -> str:
    hooks = [
        {
            "name": "traced",
            "events": ["*"],
            "url": receiver.url + "/traced/",
            "retry": {"schedule": [0]},
        },
        {
            "name": "quiet",
            "events": ["*"],
            "url": receiver.url + "/quiet/",
            "traceparent": False,
            "retry": {"schedule": [0]},
        },
        {
            "name": "broken",
            "events": ["*"],
            "url": receiver.url + "/broken/",
            "retry": {"schedule": [0, 60]},
        },
    ]
    tables: dict[str, dict[str, Any]] = {
        "delivery": {"allow_cidrs": ["127.0.0.1/32"], "poll_interval": 0.1}
    }
    if tracing is not None:
        tables["tracing"] = tracing
    return render_config(relays=[RELAY]) + render_tables(**tables) + render_hooks(hooks)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as rx:
        rx.script("/broken/", Reply(status=503))
        yield rx


async def _wait(condition: Any, what: str, timeout: float = 20.0) -> Any:
    """Poll `condition` on the loop (the app's dispatcher runs on it) until truthy; bounded."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)
    return result


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def test_ingest_and_attempt_spans_are_one_trace_with_traceparent_sent(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = InMemorySpanExporter()
    caplog.set_level(logging.WARNING, logger="relayhook.delivery.dispatcher")
    # On the dispatcher's logger itself: whatever an earlier test left on the root logger (or
    # the propagation of `relayhook`), the failed attempt's line is caught here.
    dispatcher_log = logging.getLogger("relayhook.delivery.dispatcher")
    dispatcher_log.addHandler(caplog.handler)

    async def main() -> None:
        async with in_process(
            tmp_path, config(receiver, tracing={"enabled": True}), span_exporter=exporter
        ) as (app, client):
            answer = await client.post(f"/in/{RELAY.token}", json=BODY)
            assert answer.status_code == 200, answer.text
            spans = await _wait(
                lambda: (
                    len(_by_name(exporter.get_finished_spans(), "relayhook.delivery")) >= 3
                    and exporter.get_finished_spans()
                ),
                "three attempt spans",
            )
            (ingest,) = _by_name(spans, "relayhook.ingest")
            request_id = ingest.attributes["relayhook.request_id"]
            assert dict(ingest.attributes) == {
                "relayhook.relay": "shop",
                "relayhook.connector": "generic",
                "relayhook.request_id": request_id,
                "relayhook.events": 1,
                "relayhook.deliveries": 3,
                "relayhook.outcome": "accepted",
            }
            assert ingest.parent is None  # a root span, with the request's own ids
            assert (ingest.context.trace_id, ingest.context.span_id) == trace_ids(request_id)

            attempts = {
                span.attributes["relayhook.hook"]: span
                for span in _by_name(spans, "relayhook.delivery")
            }
            assert set(attempts) == {"traced", "quiet", "broken"}
            for span in attempts.values():  # every delivery is linked to its ingest
                assert span.context.trace_id == ingest.context.trace_id
                assert span.parent is not None and span.parent.span_id == ingest.context.span_id
                assert span.attributes["relayhook.attempt"] == 1
                assert span.attributes["relayhook.duration_ms"] >= 0
            assert attempts["traced"].attributes["http.response.status_code"] == 200
            assert attempts["traced"].attributes["relayhook.outcome"] == "succeeded"
            assert attempts["traced"].status.is_ok
            assert attempts["broken"].attributes["http.response.status_code"] == 503
            assert attempts["broken"].attributes["relayhook.outcome"] == "failed"
            assert not attempts["broken"].status.is_ok

            # W3C traceparent: the receiver's work becomes a child of the attempt's span.
            (traced,) = receiver.requests("/traced/")
            span = attempts["traced"].context
            assert traced.header("traceparent") == (
                f"00-{span.trace_id:032x}-{span.span_id:016x}-01"
            )
            (quiet,) = receiver.requests("/quiet/")
            assert quiet.header("traceparent") is None

            # The trace id in the failed attempt's log line, and on the delivery's page.
            trace = trace_id_hex(request_id)
            assert trace == f"{ingest.context.trace_id:032x}"
            lines = await _wait(
                lambda: [r for r in caplog.records if getattr(r, "hook", None) == "broken"],
                "the failed attempt's log line",
            )
            assert all(getattr(r, "trace_id", None) == trace for r in lines)
            assert (await sign_in(client)).status_code == 303
            delivery_id = attempts["traced"].attributes["relayhook.delivery_id"]
            page = await client.get(f"/deliveries/{delivery_id}")
            assert page.status_code == 200 and trace in page.text
            # The history shows the header as sent.
            assert "traceparent" in page.text

    try:
        run(main())
    finally:
        dispatcher_log.removeHandler(caplog.handler)


def test_off_by_default_nothing_is_traced_or_sent(tmp_path: Path, receiver: Receiver) -> None:
    async def main() -> None:
        async with in_process(tmp_path, config(receiver)) as (app, client):
            parts = app.state.relayhook
            dispatcher = app.state.runtime.dispatcher
            assert parts.tracing is None and dispatcher is not None and dispatcher.tracing is None
            assert (await client.post(f"/in/{RELAY.token}", json=BODY)).status_code == 200
            await _wait(
                lambda: receiver.count("/traced/") and receiver.count("/quiet/"), "both deliveries"
            )
            assert receiver.requests("/traced/")[0].header("traceparent") is None
            assert (await sign_in(client)).status_code == 303
            with sqlite3.connect(tmp_path / "relayhook.db") as db:
                (delivery_id,) = db.execute(
                    "SELECT id FROM deliveries WHERE hook = 'traced'"
                ).fetchone()
            page = await client.get(f"/deliveries/{delivery_id}")
            assert page.status_code == 200 and 'id="trace-id"' not in page.text

    run(main())


# --- end to end: OTLP/HTTP to a receiver on 127.0.0.1 -----------------------------------------


class OtlpReceiver:
    """A tiny OTLP/HTTP traces endpoint: `POST /v1/traces` with an ExportTraceServiceRequest
    (protobuf), answered 200 with an empty ExportTraceServiceResponse; keeps the spans."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                kept = (
                    self.path == "/v1/traces"
                    and self.headers.get("Content-Type") == "application/x-protobuf"
                )
                if kept:
                    receiver.take(body)
                self.send_response(200 if kept else 400)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource.resource.attributes
                if a.key == "service.name"
            )
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {a.key: a.value for a in span.attributes}
                    with self.lock:
                        self.spans.append(
                            {
                                "service": service,
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "hook": attributes["relayhook.hook"].string_value
                                if "relayhook.hook" in attributes
                                else None,
                            }
                        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def test_serve_exports_spans_over_otlp_http(
    tmp_path: Path, receiver: Receiver, start_server: StartServer
) -> None:
    collector = OtlpReceiver()
    try:
        tracing = {"enabled": True, "endpoint": collector.url, "service_name": "relay-e2e"}
        # The SDK's batch exporter waits 5 s by default; 100 ms keeps the test short.
        server = start_server(
            tmp_path,
            config(receiver, tracing=tracing),
            env=clean_env(OTEL_BSP_SCHEDULE_DELAY="100"),
        )
        with http_client() as client:
            for order in range(3):
                answer = client.post(f"{server.url}/in/{RELAY.token}", json={"order": order})
                assert answer.status_code == 200, answer.text
        # 3 ingest spans + 3 x 3 attempt spans.
        spans = wait_until(
            lambda: len(collector.spans) >= 12 and list(collector.spans),
            timeout=30,
            what="12 spans at the OTLP receiver",
        )
        assert {span["service"] for span in spans} == {"relay-e2e"}
        ingests = [span for span in spans if span["name"] == "relayhook.ingest"]
        attempts = [span for span in spans if span["name"] == "relayhook.delivery"]
        assert len(ingests) == 3 and len(attempts) == 9
        by_trace = {span["trace_id"]: span for span in ingests}
        for attempt in attempts:
            assert by_trace[attempt["trace_id"]]["span_id"] == attempt["parent"]
        # What the destination got continues the exported trace.
        sent = {record.header("traceparent") for record in receiver.requests("/traced/")}
        assert sent == {
            f"00-{a['trace_id']}-{a['span_id']}-01" for a in attempts if a["hook"] == "traced"
        }
        log = server.log_path.read_text(encoding="utf-8")
        broken = [line for line in log.splitlines() if "'broken'" in line and "failed" in line]
        assert broken and all(
            any(f"trace_id={trace}" in line for trace in by_trace) for line in broken
        ), log
    finally:
        collector.close()


def test_a_request_id_always_gives_the_same_trace() -> None:
    """What links a delivery to its ingest in any process, after a restart too."""
    assert trace_id_hex("req-1") == trace_id_hex("req-1") != trace_id_hex("req-2")
    assert len(trace_id_hex("req-1")) == 32
    trace_id, span_id = trace_ids("req-1")
    assert 0 < trace_id < 2**128 and 0 < span_id < 2**64


def test_a_request_not_sampled_is_not_traced_with_any_of_its_deliveries(
    tmp_path: Path, receiver: Receiver
) -> None:
    exporter = InMemorySpanExporter()
    tracing = {"enabled": True, "sample_ratio": 0.0}

    async def main() -> None:
        async with in_process(
            tmp_path, config(receiver, tracing=tracing), span_exporter=exporter
        ) as (app, client):
            assert (await client.post(f"/in/{RELAY.token}", json=BODY)).status_code == 200
            await _wait(lambda: receiver.count("/traced/"), "the delivery")
            # The destination is told the trace is not sampled (flags 00), so it drops it too.
            (traced,) = receiver.requests("/traced/")
            assert (traced.header("traceparent") or "").endswith("-00")
            assert exporter.get_finished_spans() == ()

    run(main())
