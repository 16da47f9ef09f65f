"""The live configuration: the hooks (and, with them, the relays) as every process sees them now.

The store holds the one truth (definitions, whether each hook is active, a change counter); each
process keeps a compiled copy and refreshes it when the counter moves.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from relayhook.hooks import Hook
from relayhook.store.base import Store

CONFIG_INACTIVE = "inactive in the config"
log = logging.getLogger("relayhook.live")


class HookRegistry:
    """The configured hooks and whether each is active now: active in the config and not
    disabled at run time (a 410, or the API), as remembered in the store."""

    def __init__(self, hooks: Mapping[str, Hook]) -> None:
        self.hooks = dict(hooks)
        self._disabled: dict[str, str] = {}

    def active(self) -> dict[str, bool]:
        return {name: hook.active and name not in self._disabled for name, hook in
                self.hooks.items()}

    def reason(self, name: str) -> str | None:
        hook = self.hooks.get(name)
        if hook is not None and not hook.active:
            return CONFIG_INACTIVE
        return self._disabled.get(name)

    async def refresh(self, store: Store) -> None:
        """Read the run-time states (another process may have changed them)."""
        self._disabled = _runtime_disabled(await store.hook_states())

    async def sync(self, store: Store, now: float) -> None:
        """At start: store the config's hooks (no secret values), pause the deliveries of
        inactive hooks and resume those of active ones."""
        await store.save_hooks("config", {n: h.stored_spec() for n, h in self.hooks.items()}, now)
        states = await store.hook_states()
        self._disabled = _runtime_disabled(states)
        for name, is_active in self.active().items():
            state = states.get(name)
            if state is None or state[0] != is_active:
                reason = None if is_active else self.reason(name)
                await store.set_hook_active(name, is_active, reason, now)

    async def set_active(self, store: Store, name: str, active: bool, reason: str | None,
                         now: float) -> int:
        if active:
            self._disabled.pop(name, None)
        else:
            self._disabled[name] = reason or "disabled"
        changed = await store.set_hook_active(name, active, reason, now)
        if active:
            log.info("hook %r activated: %d deliveries resumed", name, changed,
                     extra={"hook": name})
        else:
            log.warning("hook %r deactivated: %s; %d deliveries wait, paused, until it is"
                        " activated", name, reason or "disabled", changed,
                        extra={"hook": name, "reason": reason})
        return changed


def _runtime_disabled(states: Mapping[str, tuple[bool, str | None, float]]) -> dict[str, str]:
    return {
        name: reason or "disabled"
        for name, (active, reason, _) in states.items()
        if not active and reason != CONFIG_INACTIVE
    }
