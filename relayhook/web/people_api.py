"""People, API keys and the audit log through the API (admins; see relayhook.core.policy).

GET    /api/people             every account: id, name, email, role, disabled, origin
GET    /api/keys               every key: id, name, role, relays, hooks, expiry, last use
POST   /api/keys               {"name", "role", "expires_at"?, "relays"?, "hooks"?} -> 201
                               with `token` (shown this once; only its hash is kept)
DELETE /api/keys/{id}          revoke it: refused by every process within a second
GET    /api/audit?actor=&action=&target=&since=&before=&limit=   the audit log, newest first
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relayhook.assembly import Parts
from relayhook.core.events import parse_time
from relayhook.core.people import Account, ApiKey, AuditEntry, Principal
from relayhook.errors import InvalidError, NotFoundError, SpecError
from relayhook.people import People
from relayhook.web.api import ApiError, guard
from relayhook.web.readmodel import format_epoch

MAX_AUDIT = 500


def account_json(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "email": account.email,
        "role": account.role,
        "created_at": format_epoch(account.created_at),
        "disabled": not account.active,
        "origin": account.origin,
    }


def key_json(key: ApiKey, now: float) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "role": key.role,
        "relays": list(key.relays),
        "hooks": list(key.hooks),
        "created_by": key.created_by,
        "created_at": format_epoch(key.created_at),
        "expires_at": format_epoch(key.expires_at) if key.expires_at else None,
        "last_used_at": format_epoch(key.last_used_at) if key.last_used_at else None,
        "revoked": key.revoked_at is not None,
        "usable": key.usable(now),
    }


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": format_epoch(entry.at),
        "actor": entry.actor,
        "actor_name": entry.actor_name,
        "address": entry.address,
        "action": entry.action,
        "target": entry.target,
        "detail": entry.detail,
    }


def principal_of(request: Request) -> Principal:
    principal = request.scope.get("principal")
    if not isinstance(principal, Principal):  # relayhook.web.access lets no stranger here
        raise ApiError(401, "missing or wrong bearer token")
    return principal


def _time(text: str, name: str) -> float:
    try:
        return parse_time(text).timestamp()
    except ValueError:
        raise ApiError(
            400, f"{name} must be a time like 2026-12-04T10:00:00Z, not {text!r}"
        ) from None


def _names(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidError([SpecError((field,), "a list of names")])
    return value


def people_api_routes(people: People, clock: Callable[[], datetime]) -> list[Route]:
    guarded = guard("")

    async def list_people(request: Request) -> dict[str, Any]:
        return {"people": [account_json(a) for a in await people.store.list_accounts()]}

    async def list_keys(request: Request) -> dict[str, Any]:
        now = clock().timestamp()
        return {"keys": [key_json(k, now) for k in await people.store.list_keys()]}

    async def create_key(request: Request) -> Response:
        data = await request.json()
        if not isinstance(data, dict):
            raise ApiError(400, "send a JSON object")
        expires = data.get("expires_at")
        key, token = await people.create_key(
            str(data.get("name", "")),
            str(data.get("role", "")),
            by=principal_of(request),
            expires_at=_time(expires, "expires_at") if isinstance(expires, str) else None,
            relays=_names(data.get("relays"), "relays"),
            hooks=_names(data.get("hooks"), "hooks"),
        )
        return JSONResponse({**key_json(key, clock().timestamp()), "token": token}, 201)

    async def revoke_key(request: Request) -> Response:
        if not await people.revoke_key(request.path_params["id"]):
            raise NotFoundError("no usable key with that id")
        return Response(status_code=204)

    async def list_audit(request: Request) -> dict[str, Any]:
        query = request.query_params
        raw_limit, before = query.get("limit", "50"), query.get("before")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_AUDIT:
            raise ApiError(400, f"limit must be a whole number from 1 to {MAX_AUDIT}")
        if before is not None and not before.isdigit():
            raise ApiError(400, "before must be the id of an audit line")
        since = query.get("since")
        entries = await people.store.list_audit(
            actor=query.get("actor") or None,
            action=query.get("action") or None,
            target=query.get("target") or None,
            since=_time(since, "since") if since else None,
            before=int(before) if before else None,
            limit=int(raw_limit),
        )
        return {"audit": [audit_json(e) for e in entries]}

    return [
        Route("/api/people", guarded(list_people), methods=["GET"]),
        Route("/api/keys", guarded(list_keys), methods=["GET"]),
        Route("/api/keys", guarded(create_key), methods=["POST"]),
        Route("/api/keys/{id}", guarded(revoke_key), methods=["DELETE"]),
        Route("/api/audit", guarded(list_audit), methods=["GET"]),
    ]


async def describe(parts: Parts, kind: str, name: str) -> dict[str, Any] | None:
    """A relay's or a hook's configuration as the audit log keeps it: no secret value."""
    if kind == "hook":
        if name not in parts.live.hooks:
            return None
        return {"spec": parts.manager.written(name), "active": parts.live.active()[name]}
    relay = parts.live.relay_named(name)
    if relay is None:
        return None
    return {"name": relay.name, "connector": relay.connector.id, "source": relay.source}


def live_secrets(parts: Parts) -> list[str]:
    """Every secret value the live configuration holds, for the audit log to cut out."""
    found: list[str] = []
    for relay in parts.live.relays.values():
        found += [relay.secret, relay.token]
    for name, hook in parts.live.hooks.items():
        if hook.signing_secret is not None:
            found.append(hook.signing_secret.source)
        found += _strings(parts.live.kept_secrets(name)) if name in parts.live.written else []
    found += [v for v in parts.settings.template_secrets().values() if isinstance(v, str)]
    return [value for value in found if value]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
