"""A real receiving server for delivery tests: records every request and answers by script.

    with Receiver() as rx:                       # 127.0.0.1, a free port, its own threads
        rx.script("/flaky/", Reply(500), Reply(500), Reply(200))   # then 200 again and again
        rx.script("/slow/", Reply(429, headers={"Retry-After": "2"}), Reply(200))
        rx.script("/hang/", Reply(hang=True))    # never answers (until the receiver closes)
        rx.script("/late/", Reply(200, delay=0.3))   # answers after 0.3 s
        rx.script("/moved/", Reply(302, headers={"Location": "http://127.0.0.2:9/"}))
        rx.limit("/paced/", per_second=30)       # 429 past 30 requests in any 1 s window
        ... point hooks at rx.url + "/flaky/..."
        got = rx.wait_for(3, timeout=10, path="/flaky/")   # polls against a deadline

Scripts are per path prefix (the longest matching one applies); each reply is used once, in
order, and the last one repeats. Unscripted paths get 200. Every request is recorded with its
method, raw path and query, headers, body bytes, arrival time (time.monotonic()) and the status
it was answered with (None for one never answered).

For SSRF tests, `servers.Canary` is the listener that counts connections and answers none.
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TypeVar
from urllib.parse import parse_qsl

HOST = "127.0.0.1"
_T = TypeVar("_T")
HANG_LIMIT = 30.0  # default seconds a `hang` reply holds its connection, if the test forgets


@dataclass(frozen=True)
class Reply:
    """One scripted answer: `status`, `headers` and `body`, after `delay` seconds; `hang`
    holds the connection open without answering (until the receiver closes, or its
    `hang_limit`), then closes it."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0
    hang: bool = False


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived."""

    method: str
    target: str  # path and query, exactly as on the request line
    headers: tuple[tuple[str, str], ...]  # names lower-cased, in arrival order
    body: bytes
    arrived: float  # time.monotonic() when its body had arrived
    status: int | None  # the status it was (to be) answered with; None: never answered

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def params(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)

    def header_map(self) -> dict[str, str]:
        return dict(self.headers)


class _Script:
    def __init__(self, replies: tuple[Reply, ...]) -> None:
        self.replies = collections.deque(replies)

    def next(self) -> Reply:
        return self.replies.popleft() if len(self.replies) > 1 else self.replies[0]


class _Limiter:
    """A sliding one-second window: a request is refused when, with it, more than
    `per_second` requests arrived in the last second."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self.arrivals: collections.deque[float] = collections.deque()

    def over(self, now: float) -> bool:
        while self.arrivals and self.arrivals[0] <= now - 1.0:
            self.arrivals.popleft()
        self.arrivals.append(now)
        return len(self.arrivals) > self.per_second


class Receiver:
    """The server (ThreadingHTTPServer, HTTP/1.1 keep-alive) in a background thread."""

    def __init__(self, host: str = HOST, port: int = 0, hang_limit: float = HANG_LIMIT) -> None:
        self.hang_limit = hang_limit
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._records: list[Recorded] = []
        self._scripts: dict[str, _Script] = {}
        self._limiters: dict[str, _Limiter] = {}
        self._connections: set[socket.socket] = set()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = False
        self._server.block_on_close = True  # server_close() joins the request threads
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- programming it

    def script(self, prefix: str, *replies: Reply) -> None:
        """Answer requests whose path starts with `prefix` with `replies`, in order; the last
        repeats. Replaces an earlier script of the same prefix."""
        if not replies:
            raise ValueError("a script needs at least one reply")
        with self._lock:
            self._scripts[prefix] = _Script(replies)

    def limit(self, prefix: str, per_second: int) -> None:
        """Answer 429 (Retry-After: 1) to a request under `prefix` when more than `per_second`
        requests under it arrived in the last second, this one included."""
        with self._lock:
            self._limiters[prefix] = _Limiter(per_second)

    def _take(
        self, method: str, target: str, headers: tuple[tuple[str, str], ...], body: bytes
    ) -> Reply:
        """Record a request that has fully arrived and choose its reply, under one lock: the
        records are in the order the replies were handed out, and arrival times ascend."""
        with self._changed:
            now = time.monotonic()
            path = target.partition("?")[0]
            limiter = _longest(self._limiters, path)
            script = _longest(self._scripts, path)
            if limiter is not None and limiter.over(now):
                reply = Reply(429, headers={"Retry-After": "1"}, body=b"slow down")
            else:
                reply = script.next() if script is not None else Reply()
            status = None if reply.hang else reply.status
            self._records.append(Recorded(method, target, headers, body, now, status))
            self._changed.notify_all()
            return reply

    # -- reading what arrived

    def requests(self, path: str = "") -> list[Recorded]:
        """The requests whose path starts with `path`, in arrival order."""
        with self._lock:
            return [r for r in self._records if r.path.startswith(path)]

    def count(self, path: str = "") -> int:
        return len(self.requests(path))

    def wait_for(self, count: int, timeout: float, path: str = "") -> list[Recorded]:
        """At least `count` requests under `path` (all of them are returned); TimeoutError,
        saying how many came, if they do not arrive within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [r for r in self._records if r.path.startswith(path)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(found)} of {count} requests under {path!r} "
                        f"arrived within {timeout} s"
                    )
                self._changed.wait(min(left, 0.1))

    # -- life

    def close(self) -> None:
        """Release hanging replies, stop listening, end every connection, join the threads."""
        self._closing.set()
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # wake threads blocked reading an idle keep-alive connection
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _longest(table: dict[str, _T], path: str) -> _T | None:
    matches = [prefix for prefix in table if path.startswith(prefix)]
    return table[max(matches, key=len)] if matches else None


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "receiver"
        sys_version = ""

        def setup(self) -> None:
            super().setup()
            with receiver._lock:
                receiver._connections.add(self.connection)

        def finish(self) -> None:
            try:
                super().finish()
            except OSError:
                pass
            finally:
                with receiver._lock:
                    receiver._connections.discard(self.connection)

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except OSError:  # the client went away (a killed server, a timeout): not an error
                self.close_connection = True

        def _serve(self) -> None:
            body = self._read_body()
            headers = tuple((k.lower(), v) for k, v in self.headers.items())
            reply = receiver._take(self.command, self.path, headers, body)
            if reply.hang:
                receiver._closing.wait(receiver.hang_limit)
                self.close_connection = True
                return
            if reply.delay and receiver._closing.wait(reply.delay):
                self.close_connection = True
                return
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                for _ in range(100_000):  # bounded
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline().strip():  # trailers, up to the blank line
                            pass
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the records are the log

    return Handler
