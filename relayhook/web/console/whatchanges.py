"""The hook form's "What would change" panel: the edited hook against the saved one over the
last kept requests (relayhook.diff), in a no-code user's words. Nothing is written."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relayhook.core.hooks import Hook
from relayhook.diff import diff_hook

if TYPE_CHECKING:
    from relayhook.web.console.core import Console

LAST = 500
SHOWN = 10  # requests listed under the summary


async def what_would_change(console: Console, hook: Hook) -> dict[str, Any]:
    """The panel's content: a summary sentence and the first requests that would change."""
    found = await diff_hook(console.parts, hook, last=LAST)
    totals = found.totals()
    if not found.requests:
        summary = (
            f"Nothing would change for the last {found.compared} requests kept: the "
            "same deliveries, with the same bodies."
        )
    else:
        summary = (
            f"Of the last {found.compared} requests kept, {len(found.requests)} would "
            f"change: {totals['deliveries_added']} deliveries would now be made, "
            f"{totals['deliveries_removed']} no longer, and "
            f"{totals['bodies_changed']} bodies sent would differ."
        )
    items = []
    for request in found.requests[:SHOWN]:
        lines = [f"now sent: {event}" for event, _ in request.deliveries_added]
        lines += [f"no longer sent: {event}" for event, _ in request.deliveries_removed]
        bodies = [
            {"event": b.event, "before": b.before, "after": b.after}
            for b in request.bodies
            if b.before is not None and b.after is not None
        ]
        items.append({"request": request.request_id, "lines": lines, "bodies": bodies})
    return {"summary": summary, "requests": items, "more": max(0, len(found.requests) - SHOWN)}
