"""Changing relays and hooks while running: what the JSON API, the console and the CLI call
(actions on what was received and sent are relayhook.operations').

Every change is validated by the same models as the config file, its secrets are sealed before
the store sees them, and it is applied to this process at once (other processes follow within
their poll of the config version).

    manager = Manager(store, live, connectors, public_url="https://relay.example.com",
                      policy=policy)
    relay = await manager.create_relay("shop", "generic")   # relay.secret: shown once here
    hook = await manager.create_hook({"name": "crm", "events": ["*"], "url": "https://..."})

Every hook saved is diagnosed first (relayhook.diagnostics, against the examples and the store's
traffic): an error refuses it with FindingsError (an InvalidError: 422, each error at its key
path, `findings` holding every finding), unless the caller accepts them explicitly:

    findings = await manager.proposed_findings(raw)            # nothing saved; name= to replace
    hook = await manager.create_hook(raw, accept_findings=True) # "Save anyway"
    findings = await manager.hook_findings(hook.name)           # what is left to fix

Errors: InvalidError (each problem at its key path), FindingsError, ConflictError (a name taken,
or the config file defines it), NotFoundError.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from relayhook.core.auth import as_hmac, needs_secret, secret_problem
from relayhook.core.connectors import Auth, Connector
from relayhook.core.diagnostics import Finding
from relayhook.core.hooks import Hook, hook_name_problem, validate_hook
from relayhook.core.redaction import restore_secrets, secret_values, still_redacted, strip_secrets
from relayhook.core.ssrf import DestinationPolicy, DestinationRefused, Resolver
from relayhook.core.tomlpos import KeyPath
from relayhook.delivery.destinations import SystemResolver, check_destination
from relayhook.errors import ConflictError, FindingsError, InvalidError, NotFoundError, SpecError
from relayhook.live import LiveConfig
from relayhook.relays import Relay
from relayhook.store.base import ManagedStore, StoredHook, StoredRelay

Compiled = tuple[Mapping[str, Any], Hook]  # a spec, and the hook validate_hook made of it
RELAY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")  # \Z: `$` takes a final "\n"
RESERVED_RELAY_NAMES = frozenset({"new"})  # /relays/new
MAX_SECRET = 1000


def new_token() -> str:
    return secrets.token_urlsafe(18)


def new_secret(auth: Auth | None = None) -> str:
    """32 random bytes, URL-safe: fits a Basic Auth string, a header and a query alike; a
    `whsec_<base64>` secret for a scheme that needs one (standard-webhooks)."""
    hmac_auth = as_hmac(auth) if auth is not None else None
    if hmac_auth is not None and hmac_auth.secret_format == "whsec":
        return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class ConnectorInfo:
    """What a person choosing a connector needs to see."""

    id: str
    title: str
    description: str
    setup: str
    event_types: tuple[str, ...]
    example: str | None


def describe_connector(connector: Connector) -> ConnectorInfo:
    spec = connector.spec
    types = tuple(dict.fromkeys(rule.type for rule in spec.events if rule.type is not None))
    body = connector.example_body()
    return ConnectorInfo(
        spec.id,
        spec.title,
        spec.description,
        spec.setup,
        types,
        body.decode("utf-8", errors="replace") if body is not None else None,
    )


def expect_rule(expect: Any) -> tuple[int, float]:
    """`{"at_least": N, "minutes": M}` as a rule; InvalidError saying what is wrong."""
    errors = []
    if not isinstance(expect, dict) or set(expect) != {"at_least", "minutes"}:
        raise InvalidError(
            [
                SpecError(
                    ("expect",),
                    'give {"at_least": N, "minutes": M}, or null to use the learned traffic',
                )
            ]
        )
    at_least, minutes = expect["at_least"], expect["minutes"]
    if isinstance(at_least, bool) or not isinstance(at_least, int) or at_least < 1:
        errors.append(SpecError(("expect", "at_least"), "a whole number of requests, 1 or more"))
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or minutes <= 0:
        errors.append(SpecError(("expect", "minutes"), "a number of minutes above 0"))
    if errors:
        raise InvalidError(errors)
    return at_least, float(minutes)


def finding_key(finding: Finding) -> KeyPath:
    """The key path of a stored hook's finding (`hook 'x': retry.schedule`)."""
    from relayhook.core.connectors import _key_path

    return _key_path(finding.location.partition(": ")[2])


