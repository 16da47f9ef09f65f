"""Relays: the inbound URLs, each bound to a loaded connector and its secret."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from relayhook.auth import needs_secret
from relayhook.connectors import Connector
from relayhook.settings import ConfigError, RelaySettings
from relayhook.tomlpos import locate_error


@dataclass(frozen=True, slots=True)
class Relay:
    name: str
    connector: Connector
    token: str = field(repr=False)
    secret: str = field(repr=False)


def _error(config: Path | None, loc: tuple[str | int, ...], message: str) -> ConfigError:
    text = config.read_text(encoding="utf-8") if config is not None and config.is_file() else ""
    key, line = locate_error(text, loc)
    return ConfigError(f"{config or '(settings)'}:{key}:{line}: {message}")


def build_relays(
    configured: Sequence[RelaySettings], connectors: dict[str, Connector], config: Path | None
) -> dict[str, Relay]:
    """Relays by token. Raises ConfigError for an unknown connector or a missing secret."""
    relays: dict[str, Relay] = {}
    for index, relay in enumerate(configured):
        connector = connectors.get(relay.connector)
        if connector is None:
            known = ", ".join(sorted(connectors))
            message = f"unknown connector {relay.connector!r} (known: {known})"
            raise _error(config, ("relays", index, "connector"), message)
        if needs_secret(connector.spec.auth) and not relay.secret:
            message = (
                f"connector {connector.id!r} authenticates with "
                f"{connector.spec.auth.scheme!r} and needs a secret"
            )
            raise _error(config, ("relays", index, "secret"), message)
        relays[relay.token] = Relay(relay.name, connector, relay.token, relay.secret)
    return relays
