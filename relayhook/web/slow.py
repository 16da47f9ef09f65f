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

    uvicorn.run(app, http=guarded_protocol(ConnectionLimits(header_timeout=10)))
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

# A private class of uvicorn's: pyproject bounds uvicorn to the versions this is tested on, and
# tests/test_slow_clients.py fails loudly when a hook or attribute used here disappears.
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# What of HttpToolsProtocol this module relies on (the test checks every one).
OVERRIDDEN = ("connection_made", "connection_lost", "on_headers_complete",
              "on_message_complete", "on_response_complete")
USED_ATTRIBUTES = ("connections", "pipeline", "loop", "transport", "client")

log = logging.getLogger("relayhook.web.slow")

Phase = Literal["headers", "body", "app"]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 500


@dataclass
class ClosedCounts:
    """Connections closed so far, by cause, per protocol class (kept for debugging: no metric
    reads them yet)."""

    header_timeout: int = 0
    body_timeout: int = 0
    over_limit: int = 0


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

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._enter("headers")
        if len(self.connections) > self.limits.max_connections:
            oldest = next(iter(self.waiting))  # this one at least waits for its headers
            oldest._close("over_limit")

    def connection_lost(self, exc: Exception | None) -> None:
        self._enter("app")
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._enter("body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._phase == "body":
            self._enter("app")
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request's headers are due; one already read waits in the pipeline.
        if not self.transport.is_closing() and not self.pipeline:
            self._enter("headers")

    def _enter(self, phase: Phase) -> None:
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


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    """A protocol class for `uvicorn.run(http=...)` enforcing `limits`."""

    class Guarded(GuardedHttpToolsProtocol):
        pass

    Guarded.limits = limits
    Guarded.closed = ClosedCounts()
    Guarded.waiting = OrderedDict()
    return Guarded