class Manager:
    def __init__(
        self,
        store: ManagedStore,
        live: LiveConfig,
        connectors: Mapping[str, Connector],
        *,
        public_url: str,
        policy: DestinationPolicy,
        resolver: Resolver | None = None,
        clock: Callable[[], float] = time.time,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        self.store, self.live, self.connectors = store, live, connectors
        self.secrets = secrets or {}  # `{{ secrets.x }}`: hooks are rendered by diagnostics
        self.public_url = public_url.rstrip("/")
        self.policy, self.resolver, self.clock = policy, resolver or SystemResolver(), clock

    def relay_url(self, relay: Relay) -> str:
        return f"{self.public_url}/in/{relay.token}"

    # -- relays

    def relay(self, name: str) -> Relay:
        relay = self.live.relay_named(name)
        if relay is None:
            raise NotFoundError(f"no relay named {name!r}")
        return relay

    async def create_relay(self, name: str, connector: str, secret: str | None = None) -> Relay:
        """A new relay at a new URL; `secret` made up when not given (then shown once)."""
        errors = []
        if not isinstance(name, str) or not RELAY_NAME.match(name):
            errors.append(
                SpecError(
                    ("name",),
                    "a name is 1 to 100 letters, digits, '.', '_' or"
                    " '-', starting with a letter or digit",
                )
            )
        elif name.lower() in RESERVED_RELAY_NAMES:
            errors.append(
                SpecError(
                    ("name",),
                    f"{name!r} is taken by a console page "
                    f"(/relays/{name.lower()}): add a word, such as "
                    f"'{name}-relay'",
                )
            )
        if connector not in self.connectors:
            known = ", ".join(sorted(self.connectors))
            errors.append(SpecError(("connector",), f"no connector {connector!r} (known: {known})"))
        if secret is not None and (
            not isinstance(secret, str)
            or not 1 <= len(secret) <= MAX_SECRET
            or secret.strip() != secret
        ):
            errors.append(
                SpecError(
                    ("secret",),
                    f"a secret is 1 to {MAX_SECRET} characters, with no space at either end",
                )
            )
        problem = (
            secret_problem(self.connectors[connector].spec.auth, secret)
            if connector in self.connectors and isinstance(secret, str)
            else None
        )
        if problem is not None:
            errors.append(SpecError(("secret",), problem))
        if errors:
            raise InvalidError(errors)
        if self.live.relay_named(name) is not None or self.live.is_config_relay(name):
            raise ConflictError(f"a relay named {name!r} exists already")
        now = self.clock()
        auth = self.connectors[connector].spec.auth
        relay = Relay(
            name, self.connectors[connector], new_token(), secret or new_secret(auth), source="api"
        )
        sealed = self.live.sealer().seal({"token": relay.token, "secret": relay.secret})
        if not await self.store.create_relay(StoredRelay(name, connector, "api", sealed, now, now)):
            raise ConflictError(f"a relay named {name!r} exists already")
        await self.live.refresh(self.store)
        return relay

    async def relay_secret(self, name: str, *, rotate: bool = False) -> Relay:
        """The relay with its secret; `rotate` makes a new one and the old stops working at
        once. A connector without credentials is authenticated by its URL alone: there the
        URL's token is what rotates."""
        relay = self.relay(name)
        if not rotate:
            return relay
        if relay.source == "config":
            raise ConflictError(
                f"relay {name!r} is defined in the config file: change its secret there"
            )
        if needs_secret(relay.connector.spec.auth):
            rotated = Relay(
                name, relay.connector, relay.token, new_secret(relay.connector.spec.auth), "api"
            )
        else:
            rotated = Relay(name, relay.connector, new_token(), new_secret(), "api")
        sealed = self.live.sealer().seal({"token": rotated.token, "secret": rotated.secret})
        if not await self.store.update_relay(name, sealed=sealed, at=self.clock()):
            raise NotFoundError(f"no relay named {name!r}")
        await self.live.refresh(self.store)
        return rotated

    async def set_expect(self, name: str, expect: Any) -> Relay:
        """Give a run-time relay a fixed quiet rule, `{"at_least": N, "minutes": M}` (at
        least N requests per M minutes), or take it away (None): the quiet watch uses it
        instead of the traffic it learned."""
        relay = self.relay(name)
        if relay.source == "config":
            raise ConflictError(
                f"relay {name!r} is defined in the config file: set its expect there"
            )
        rule = None if expect is None else expect_rule(expect)
        if not await self.store.set_relay_expect(
            name,
            None if rule is None else json.dumps({"at_least": rule[0], "minutes": rule[1]}),
            at=self.clock(),
        ):
            raise NotFoundError(f"no relay named {name!r}")
        await self.live.refresh(self.store)
        return self.relay(name)

    async def delete_relay(self, name: str) -> None:
        """Its URL answers 404 from now on; its requests and events stay."""
        relay = self.relay(name)
        if relay.source == "config":
            raise ConflictError(f"relay {name!r} is defined in the config file: remove it there")
        if not await self.store.delete_relay(name):
            raise NotFoundError(f"no relay named {name!r}")
        await self.live.refresh(self.store)

    # -- hooks

    def hook(self, name: str) -> Hook:
        hook = self.live.hooks.get(name)
        if hook is None:
            raise NotFoundError(f"no hook named {name!r}")
        return hook

    def written(self, name: str) -> dict[str, Any]:
        """The hook as written (preset not merged in), [redacted] for each secret: what an
        editor shows and may send back unchanged."""
        hook = self.hook(name)
        return self.live.written.get(name) or hook.stored_spec()

    async def create_hook(
        self,
        raw: Mapping[str, Any],
        *,
        compiled: Compiled | None = None,
        accept_findings: bool = False,
    ) -> Hook:
        """A new run-time hook. `compiled`: (spec, validate_hook(spec)) if the caller compiled
        it already (the console's form has); taken when `spec` is exactly what is saved, so
        that a hook is compiled once per save. Refused with FindingsError (422) when
        diagnostics finds an error in it, unless `accept_findings` (the console's "Save
        anyway")."""
        name = raw.get("name")
        if isinstance(name, str) and name in self.live.hooks:
            raise ConflictError(f"a hook named {name!r} exists already")
        if (problem := hook_name_problem(name)) is not None:
            raise InvalidError([SpecError(("name",), problem)])
        hook = await self._validate(dict(raw), {}, compiled)
        await self._refuse_errors(hook, accept_findings)
        await self._put(hook, dict(raw), create=True)
        return self.live.hooks[hook.name]

    async def replace_hook(
        self,
        name: str,
        raw: Mapping[str, Any],
        *,
        compiled: Compiled | None = None,
        accept_findings: bool = False,
    ) -> Hook:
        """Replace a run-time hook; values still shown as [redacted] keep their secret.
        `compiled` as for `create_hook`, of the spec with those secrets put back; diagnostics
        as for create_hook."""
        full, kept = self._replacement(name, raw)
        hook = await self._validate(full, kept, compiled)
        await self._refuse_errors(hook, accept_findings)
        await self._put(hook, full, create=False)
        return self.live.hooks[name]

    async def proposed_findings(
        self, raw: Mapping[str, Any], name: str | None = None
    ) -> list[Finding]:
        """What diagnostics finds in a hook before it is saved (a new one, or a replacement
        of hook `name`); InvalidError when it does not even validate. Nothing is saved."""
        if name is None:
            hook = await self._validate(dict(raw), {})
        else:
            full, kept = self._replacement(name, raw)
            hook = await self._validate(full, kept)
        return await self._findings_of(hook)

    async def hook_findings(self, name: str) -> list[Finding]:
        """What diagnostics finds in a hook as it is now."""
        return await self._findings_of(self.hook(name))

    def _replacement(
        self, name: str, raw: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        self.hook(name)
        if self.live.is_config_hook(name):
            raise ConflictError(f"hook {name!r} is defined in the config file: change it there")
        given = {**raw, "name": raw.get("name", name)}
        if given["name"] != name:
            raise InvalidError(
                [
                    SpecError(
                        ("name",),
                        "a hook keeps its name: create a new hook and delete this one to rename it",
                    )
                ]
            )
        kept = self.live.kept_secrets(name)
        return restore_secrets(given, kept), kept

    async def _findings_of(self, hook: Hook) -> list[Finding]:
        from relayhook.diagnostics import hook_diagnosis, read_traffic

        return hook_diagnosis(
            hook,
            self.connectors,
            self.live.relays.values(),
            await read_traffic(self.store),
            self.secrets,
        )

    async def _refuse_errors(self, hook: Hook, accept: bool) -> None:
        findings = await self._findings_of(hook)
        errors = [f for f in findings if f.level == "error"]
        if errors and not accept:
            raise FindingsError(
                [SpecError(finding_key(f), f.message) for f in errors],
                [f.to_json() for f in findings],
            )

    async def delete_hook(self, name: str) -> int:
        """Remove a run-time hook; its unsent deliveries end `cancelled`. Returns how many."""
        self.hook(name)
        if self.live.is_config_hook(name):
            raise ConflictError(f"hook {name!r} is defined in the config file: remove it there")
        cancelled = await self.store.delete_hook(name, at=self.clock())
        if cancelled is None:
            raise NotFoundError(f"no hook named {name!r}")
        await self.live.refresh(self.store)
        return cancelled

    async def set_active(self, name: str, active: bool, reason: str | None = None) -> int:
        """Switch a hook on (its paused deliveries are sent) or off (they wait, `paused`)."""
        hook = self.hook(name)
        if active and not hook.active:
            raise ConflictError(f"hook {name!r} is inactive in the config file: change it there")
        return await self.live.set_active(
            self.store,
            name,
            active,
            None if active else reason or "switched off by a person",
            self.clock(),
        )

    async def _validate(
        self, raw: dict[str, Any], kept: Mapping[str, Any], compiled: Compiled | None = None
    ) -> Hook:
        unknown = still_redacted(raw)
        if unknown:
            raise InvalidError(
                [
                    SpecError(
                        tuple(key.split(".", 1)),
                        "[redacted] stands for a secret this hook does not have: type its value",
                    )
                    for key in unknown
                ]
            )
        hook = compiled[1] if compiled is not None and compiled[0] == raw else validate_hook(raw)
        if hook.url.is_constant:
            try:
                await check_destination(hook.url.source, self.policy, self.resolver)
            except DestinationRefused as exc:
                raise InvalidError([SpecError(("url",), f"destination refused: {exc}")]) from exc
            except OSError:
                pass  # no DNS now: the address is checked again when each request is sent
        return hook

    async def _put(self, hook: Hook, raw: dict[str, Any], *, create: bool) -> None:
        found = secret_values(raw)
        sealed = self.live.sealer().seal(found) if found else None
        stored = StoredHook(hook.name, "api", strip_secrets(raw), sealed, self.clock())
        if not await self.store.put_hook(stored, create=create):
            if create:
                raise ConflictError(f"a hook named {hook.name!r} exists already")
            raise NotFoundError(f"no hook named {hook.name!r}")
        self.live.remember(hook, stored.updated_at)  # the refresh takes it, not compiles it
        await self.live.refresh(self.store)
