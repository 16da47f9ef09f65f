"""The console's writes to relays and hooks, through the one service layer (`relayhook.manage`),
never to the store directly. Errors come back per field, as the form shows them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relayhook.web.console.core import Console

NOT_YET = "changing relays and hooks here arrives with the live configuration"


async def create_relay(console: Console, name: str, connector: str) -> dict[str, str]:
    """Field -> message; empty when the relay was made."""
    return {"name": NOT_YET}


async def rotate_secret(console: Console, name: str) -> str:
    raise NotImplementedError(NOT_YET)


async def delete_relay(console: Console, name: str) -> str | None:
    return NOT_YET


async def save_hook(console: Console, spec: dict[str, Any],
                    old_name: str | None) -> dict[str, str]:
    return {"name": NOT_YET}


async def delete_hook(console: Console, name: str) -> str | None:
    return NOT_YET
