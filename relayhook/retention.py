"""How long things are kept: `[retention]` as the store's prune cutoffs. Pure: `now` is given.

    cutoffs_at(now, days=30, relays={"gmetri": 7}, hooks={"Audit": 365})
    # Cutoffs(default=now - 30 days, relays={"gmetri": now - 7 days}, hooks={...})

Zero days keeps forever (a cutoff of None).
"""

from __future__ import annotations

from collections.abc import Mapping

from relayhook.store.base import Cutoffs

DAY = 86400.0


def cutoff(now: float, days: float) -> float | None:
    return None if days <= 0 else now - days * DAY


def cutoffs_at(
    now: float,
    *,
    days: float,
    relays: Mapping[str, float] | None = None,
    hooks: Mapping[str, float] | None = None,
) -> Cutoffs:
    return Cutoffs(
        default=cutoff(now, days),
        relays={name: cutoff(now, value) for name, value in (relays or {}).items()},
        hooks={name: cutoff(now, value) for name, value in (hooks or {}).items()},
    )
