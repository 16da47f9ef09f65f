"""People, API keys and the audit log as data: roles, who acts, what they may do.

    role_allows("operator", "editor")        # False: an operator is below an editor
    Principal("ana", "person", "viewer").may("operator")

Roles are ordered: each has everything of the ones before it.
  viewer    reads everything (history, requests, events, problems, charts); never a secret
  operator  + replay, run again, acknowledge problems, switch hooks on and off, test sends
  editor    + create, change and delete relays and hooks, reveal and rotate secrets, samples
  admin     + people, API keys, settings, retention, prune, backup
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["viewer", "operator", "editor", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "editor", "admin")
PrincipalKind = Literal["person", "key", "token"]
REDACTED = "[redacted]"


def as_role(value: str) -> Role:
    """ValueError naming the roles when `value` is not one."""
    for role in ROLES:
        if value == role:
            return role
    raise ValueError(f"a role is one of {', '.join(ROLES)}, not {value!r}")


def role_allows(role: Role, needed: Role) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True, slots=True)
class Account:
    """A person. `password_hash` is None until they set one (an invite not yet taken, or a
    person who signs in through OpenID Connect only); the first admin's lives in admin_values
    (see relayhook.passwords). Times in epoch seconds."""

    id: str
    name: str
    email: str
    role: Role
    created_at: float
    password_hash: str | None = None
    disabled_at: float | None = None
    origin: str = "password"  # or "oidc": made at a first sign-in through the provider

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A bearer key for scripts. Only the SHA-256 of its token is stored; `relays` and `hooks`
    (empty: all) limit what it may touch."""

    id: str
    name: str
    role: Role
    created_by: str
    created_at: float
    expires_at: float | None = None
    relays: tuple[str, ...] = ()
    hooks: tuple[str, ...] = ()
    last_used_at: float | None = None
    revoked_at: float | None = None

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request: a person (by account id), an API key (by id) or the `[admin] token`.
    `name` is what the audit log and the console show."""

    id: str
    kind: PrincipalKind
    role: Role
    name: str
    relays: tuple[str, ...] = ()
    hooks: tuple[str, ...] = ()

    def may(self, needed: Role) -> bool:
        return role_allows(self.role, needed)

    def reaches(self, relay: str | None = None, hook: str | None = None) -> bool:
        """Whether a key limited to some relays and hooks may touch this one."""
        if relay is not None and self.relays and relay not in self.relays:
            return False
        return not (hook is not None and self.hooks and hook not in self.hooks)

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.id}"


SYSTEM = Principal("relayhook", "token", "admin", "relayhook")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the append-only audit log. `action` is a dotted name (`hook.update`,
    `signin.failure`, `deliveries.replay`), `target` what it touched (`hook:crm`), `detail`
    what else matters (a filter, a count, the configuration before and after, secrets
    redacted)."""

    at: float
    actor: str  # "person:ana", "key:<id>", "token:admin", or "anonymous"
    actor_name: str
    address: str
    action: str
    target: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)
    id: int = 0  # given by the store


SECRET_WORDS = ("secret", "password", "token", "authorization", "key", "cookie", "signature")


def redact_detail(value: Any, secrets: Sequence[str] = ()) -> Any:
    """`value` with every entry whose name says secret replaced by [redacted], and every known
    secret value cut out of the strings left (a canary never reaches the audit log)."""
    if isinstance(value, Mapping):
        return {
            str(k): (
                REDACTED
                if _secret_name(str(k)) and v not in (None, "", [], {})
                else redact_detail(v, secrets)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_detail(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            if len(secret) >= 4 and secret in value:
                value = value.replace(secret, REDACTED)
    return value


def _secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS) and lowered not in ("key_id", "keys")
