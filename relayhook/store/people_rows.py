"""What both engines share about people, API keys and the audit log: columns, row readers and
the audit filter (written with `?`; PostgreSQL numbers them)."""

from __future__ import annotations

import json
from typing import Any

from relayhook.core.people import Account, ApiKey, AuditEntry, as_role

Row = tuple[Any, ...]

ACCOUNT = "id, name, email, role, password_hash, created_at, disabled_at, origin"
KEY = "id, name, role, created_by, created_at, expires_at, relays, hooks, last_used_at, revoked_at"
AUDIT = "id, at, actor, actor_name, address, action, target, detail"


def account_of(row: Row) -> Account:
    id_, name, email, role, hashed, created, disabled, origin = row
    return Account(id_, name, email, as_role(role), created, hashed, disabled, origin)


def key_of(row: Row) -> ApiKey:
    id_, name, role, by, created, expires, relays, hooks, used, revoked = row
    return ApiKey(
        id_,
        name,
        as_role(role),
        by,
        created,
        expires,
        tuple(json.loads(relays)),
        tuple(json.loads(hooks)),
        used,
        revoked,
    )


def audit_of(row: Row) -> AuditEntry:
    id_, at, actor, actor_name, address, action, target, detail = row
    return AuditEntry(at, actor, actor_name, address, action, target, json.loads(detail), id_)


def audit_filters(
    actor: str | None,
    action: str | None,
    target: str | None,
    since: float | None,
    before: int | None,
) -> tuple[str, list[Any]]:
    """The WHERE clause (with `?`) both engines use: `action` matches its prefix
    (`hook` finds hook.update and hook.delete)."""
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in (
        ("(actor = ? OR actor_name = ?)", actor),
        ("target = ?", target),
        ("at >= ?", since),
        ("id < ?", before),
    ):
        if value is not None:
            clauses.append(clause)
            params += [value] * clause.count("?")
    if action is not None:
        clauses.append("(action = ? OR action LIKE ?)")
        params += [action, action.replace("%", "").replace("_", "") + ".%"]
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params
