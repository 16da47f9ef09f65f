"""Slow clients: a deadline for a request's headers, one for its body, a cap on connections.

uvicorn closes a keep-alive connection that stays idle, but not one that trickles: any byte
cancels its idle timer, and nothing bounds how long the headers may take. A few thousand
connections sending a byte a second would hold the server's sockets and starve the providers.

`guarded_protocol(limits)` is uvicorn's httptools protocol with a timer per connection phase:

    headers  from the connection (or the previous response) to the end of the headers
    body     from the end of the headers to the end of the body
    app      the request is ours: no client deadline

Past a deadline the connection is closed. Past `max_connections`, the connection that has waited
longest for its headers (an idle keep-alive one, or a trickler) is closed to make room, else the
new one: a flood of slow connections does not lock the providers out.

Headers are bounded as nginx bounds them (8 KiB a line, 32 KiB in all, 100 fields by default):
the parser is never fed more than the limits allow before the headers end, so 64 MiB of headers
cost a connection no more memory than 40 KiB do. A request past a limit is handed to the app
with the headers read so far, no body, and `scope["extensions"]["relayhook.refused"]` =
`{"status": 431, "reason": ...}` (414 for a request line too long: its URL cut at the limit,
its headers read); the app answers it (the ingress keeps it as a rejected request of its relay)
and the connection closes after the answer.

    uvicorn.run(app, http=guarded_protocol(ConnectionLimits(header_timeout=10)))
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import httptools

# Private parts of uvicorn's: pyproject bounds uvicorn to the versions this is tested on, and
# tests/test_slow_clients.py fails loudly when a hook or attribute used here disappears.
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

# What of HttpToolsProtocol this module relies on (the test checks every one).
OVERRIDDEN = (
    "connection_made",
    "connection_lost",
    "data_received",
    "on_message_begin",
    "on_url",
    "on_header",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
    "_start_asgi_task",
)
# Set by its __init__ (`url` too, but by on_message_begin, which is in OVERRIDDEN).
USED_ATTRIBUTES = (
    "connections",
    "pipeline",
    "loop",
    "transport",
    "client",
    "parser",
    "cycle",
    "flow",
    "scope",
    "app",
    "logger",
    "access_logger",
    "access_log",
    "root_path",
    "server_state",
)

log = logging.getLogger("relayhook.web.slow")

Phase = Literal["headers", "body", "app"]
REFUSED = "relayhook.refused"  # the scope extension of a request refused for its headers
LINGER_SECONDS = 2.0  # how long a refused connection is read (and dropped) after its answer


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 500
    max_header_line_bytes: int = 8192
    max_header_bytes: int = 32768
    max_header_fields: int = 100


@dataclass
class ClosedCounts:
    """Connections closed so far, by cause, per protocol class (kept for debugging: no metric
    reads them yet)."""

    header_timeout: int = 0
    body_timeout: int = 0
    over_limit: int = 0
    headers_refused: int = 0  # answered 431/414 for their headers (the app counts them too)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """The httptools protocol with deadlines; `guarded_protocol` binds the limits (one class per
    server, since the class also holds the connections waiting for their headers)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    closed: ClassVar[ClosedCounts] = ClosedCounts()
    # Connections in their headers phase, oldest first: the first to go when over the limit.
    waiting: ClassVar[OrderedDict[GuardedHttpToolsProtocol, None]] = OrderedDict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: Phase = "app"
        self._deadline: asyncio.TimerHandle | None = None
        self._head_fed = 0  # bytes given to the parser since the headers phase began
        self._head_size = 0  # bytes of this request's header lines, as parsed
        self._fields = 0
        self._refused = False  # answered for its headers: what else comes is dropped
        self._url_cut = False  # the request line passed its limit: the rest was dropped

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._enter("headers")
        if len(self.connections) > self.limits.max_connections:
            oldest = next(iter(self.waiting))  # this one at least waits for its headers
            oldest._close("over_limit")

    def connection_lost(self, exc: Exception | None) -> None:
        self._enter("app")
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the answer is on its way; the connection closes after it
        if self._phase != "headers":
            super().data_received(data)
            return
        # Feed the parser no more than the headers may hold: it keeps a header line whole in
        # memory until its end, so an endless line would grow without bound.
        room = self.limits.max_header_bytes + self.limits.max_header_line_bytes - self._head_fed
        self._head_fed += min(len(data), room)
        if len(data) <= room:
            super().data_received(data)
            return
        super().data_received(data[:room])
        if self._refused:
            return
        if self._phase == "headers":
            self._refuse(
                *(
                    (414, self._url_too_long())
                    if self._url_cut
                    else (
                        431,
                        f"the request headers are larger than {self.limits.max_header_bytes} bytes",
                    )
                )
            )
            return
        self.data_received(data[room:])  # the headers ended within the limit

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = self._fields = 0
        self._url_cut = False

    def _url_too_long(self) -> str:
        return f"the request line is longer than {self.limits.max_header_line_bytes} bytes"

    def on_url(self, url: bytes) -> None:
        # A URL past the limit is kept cut at it, and refused once the headers are in: they
        # may hold the credentials that let the ingress keep the request.
        room = self.limits.max_header_line_bytes - len(self.url)
        if len(url) > room:
            self._url_cut = True
            url = url[: max(room, 0)]
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        line = len(name) + len(value) + 4  # `name: value\r\n`
        self._head_size += line
        self._fields += 1
        limits = self.limits
        if line > limits.max_header_line_bytes:
            self._refuse(
                431,
                f"header {name[:64].decode('latin-1')!r} is longer than "
                f"{limits.max_header_line_bytes} bytes",
            )
        elif self._fields > limits.max_header_fields:
            self._refuse(431, f"more than {limits.max_header_fields} header fields")
        elif self._head_size > limits.max_header_bytes:
            self._refuse(
                431, f"the request headers are larger than {limits.max_header_bytes} bytes"
            )
        else:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        if self._url_cut:
            self._refuse(414, self._url_too_long())
            return
        self._enter("body")
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        if self._phase == "body":
            self._enter("app")
        super().on_message_complete()

    def _refuse(self, status: int, reason: str) -> None:
        """Hand the app this request as far as it was read, marked refused, with no body; the
        connection closes once it is answered."""
        self._refused = True
        self._enter("app")
        if self.transport.is_closing() or self.scope is None:  # the parser gave up first
            return
        self.closed.headers_refused += 1
        log.info("refused a request from %s: %s", self.client, reason)
        scope = self.scope
        try:
            scope["method"] = self.parser.get_method().decode("ascii")
        except (httptools.HttpParserError, UnicodeDecodeError):
            scope["method"] = "GET"
        path, query = b"/", b""
        try:  # the URL as read: cut at the limit for a 414
            parsed = httptools.parse_url(self.url)
            path, query = parsed.path or b"/", parsed.query or b""
        except httptools.HttpParserInvalidURLError:
            pass
        scope["path"] = self.root_path + urllib.parse.unquote(path.decode("latin-1"))
        scope["raw_path"] = self.root_path.encode("ascii") + path
        scope["query_string"] = query
        scope["extensions"] = {REFUSED: {"status": status, "reason": reason}}
        previous, self.cycle = (
            self.cycle,
            RequestResponseCycle(
                scope=scope,
                transport=_Lingering(self.transport, self.loop),  # type: ignore[arg-type]  # a transport's stand-in
                flow=self.flow,
                logger=self.logger,
                access_logger=self.access_logger,
                access_log=self.access_log,
                default_headers=self.server_state.default_headers,
                message_event=asyncio.Event(),
                expect_100_continue=False,
                keep_alive=False,
                on_response=self.on_response_complete,
            ),
        )
        self.cycle.more_body = False
        if previous is None or previous.response_complete:
            self._start_asgi_task(self.cycle, self.app)
        else:  # behind a pipelined request still being answered
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, self.app))

    def on_response_complete(self) -> None:
        if self._refused:  # the lingering close ends this connection (_Lingering)
            self.server_state.total_requests += 1
            return
        super().on_response_complete()
        # The next request's headers are due; one already read waits in the pipeline.
        if not self.transport.is_closing() and not self.pipeline:
            self._enter("headers")

    def _enter(self, phase: Phase) -> None:
        if phase == "headers":
            self._head_fed = 0
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.waiting.pop(self, None)
        self._phase = phase
        if phase == "app":
            return
        if phase == "headers":
            self.waiting[self] = None
            seconds, cause = self.limits.header_timeout, "header_timeout"
        else:
            seconds, cause = self.limits.body_timeout, "body_timeout"
        self._deadline = self.loop.call_later(seconds, self._close, cause)

    def _close(self, cause: str) -> None:
        self._enter("app")
        if self.transport.is_closing():
            return
        setattr(self.closed, cause, getattr(self.closed, cause) + 1)
        log.debug("closed a connection from %s: %s", self.client, cause)
        # Out of the count now, not when the close completes: the next new connection must not
        # take this one for a live one and close another.
        self.connections.discard(self)
        self.transport.close()


class _Lingering:
    """The transport of a refused request's answer. Closing it (once the answer is written)
    only ends our side: the client may still be sending the headers we stopped reading, and a
    close with unread data sends a reset that can reach it before our 431 does. What it sends
    is read and dropped (data_received) until it closes, or LINGER_SECONDS, as nginx's
    lingering close does."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        transport = self._transport
        if transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._loop.call_later(LINGER_SECONDS, transport.close)

    def is_closing(self) -> bool:
        return self._closed or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    """A protocol class for `uvicorn.run(http=...)` enforcing `limits`."""

    class Guarded(GuardedHttpToolsProtocol):
        pass

    Guarded.limits = limits
    Guarded.closed = ClosedCounts()
    Guarded.waiting = OrderedDict()
    return Guarded
