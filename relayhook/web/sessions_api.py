"""The console's signed-in sessions through the API (behind the admin bearer token).

    GET    /api/sessions         open sessions, the most recently seen first: id, account,
                                 created_at, last_seen_at, expires_at, address, user_agent
    DELETE /api/sessions/{id}    sign that session out, in every process (within a second)

A session's cookie token is never shown (only its hash is stored); `id` names it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relayhook.errors import NotFoundError
from relayhook.store.base import ConsoleSession, Store
from relayhook.web.api import guard
from relayhook.web.readmodel import format_epoch


def session_json(session: ConsoleSession) -> dict[str, Any]:
    return {
        "id": session.id,
        "account": session.account,
        "created_at": format_epoch(session.created_at),
        "last_seen_at": format_epoch(session.last_seen_at),
        "expires_at": format_epoch(session.expires_at),
        "address": session.address,
        "user_agent": session.user_agent,
    }


def sessions_api_routes(store: Store, token: str, clock: Callable[[], datetime]) -> list[Route]:
    guarded = guard(token)

    async def list_sessions(request: Request) -> dict[str, Any]:
        found = await store.list_sessions(None, clock().timestamp())
        return {"sessions": [session_json(session) for session in found]}

    async def revoke_session(request: Request) -> Response:
        if not await store.revoke_session(request.path_params["id"]):
            raise NotFoundError("no open session with that id")
        return Response(status_code=204)

    return [
        Route("/api/sessions", guarded(list_sessions), methods=["GET"]),
        Route("/api/sessions/{id}", guarded(revoke_session), methods=["DELETE"]),
    ]
