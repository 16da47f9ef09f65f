"""The ingress: `/in/{token}`. Authenticate, read the body within its limit, map, store, answer.

The answer is 200 only once the raw request and its events are committed durably, or the raw
request is fsync'd to the spool because the store could not take it in time (`"spooled": true`);
a request that cannot be mapped or stored is kept as `rejected` and answered 400 with what was
wrong. What to keep, and where, is `intake`'s business; this module speaks HTTP.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from starlette.types import Message, Receive, Scope, Send

from relayhook.core.auth import challenge, check_credentials, credential_headers, needs_body
from relayhook.core.events import format_time
from relayhook.core.mapping import InboundRequest, ProviderAnswer
from relayhook.core.redaction import REDACTED
from relayhook.intake import Intake, Kept
from relayhook.live import LiveConfig
from relayhook.relays import Relay
from relayhook.store import RequestRecord, RequestStatus, StoreError
from relayhook.store.base import IngestStore

log = logging.getLogger("relayhook.web.ingress")

PREFIX = "/in/"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class BodyTooLarge(Exception):
    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix


class ClientDisconnect(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Answer:
    """What the ingress answers: status, body, and headers beyond content-type/-length."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    async def send(self, send: Send) -> None:
        headers = [
            (b"content-length", str(len(self.body)).encode("latin-1")),
            (b"content-type", self.content_type.encode("latin-1")),
        ]
        headers += [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in self.headers
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def ingress_token(scope: Scope) -> str | None:
    """The relay token of an `/in/{token}` request, else None (not the ingress's)."""
    if scope["type"] != "http":
        return None
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if not path.startswith(PREFIX):
        return None
    token = path[len(PREFIX) :].removesuffix("/")  # a provider's form may add a slash
    return token if token and "/" not in token else None


async def read_body(receive: Receive, limit: int) -> bytes:
    """The body, counted as it streams in (Content-Length is not trusted); BodyTooLarge past
    `limit`, carrying the first `limit` bytes; ClientDisconnect if the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > limit:
            raise BodyTooLarge(b"".join(chunks)[:limit])
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@dataclass
class Ingress:
    """`/in/{token}` as a plain ASGI app, ahead of Starlette's router and middleware: one
    request's whole work is authenticate, read, map, store, and this path runs thousands of
    times a second, so it pays for nothing it does not use. `observe(relay, status, seconds)`
    is told of every answer (metrics)."""

    live: LiveConfig  # relays by token, hooks and whether each is active: read per request
    store: IngestStore
    max_body_bytes: int
    clock: Callable[[], datetime]
    new_id: Callable[[], str]
    wake: Callable[[], None] = lambda: None
    intake: Intake | None = None  # default: no spool, no limit on the wait for the store
    observe: Callable[[str | None, int, float], None] = lambda relay, status, seconds: None
    _intake: Intake = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._intake = self.intake or Intake(self.store, self.live, self.new_id, wake=self.wake)

    async def serve(self, token: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one `/in/{token}` request (`token` from `ingress_token(scope)`)."""
        started = time.perf_counter()
        relay = self.live.relays.get(token)
        try:
            answer = await self.handle(scope, receive, relay)
        except Exception:
            # What Starlette's ServerErrorMiddleware would do; the request's bytes were either
            # kept already or never read (intake.keep catches every mapping error).
            log.exception("relay %s: the ingress failed", relay.name if relay else "-")
            answer = _error(500, "internal error")
        await answer.send(send)
        self.observe(relay.name if relay else None, answer.status, time.perf_counter() - started)

    async def handle(self, scope: Scope, receive: Receive, relay: Relay | None) -> Answer:
        refused = refusal(scope)
        if relay is None:
            return _error(*refused) if refused else _error(404, "no relay at this URL")
        if refused is not None:
            return await self._refused_headers(scope, relay, *refused)
        method: str = scope["method"]
        accept = relay.connector.spec.accept
        if method not in accept.methods:
            allow = ", ".join(accept.methods)
            message = f"relay {relay.name!r} takes {allow}, not {method}"
            return _error(405, message, headers=(("Allow", allow),))
        pairs = tuple(
            (key.decode("latin-1").lower(), value.decode("latin-1"))
            for key, value in scope["headers"]
        )
        query: str = scope["query_string"].decode("latin-1")
        auth = relay.connector.spec.auth
        if not needs_body(auth) and (reason := self._authenticate(method, query, relay, pairs)):
            return await self._unauthorized(relay, reason)
        received_at = self.clock()
        request_id = self.new_id()
        try:
            body = await read_body(receive, self.max_body_bytes)
        except BodyTooLarge as exc:
            message = f"body is larger than the limit of {self.max_body_bytes} bytes"
            if needs_body(auth):
                # A signature over a body we did not read cannot be checked: nothing
                # unauthenticated is kept, as with a 401.
                log.warning("relay %s: refused an unverifiable request: %s", relay.name, message)
                return _error(413, message)
            inbound = _inbound(method, query, relay, pairs, exc.prefix)
            record = _record(
                request_id, relay, received_at, inbound, "rejected", message, truncated=True
            )
            return _answer(await self._intake.keep(relay, record))
        except ClientDisconnect:
            log.warning(
                "relay %s: refused request %s with 400: the client disconnected before "
                "the body was complete",
                relay.name,
                request_id,
                extra={"relay": relay.name, "request_id": request_id, "status": 400},
            )
            return _error(400, "the client disconnected before the body was complete")
        if needs_body(auth) and (reason := self._authenticate(method, query, relay, pairs, body)):
            return await self._unauthorized(relay, reason)
        inbound = _inbound(method, query, relay, pairs, body)
        record = _record(request_id, relay, received_at, inbound, "accepted", None)
        return _answer(await self._intake.keep(relay, record))

    async def _refused_headers(
        self, scope: Scope, relay: Relay, status: int, reason: str
    ) -> Answer:
        """A request whose headers passed a limit (web/slow.py): kept as rejected, with the
        headers read so far and no body, when what was read authenticates it."""
        method: str = scope["method"]
        pairs = tuple(
            (key.decode("latin-1").lower(), value.decode("latin-1"))
            for key, value in scope["headers"]
        )
        query: str = scope["query_string"].decode("latin-1")
        auth = relay.connector.spec.auth
        if needs_body(auth) or self._authenticate(method, query, relay, pairs):
            # Credentials we could not check (a signature over the body, or headers cut
            # before them): nothing unauthenticated is kept, as with a 401.
            log.warning("relay %s: refused a request: %s", relay.name, reason)
            return _error(status, reason)
        message = (
            f"{reason}: kept with its URL cut at that length; the body was not read"
            if status == 414
            else f"{reason}: kept with the headers read before the limit; the body was not read"
        )
        record = _record(
            self.new_id(),
            relay,
            self.clock(),
            _inbound(method, query, relay, pairs, b""),
            "rejected",
            message,
            truncated=True,
        )
        kept = await self._intake.keep(relay, record)
        return _error(status, message, None if kept.where == "nowhere" else record.id)

    def _authenticate(
        self,
        method: str,
        query: str,
        relay: Relay,
        pairs: Iterable[tuple[str, str]],
        body: bytes = b"",
    ) -> str | None:
        return check_credentials(
            relay.connector.spec.auth,
            relay.secret,
            dict(pairs),
            body,
            query=query,
            method=method,
            now=self.clock().timestamp(),
        )

    async def _unauthorized(self, relay: Relay, reason: str) -> Answer:
        log.warning("relay %s: refused a request: %s", relay.name, reason)
        try:
            # Only a counter: not worth holding the answer past the ingress's bound for.
            async with asyncio.timeout(self._intake.store_timeout):
                await self.store.record_auth_failure(relay.name, format_time(self.clock()))
        except (StoreError, TimeoutError) as exc:
            log.error(
                "relay %s: could not count a refused request: %s",
                relay.name,
                exc or "the store did not answer in time",
            )
        return _error(
            401,
            "missing or wrong credentials",
            headers=(("WWW-Authenticate", challenge(relay.connector.spec.auth)),),
        )


def refusal(scope: Scope) -> tuple[int, str] | None:
    """(status, reason) of a request the server refused for its headers (web/slow.py)."""
    refused = scope.get("extensions", {}).get("relayhook.refused")
    return None if refused is None else (refused["status"], refused["reason"])


def _inbound(
    method: str, query: str, relay: Relay, pairs: tuple[tuple[str, str], ...], body: bytes
) -> InboundRequest:
    # Credentials are redacted before mapping, so that templates and the stored copy (and so
    # `relayhook remap`) see the same headers, and no secret reaches the database.
    secret_headers = credential_headers(relay.connector.spec.auth)
    if secret_headers:
        pairs = tuple(
            (name, REDACTED if name in secret_headers else value) for name, value in pairs
        )
    return InboundRequest(method, query, pairs, body)


def _answer(kept: Kept) -> Answer:
    record = kept.record
    if kept.where == "nowhere":
        return _error(503, "the request could not be stored; send it again", record.id)
    if record.status == "rejected":
        status = 413 if record.truncated else 400
        # Once per request, as a 401 is: the reason a provider's request was refused belongs
        # in the server's log too (the handler's formatter redacts known secrets).
        log.warning(
            "relay %s: refused request %s with %d: %s",
            record.relay,
            record.id,
            status,
            record.error or "rejected",
            extra={"relay": record.relay, "request_id": record.id, "status": status},
        )
        return _error(status, record.error or "rejected", record.id)
    if kept.answer is not None:  # a handshake: the connector's rule says what to answer
        return provider_answer(kept.answer)
    if kept.result is None:  # spooled: stored, with its events, as soon as the store can
        return _json(200, {"spooled": True, "request_id": record.id})
    return Answer(
        200,
        orjson.dumps(
            {
                "accepted": kept.result.accepted,  # ids are uuids: no
                "duplicates": kept.result.duplicates,  # surrogate here
                "request_id": record.id,
            }
        ),
    )


def _record(
    request_id: str,
    relay: Relay,
    received_at: datetime,
    inbound: InboundRequest,
    status: RequestStatus,
    error: str | None,
    truncated: bool = False,
) -> RequestRecord:
    return RequestRecord(
        id=request_id,
        relay=relay.name,
        received_at=format_time(received_at),
        method=inbound.method,
        query=inbound.query,
        headers=inbound.headers,
        body=inbound.body,
        status=status,
        error=error,
        truncated=truncated,
    )


def provider_answer(answer: ProviderAnswer) -> Answer:
    """A connector's own answer (a handshake): status, headers and body as its rule made them."""
    headers = dict(answer.headers)
    content_type = headers.pop("content-type")
    if content_type.startswith("text/") and "charset=" not in content_type.lower():
        content_type += "; charset=utf-8"
    return Answer(answer.status, answer.body, content_type, tuple(headers.items()))


def _json(
    status: int, content: dict[str, object], headers: tuple[tuple[str, str], ...] = ()
) -> Answer:
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    return Answer(status, body, headers=headers)


def _error(
    status: int,
    message: str,
    request_id: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Answer:
    content: dict[str, object] = {"error": message}
    if request_id is not None:
        content["request_id"] = request_id
    return _json(status, content, headers)
