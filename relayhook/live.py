"""The live configuration: relays and hooks as this process sees them now.

The store holds the one truth: hooks and relays created at run time, the config file's hooks (as
stored at start), whether each hook is active (a person, or a 410 seen by any worker), and a
version that every change moves. Each process keeps a compiled copy and `refresh`es it when the
version moved: a poll of one number, so every role sees a change within its poll interval.

    live = LiveConfig(config_hooks, config_relays, connectors=connectors, sealer=sealer)
    await live.sync(store, now)        # at start: store the config's hooks, read the rest
    await live.refresh(store)          # cheap when nothing changed
    live.relays[token], live.hooks[name], live.active()[name]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from relayhook.core.connectors import Connector
from relayhook.core.hooks import PRESETS_DIR, Hook, validate_hook
from relayhook.core.redaction import restore_secrets
from relayhook.errors import ConflictError, InvalidError
from relayhook.relays import Relay
from relayhook.sealing import Sealer, SealError
from relayhook.store.base import ConfigStore, LiveStore, StoredHook, StoredRelay

log = logging.getLogger("relayhook.live")

CONFIG_INACTIVE = "inactive in the config"
RUN_SETTINGS = "run_settings"  # the admin value the console's Settings page writes


@dataclass(frozen=True)
class RunSettings:
    """Settings changed at run time in the console, beside the config file's: networks hooks
    may reach although private (added to `[delivery] allow_cidrs`) and the public URL (over
    `[server] public_url`). Every process applies them at its next refresh."""

    allow_cidrs: tuple[str, ...] = ()
    public_url: str = ""

    @classmethod
    def parse(cls, text: str | None) -> RunSettings:
        if not text:
            return cls()
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the run-time settings are not a JSON object")
        return cls(
            allow_cidrs=tuple(str(c) for c in data.get("allow_cidrs", [])),
            public_url=str(data.get("public_url", "")),
        )

    def dump(self) -> str:
        return json.dumps({"allow_cidrs": list(self.allow_cidrs), "public_url": self.public_url})


class LiveConfig:
    """Relays (by token) and hooks (by name) from the config file and from the store, and
    whether each hook is active now: active as written and not switched off at run time."""

    def __init__(
        self,
        hooks: Mapping[str, Hook],
        relays: Mapping[str, Relay] | None = None,
        *,
        connectors: Mapping[str, Connector] | None = None,
        sealer: Sealer | None = None,
        presets_dir: Any = PRESETS_DIR,
    ) -> None:
        self._config_hooks = dict(hooks)
        self._config_relays = {relay.name: relay for relay in (relays or {}).values()}
        self._connectors = dict(connectors or {})
        self._sealer = sealer
        self._presets_dir = presets_dir
        self._compiled: dict[str, tuple[float, Hook]] = {}  # api hooks, by name: (updated_at, hook)
        self._disabled: dict[str, str] = {}
        self._sealed: dict[str, str | None] = {}  # api hooks' sealed secrets, by name
        self.written: dict[str, dict[str, Any]] = {}  # api hooks as written, [redacted] secrets
        self.hooks: dict[str, Hook] = dict(hooks)
        self.relays: dict[str, Relay] = dict(relays or {})
        self.version = -1
        self._active = self._compute_active()
        self.run_settings = RunSettings()
        self._run_text: str | None = None
        self._followers: list[Callable[[RunSettings], None]] = []

    # -- what the ingress, the dispatcher and the API read

    def active(self) -> Mapping[str, bool]:
        """Per hook name: active now. Computed when something changed, not per call (the
        ingress asks for every request)."""
        return self._active

    def reason(self, name: str) -> str | None:
        hook = self.hooks.get(name)
        if hook is not None and not hook.active:
            return CONFIG_INACTIVE
        return self._disabled.get(name)

    def relay_named(self, name: str) -> Relay | None:
        return next((relay for relay in self.relays.values() if relay.name == name), None)

    def is_config_hook(self, name: str) -> bool:
        return name in self._config_hooks

    def is_config_relay(self, name: str) -> bool:
        return name in self._config_relays

    def kept_secrets(self, name: str) -> dict[str, Any]:
        """The secret values of a run-time hook, opened (for an edit that keeps them)."""
        sealed = self._sealed.get(name)
        return self.sealer().open(sealed) if sealed else {}

    def sealer(self) -> Sealer:
        if self._sealer is None:
            raise RuntimeError("this process was assembled without a secrets key")
        return self._sealer

    # -- keeping up with the store

    async def sync(self, store: LiveStore, now: float) -> None:
        """At start: refuse names the config shares with run-time relays or hooks, store the
        config's hooks (no secret values), read everything, and pause the deliveries of
        inactive hooks and resume those of active ones."""
        taken_hooks = {h.name for h in await store.list_hooks() if h.source != "config"}
        taken_relays = {r.name for r in await store.list_relays()}
        for kind, names, taken in (
            ("hook", self._config_hooks, taken_hooks),
            ("relay", self._config_relays, taken_relays),
        ):
            for name in sorted(set(names) & taken):
                raise ConflictError(
                    f"the config defines a {kind} {name!r}, and one of that name was created"
                    f" through the API or the console: rename one of them"
                )
        specs = {name: hook.stored_spec() for name, hook in self._config_hooks.items()}
        await store.save_hooks("config", specs, now)
        await self.refresh(store, force=True)
        states = await store.hook_states()
        for name in self._config_hooks:
            is_active = self._active[name]
            state = states.get(name)
            if state is None or state[0] != is_active:
                reason = None if is_active else self.reason(name)
                await store.set_hook_active(name, is_active, reason, now)

    def follow_settings(self, follower: Callable[[RunSettings], None]) -> None:
        """Call `follower` with the run-time settings now and whenever they change."""
        self._followers.append(follower)
        follower(self.run_settings)

    async def refresh_settings(self, store: LiveStore) -> bool:
        """Read the run-time settings (the console's Settings page): one row, every refresh.
        True if they changed."""
        text = await store.get_admin_value(RUN_SETTINGS)
        if text == self._run_text:
            return False
        settings = RunSettings.parse(text)
        for follower in self._followers:
            follower(settings)
        self.run_settings, self._run_text = settings, text
        return True

    async def refresh(self, store: LiveStore, *, force: bool = False) -> bool:
        """Read the store again if its config version moved (or `force`). True if it did."""
        try:
            await self.refresh_settings(store)
        except ValueError as exc:  # written by a newer or broken version: keep what holds
            log.error("cannot apply the run-time settings: %s", exc)
        version = await store.config_version()
        if version == self.version and not force:
            return False
        # The version is read first: what follows is at least as new as it.
        states = await store.hook_states()
        stored_hooks = await store.list_hooks()
        stored_relays = await store.list_relays()
        self._apply(states, stored_hooks, stored_relays)
        self.version = version
        return True

    async def set_active(
        self, store: ConfigStore, name: str, active: bool, reason: str | None, now: float
    ) -> int:
        """Switch a hook on or off in the store (every process follows) and here at once.
        Here only once the store took it: a failed write leaves both as they were."""
        changed = await store.set_hook_active(name, active, reason, now)
        if active:
            self._disabled.pop(name, None)
        else:
            self._disabled[name] = reason or "disabled"
        self._active = self._compute_active()
        if active:
            log.info(
                "hook %r activated: %d deliveries resumed", name, changed, extra={"hook": name}
            )
        else:
            log.warning(
                "hook %r deactivated: %s; %d deliveries wait, paused, until it is activated",
                name,
                reason or "disabled",
                changed,
                extra={"hook": name, "reason": reason},
            )
        return changed

    def _apply(
        self,
        states: Mapping[str, tuple[bool, str | None, float]],
        stored_hooks: list[StoredHook],
        stored_relays: list[StoredRelay],
    ) -> None:
        hooks = dict(self._config_hooks)
        compiled: dict[str, tuple[float, Hook]] = {}
        written: dict[str, dict[str, Any]] = {}
        sealed: dict[str, str | None] = {}
        for stored in stored_hooks:
            if stored.source == "config" or stored.name in hooks:
                continue
            hook = self._compile(stored)
            if hook is not None:
                hooks[stored.name] = hook
                compiled[stored.name] = (stored.updated_at, hook)
                written[stored.name], sealed[stored.name] = stored.spec, stored.sealed
        relays = {relay.token: relay for relay in self._config_relays.values()}
        for stored_relay in stored_relays:
            relay = self._open_relay(stored_relay)
            if relay is not None and stored_relay.name not in self._config_relays:
                relays[relay.token] = relay
        self._compiled, self.written, self._sealed = compiled, written, sealed
        self.hooks, self.relays = hooks, relays
        self._disabled = {
            name: reason or "disabled"
            for name, (active, reason, _) in states.items()
            if not active and reason != CONFIG_INACTIVE
        }
        self._active = self._compute_active()

    def remember(self, hook: Hook, updated_at: float) -> None:
        """A run-time hook just compiled and stored at `updated_at`: the next refresh takes it
        as it is instead of compiling it again."""
        self._compiled[hook.name] = (updated_at, hook)

    def _compile(self, stored: StoredHook) -> Hook | None:
        known = self._compiled.get(stored.name)
        if known is not None and known[0] == stored.updated_at:
            return known[1]
        try:
            secrets = self.sealer().open(stored.sealed) if stored.sealed else {}
            return validate_hook(restore_secrets(stored.spec, secrets), self._presets_dir)
        except (SealError, InvalidError, RuntimeError) as exc:
            log.error("hook %r cannot be loaded and is left out: %s", stored.name, exc)
            return None

    def _open_relay(self, stored: StoredRelay) -> Relay | None:
        connector = self._connectors.get(stored.connector)
        if connector is None:
            log.error(
                "relay %r is left out: no connector %r is loaded", stored.name, stored.connector
            )
            return None
        try:
            sealed = self.sealer().open(stored.sealed)
        except (SealError, RuntimeError) as exc:
            log.error("relay %r is left out: %s", stored.name, exc)
            return None
        expect = json.loads(stored.expect) if stored.expect else None
        return Relay(
            stored.name,
            connector,
            sealed["token"],
            sealed["secret"],
            source="api",
            expect=None if expect is None else (expect["at_least"], expect["minutes"]),
        )

    def _compute_active(self) -> dict[str, bool]:
        return {
            name: hook.active and name not in self._disabled for name, hook in self.hooks.items()
        }
