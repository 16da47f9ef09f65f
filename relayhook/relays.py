"""Relays: the inbound URLs, each bound to a loaded connector and its secret."""

from __future__ import annotations

from dataclasses import dataclass, field

from relayhook.core.auth import needs_secret, secret_problem
from relayhook.core.connectors import Connector
from relayhook.settings import Settings


@dataclass(frozen=True, slots=True)
class Relay:
    name: str
    connector: Connector
    token: str = field(repr=False)
    secret: str = field(repr=False)
    source: str = "config"  # or "api": created through the API, the console or the CLI
    expect: tuple[int, float] | None = None  # at least N requests per M minutes (quiet watch)


def build_relays(settings: Settings, connectors: dict[str, Connector]) -> dict[str, Relay]:
    """Relays by token. Raises ConfigError for an unknown connector or a missing secret."""
    relays: dict[str, Relay] = {}
    for index, relay in enumerate(settings.relays):
        connector = connectors.get(relay.connector)
        if connector is None:
            known = ", ".join(sorted(connectors))
            message = f"unknown connector {relay.connector!r} (known: {known})"
            raise settings.error_at(("relays", index, "connector"), message)
        if needs_secret(connector.spec.auth) and not relay.secret:
            message = (
                f"connector {connector.id!r} authenticates with "
                f"{connector.spec.auth.scheme!r} and needs a secret"
            )
            raise settings.error_at(("relays", index, "secret"), message)
        if problem := secret_problem(connector.spec.auth, relay.secret):
            raise settings.error_at(
                ("relays", index, "secret"), f"connector {connector.id!r}: {problem}"
            )
        expect = None if relay.expect is None else (relay.expect.at_least, relay.expect.minutes)
        relays[relay.token] = Relay(relay.name, connector, relay.token, relay.secret, expect=expect)
    return relays
