"""Diagnostics of a whole configuration: the files (connectors, the config's relays and hooks),
the hooks kept in the store, and the traffic the store has seen. The rules are pure and live in
relayhook.core.diagnostics; this module reads what they need and says where each finding is.

    findings = diagnose(settings, connectors, relays, config_hooks, stored_hooks, traffic)
    traffic = await read_traffic(store)

`relayhook check`, `serve` at start, the Manager (every change through the API and the console)
and `GET /api/diagnostics` all call `diagnose` or `hook_diagnosis`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from relayhook.core.connectors import SHIPPED_DIR, Connector
from relayhook.core.diagnostics import (
    NO_TRAFFIC,
    Finding,
    Locate,
    Scope,
    Traffic,
    connector_findings,
    hook_findings,
)
from relayhook.core.hooks import Hook
from relayhook.core.tomlpos import KeyPath, format_path, line_of, locate_keys, value_line
from relayhook.relays import Relay
from relayhook.settings import Settings
from relayhook.store.base import HistoryStore

if TYPE_CHECKING:
    from relayhook.assembly import Parts

RECENT_EVENTS = 200  # stored events each hook is rendered against (those it matches)


async def read_traffic(store: HistoryStore, *, recent: int = RECENT_EVENTS) -> Traffic:
    """The event types the store has seen, with counts, and its newest events."""
    return Traffic(await store.event_type_counts(), await store.list_events(limit=recent))


def connector_locator(connector: Connector) -> Locate:
    path = connector.path
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    lines = locate_keys(text)

    def locate(key: KeyPath) -> str:
        return f"{path}:{format_path(key)}:{value_line(text, line_of(lines, key))}"

    return locate


def config_locator(settings: Settings, index: int) -> Locate:
    where = settings.config_file or "(settings)"

    def locate(key: KeyPath) -> str:
        path = ("hooks", index, *key)
        return f"{where}:{format_path(path)}:{settings.line_of(path)}"

    return locate


def stored_locator(name: str) -> Locate:
    """Where a hook kept in the store is wrong: its name and the field."""
    return lambda key: f"hook {name!r}: {format_path(key)}"


def connector_diagnosis(connectors: Iterable[Connector], now: float) -> list[Finding]:
    return [f for c in connectors for f in connector_findings(c, connector_locator(c), now=now)]


def diagnose(
    settings: Settings,
    connectors: Mapping[str, Connector],
    relays: Iterable[Relay],
    stored_hooks: Mapping[str, Hook] | None = None,
    traffic: Traffic = NO_TRAFFIC,
    *,
    config_hooks: Mapping[str, Hook],
    with_connectors: bool = True,
    now: float | None = None,
) -> list[Finding]:
    """Every finding of a configuration: its connectors (the shipped ones are known clean and
    skipped), its config hooks at `file:hooks[i].key:line`, its stored hooks by name."""
    moment = time.time() if now is None else now
    scope = Scope(connectors, tuple(relays))
    secrets = settings.template_secrets()
    found: list[Finding] = []
    if with_connectors:
        found += connector_diagnosis(
            [c for c in connectors.values() if c.path.parent != SHIPPED_DIR], moment
        )
    hooks = config_hooks
    index = {str(raw.get("name")): i for i, raw in enumerate(settings.hooks)}
    for name, hook in hooks.items():
        found += hook_findings(
            hook, config_locator(settings, index.get(name, 0)), scope, traffic, secrets
        )
    for name, hook in (stored_hooks or {}).items():
        if name not in hooks:
            found += hook_findings(hook, stored_locator(name), scope, traffic, secrets)
    return found


def hook_diagnosis(
    hook: Hook,
    connectors: Mapping[str, Connector],
    relays: Iterable[Relay],
    traffic: Traffic = NO_TRAFFIC,
    secrets: Mapping[str, str] | None = None,
) -> list[Finding]:
    """The findings of one proposed hook (a change through the API or the console)."""
    return hook_findings(
        hook, stored_locator(hook.name), Scope(connectors, tuple(relays)), traffic, secrets or {}
    )


def connector_file_diagnosis(path: Path, now: float | None = None) -> list[Finding]:
    """Load a connector file (ConnectorError if it does not load) and diagnose it."""
    from relayhook.core.connectors import load_connector

    return connector_diagnosis([load_connector(path)], time.time() if now is None else now)


async def running_diagnosis(parts: Parts) -> list[Finding]:
    """Every finding of a running configuration: config and stored hooks, the config's
    connector folders, against the store's traffic (`GET /api/diagnostics`)."""
    live = parts.live
    config = {n: h for n, h in live.hooks.items() if live.is_config_hook(n)}
    stored = {n: h for n, h in live.hooks.items() if not live.is_config_hook(n)}
    return diagnose(
        parts.settings,
        parts.connectors,
        live.relays.values(),
        stored,
        await read_traffic(parts.store),
        config_hooks=config,
    )
