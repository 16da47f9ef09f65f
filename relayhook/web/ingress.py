"""The ingress: `/in/{token}`. Authenticate, read the body within its limit, map, store, answer.

The answer is 200 only once the raw request and its events are committed durably, or the raw
request is fsync'd to the spool because the store could not take it in time (`"spooled": true`);
a request that cannot be mapped or stored is kept as `rejected` and answered 400 with what was
wrong. What to keep, and where, is `intake`'s business; this module speaks HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from relayhook.auth import challenge, check_credentials, credential_headers, needs_body
from relayhook.events import format_time
from relayhook.intake import Intake, Kept
from relayhook.live import LiveConfig
from relayhook.mapping import InboundRequest, ProviderAnswer
from relayhook.redaction import REDACTED
from relayhook.relays import Relay
from relayhook.store import RequestRecord, RequestStatus, Store, StoreError

log = logging.getLogger("relayhook.web.ingress")


class BodyTooLarge(Exception):
    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix


async def read_body(request: Request, limit: int) -> bytes:
    """The body, counted as it streams in (Content-Length is not trusted); BodyTooLarge past
    `limit`, carrying the first `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            chunks.append(chunk)
            raise BodyTooLarge(b"".join(chunks)[:limit])
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class Ingress:
    live: LiveConfig  # relays by token, hooks and whether each is active: read per request
    store: Store
    max_body_bytes: int
    clock: Callable[[], datetime]
    new_id: Callable[[], str]
    wake: Callable[[], None] = lambda: None
    intake: Intake | None = None  # default: no spool, no limit on the wait for the store
    _intake: Intake = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._intake = self.intake or Intake(self.store, self.live, self.new_id,
                                             wake=self.wake)

    async def handle(self, request: Request) -> Response:
        relay = self.live.relays.get(request.path_params["token"])
        if relay is None:
            return _error(404, "no relay at this URL")
        accept = relay.connector.spec.accept
        if request.method not in accept.methods:
            allow = ", ".join(accept.methods)
            message = f"relay {relay.name!r} takes {allow}, not {request.method}"
            return _error(405, message, headers={"Allow": allow})
        pairs = tuple((key.decode("latin-1").lower(), value.decode("latin-1"))
                      for key, value in request.headers.raw)
        headers = dict(pairs)
        auth = relay.connector.spec.auth
        if not needs_body(auth) and (reason := self._authenticate(request, relay, headers)):
            return await self._unauthorized(relay, reason)
        received_at = self.clock()
        request_id = self.new_id()
        try:
            body = await read_body(request, self.max_body_bytes)
        except BodyTooLarge as exc:
            message = f"body is larger than the limit of {self.max_body_bytes} bytes"
            if needs_body(auth):
                # A signature over a body we did not read cannot be checked: nothing
                # unauthenticated is kept, as with a 401.
                log.warning("relay %s: refused an unverifiable request: %s", relay.name, message)
                return _error(413, message)
            inbound = self._inbound(request, relay, pairs, exc.prefix)
            record = _record(request_id, relay, received_at, inbound, "rejected", message,
                             truncated=True)
            return _answer(await self._intake.keep(relay, record))
        except ClientDisconnect:
            return _error(400, "the client disconnected before the body was complete")
        if needs_body(auth) and (reason := self._authenticate(request, relay, headers, body)):
            return await self._unauthorized(relay, reason)
        inbound = self._inbound(request, relay, pairs, body)
        record = _record(request_id, relay, received_at, inbound, "accepted", None)
        return _answer(await self._intake.keep(relay, record))

    def _authenticate(self, request: Request, relay: Relay, headers: dict[str, str],
                      body: bytes = b"") -> str | None:
        return check_credentials(relay.connector.spec.auth, relay.secret, headers, body,
                                 query=request.url.query, method=request.method,
                                 now=self.clock().timestamp())

    def _inbound(self, request: Request, relay: Relay, pairs: tuple[tuple[str, str], ...],
                 body: bytes) -> InboundRequest:
        # Credentials are redacted before mapping, so that templates and the stored copy (and so
        # `relayhook remap`) see the same headers, and no secret reaches the database.
        secret_headers = credential_headers(relay.connector.spec.auth)
        headers = tuple((name, REDACTED if name in secret_headers else value)
                        for name, value in pairs)
        return InboundRequest(request.method, request.url.query, headers, body)

    async def _unauthorized(self, relay: Relay, reason: str) -> Response:
        log.warning("relay %s: refused a request: %s", relay.name, reason)
        try:
            # Only a counter: not worth holding the answer past the ingress's bound for.
            async with asyncio.timeout(self._intake.store_timeout):
                await self.store.record_auth_failure(relay.name, format_time(self.clock()))
        except (StoreError, TimeoutError) as exc:
            log.error("relay %s: could not count a refused request: %s", relay.name,
                      exc or "the store did not answer in time")
        return _error(401, "missing or wrong credentials",
                      headers={"WWW-Authenticate": challenge(relay.connector.spec.auth)})


def _answer(kept: Kept) -> Response:
    record = kept.record
    if kept.where == "nowhere":
        return _error(503, "the request could not be stored; send it again", record.id)
    if record.status == "rejected":
        return _error(413 if record.truncated else 400, record.error or "rejected", record.id)
    if kept.answer is not None:  # a handshake: the connector's rule says what to answer
        return provider_answer(kept.answer)
    if kept.result is None:  # spooled: stored, with its events, as soon as the store can
        return JSONResponse({"spooled": True, "request_id": record.id})
    return JSONResponse({"accepted": kept.result.accepted, "duplicates": kept.result.duplicates,
                         "request_id": record.id})


def _record(request_id: str, relay: Relay, received_at: datetime, inbound: InboundRequest,
            status: RequestStatus, error: str | None, truncated: bool = False) -> RequestRecord:
    return RequestRecord(
        id=request_id, relay=relay.name, received_at=format_time(received_at),
        method=inbound.method, query=inbound.query, headers=inbound.headers, body=inbound.body,
        status=status, error=error, truncated=truncated,
    )


def provider_answer(answer: ProviderAnswer) -> Response:
    """A connector's own answer (a handshake): status, headers and body as its rule made them."""
    headers = dict(answer.headers)
    content_type = headers.pop("content-type")
    return Response(answer.body, status_code=answer.status, headers=headers,
                    media_type=content_type)


def _error(status: int, message: str, request_id: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    content: dict[str, str] = {"error": message}
    if request_id is not None:
        content["request_id"] = request_id
    return JSONResponse(content, status_code=status, headers=headers)
