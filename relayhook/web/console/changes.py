"""The console's writes to relays and hooks, through the one service layer (`relayhook.manage`),
never to the store directly. Problems come back by form field, in the words the API uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relayhook.core.tomlpos import format_path
from relayhook.errors import ConflictError, InvalidError, NotFoundError

if TYPE_CHECKING:
    from relayhook.manage import Compiled
    from relayhook.web.console.core import Console


PLAIN_RELAY = {  # the schema's words -> a person's, by form field
    ("name", "pattern"): "A name may not start with a space and may not hold a '/'.",
    ("name", "required"): "Give the relay a name.",
    ("connector", "no connector"): "Choose the service that will send to this relay.",
    ("connector", "required"): "Choose the service that will send to this relay.",
}


def _by_field(exc: InvalidError) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in exc.errors:
        field = format_path(error.key[:1]) if error.key else "name"
        message = next(
            (
                said
                for (where, clue), said in PLAIN_RELAY.items()
                if where == field and clue in error.message
            ),
            error.message,
        )
        found.setdefault(field, message[:1].upper() + message[1:])
    return found


async def create_relay(console: Console, name: str, connector: str) -> dict[str, str]:
    """Field -> message; empty when the relay was made."""
    try:
        await console.parts.manager.create_relay(name, connector)
    except InvalidError as exc:
        return _by_field(exc)
    except ConflictError as exc:
        return {"name": str(exc)}
    return {}


async def rotate_secret(console: Console, name: str) -> str:
    """The new secret. ConflictError for a relay of the config file."""
    return (await console.parts.manager.relay_secret(name, rotate=True)).secret


async def delete_relay(console: Console, name: str) -> str | None:
    try:
        await console.parts.manager.delete_relay(name)
    except (ConflictError, NotFoundError) as exc:
        return str(exc)
    return None


async def save_hook(
    console: Console,
    spec: dict[str, Any],
    old_name: str | None,
    compiled: Compiled | None = None,
    *,
    accept_findings: bool = False,
) -> InvalidError | str | None:
    """None when saved; the InvalidError (shown at its fields; a FindingsError when only
    diagnostics refused it) or a conflict's message. `compiled`: the form's compile (of `spec`
    with its kept secrets put back), so that a save compiles the hook once. `accept_findings`:
    the person chose "Save anyway"."""
    manager = console.parts.manager
    try:
        if old_name is None:
            await manager.create_hook(spec, compiled=compiled, accept_findings=accept_findings)
        else:
            await manager.replace_hook(
                old_name, spec, compiled=compiled, accept_findings=accept_findings
            )
    except InvalidError as exc:
        return exc
    except (ConflictError, NotFoundError) as exc:
        return str(exc)
    console.parts.wake()
    return None


async def delete_hook(console: Console, name: str) -> tuple[bool, str]:
    """(deleted, what to tell)."""
    try:
        cancelled = await console.parts.manager.delete_hook(name)
    except (ConflictError, NotFoundError) as exc:
        return False, f"{exc}."
    console.parts.wake()
    return True, f"{cancelled} undelivered deliveries were cancelled." if cancelled else ""
