"""Problems: a hook's failures grouped by their signature, so that 23 deliveries refused with
401 read as one thing to fix ("hook 'hubspot': status 401 since 09:12, 23 deliveries").

Pure: the store keeps the problems (in the transaction of `Store.finish`), this names them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from relayhook.core.events import format_time
from relayhook.core.records import Attempt, Outcome, Problem

AlertKind = Literal["problem.opened", "hook.will_deactivate", "hook.deactivated", "relay.problem"]

# What a failure opens a problem for: a delivery that will be tried again, is given up, or
# whose receiver said 410 (the hook is paused by it).
FAILING = ("failed", "dead", "paused")


def failure_signature(outcome: Outcome, attempt: Attempt | None) -> str | None:
    """`status 401` (the receiver answered), `connect` (the error class of a request that got
    no answer), or None when the outcome is no failure. One signature per cause: the same
    receiver refusing 23 deliveries is one problem."""
    if outcome.status not in FAILING:
        return None
    if attempt is not None and attempt.response_status is not None:
        return f"status {attempt.response_status}"
    if attempt is not None and attempt.error_class:
        return attempt.error_class
    if outcome.response_status is not None:
        return f"status {outcome.response_status}"
    return "error"


def failure_error(outcome: Outcome, attempt: Attempt | None, limit: int = 500) -> str | None:
    """A failure's error as its problem keeps it: the attempt's, else the outcome's, cut."""
    error = (attempt.error if attempt is not None and attempt.error else outcome.error) or ""
    return error[:limit] or None


# The problems `[alerts] disable_after = N` opens when a hook's deliveries end dead N - 1 and N
# times in a row (a success, or switching the hook on, starts the count again): a warning, then
# the deactivation. Their signatures: "will deactivate: 2 dead in a row", "deactivated: 3 ...".
_STREAK = re.compile(r"^(will deactivate|deactivated): (\d+) dead in a row$")


def streak_signature(dead: int, disable_after: int) -> str | None:
    """The problem an active hook's `dead`-th dead delivery in a row opens under
    `disable_after` (0: never), or None when it crosses nothing: the warning one dead delivery
    before the threshold, the deactivation at it (or past it, if the setting was lowered).

    >>> streak_signature(2, 3), streak_signature(3, 3), streak_signature(1, 3)
    ('will deactivate: 2 dead in a row', 'deactivated: 3 dead in a row', None)
    """
    if disable_after <= 0 or dead < disable_after - 1:
        return None
    kind = "deactivated" if dead >= disable_after else "will deactivate"
    return f"{kind}: {dead} dead in a row"


def deactivation_reason(dead: int) -> str:
    """Why `disable_after` switched a hook off, as its page and `relayhook hooks` show it."""
    return f"deactivated after {dead} dead deliveries in a row"


def alert_kind(signature: str, relay: str = "") -> AlertKind:
    """What an alert about a problem of this signature says: a 410 and `disable_after` deactivate
    the hook, one dead delivery before `disable_after` warns, every other cause is a problem; a
    relay's problem (quiet, changed shape) is a `relay.problem`."""
    if relay:
        return "relay.problem"
    if signature == "status 410" or signature.startswith("deactivated: "):
        return "hook.deactivated"
    if signature.startswith("will deactivate: "):
        return "hook.will_deactivate"
    return "problem.opened"


def describe_problem(problem: Problem) -> str:
    """ "hook 'hubspot': status 401 since 09:12 UTC, 23 deliveries"; for the problems of
    `disable_after`, what happened: "hook 'hubspot' was deactivated after 3 dead deliveries in a
    row (2026-12-01 09:12 UTC)"."""
    if problem.relay:  # "gmetri-prod: no request for 3 h; usually 40-60 an hour ..."
        return f"{problem.relay}: {problem.error or problem.signature}"
    since = datetime.fromtimestamp(problem.first_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    streak = streak_text(problem.signature)
    if streak is not None:
        return f"hook {problem.hook!r} {streak} ({since})"
    plural = "delivery" if problem.deliveries == 1 else "deliveries"
    return (
        f"hook {problem.hook!r}: {problem.signature} since {since}, {problem.deliveries} {plural}"
    )


def streak_text(signature: str) -> str | None:
    """ "was deactivated after 3 dead deliveries in a row" for "deactivated: 3 dead in a row";
    None for a signature that is no streak's."""
    streak = _STREAK.match(signature)
    if streak is None:
        return None
    kind, dead = streak.group(1), int(streak.group(2))
    if kind == "deactivated":
        return f"was {deactivation_reason(dead)}"
    return f"will be deactivated after one more dead delivery; {dead} in a row so far"


def alert_text(problem: Problem) -> str:
    """What an alert about a newly opened problem says, in a sentence or two."""
    paused = " Its new deliveries wait, paused, until it is switched back on."
    if problem.signature == "status 410":
        return f"hook {problem.hook!r} was deactivated: its receiver answered 410 Gone.{paused}"
    streak = streak_text(problem.signature)
    if streak is None:
        return describe_problem(problem)
    after = paused if alert_kind(problem.signature) == "hook.deactivated" else ""
    return f"hook {problem.hook!r} {streak}.{after}"


def problem_json(problem: Problem) -> dict[str, object]:
    """A problem as the API answers it and an alert sends it: times in RFC 3339."""

    def when(at: float | None) -> str | None:
        return None if at is None else format_time(datetime.fromtimestamp(at, UTC))

    return {
        "id": problem.id,
        "hook": problem.hook or None,
        "relay": problem.relay or None,
        "request": problem.request,
        "signature": problem.signature,
        "status": problem.status,
        "summary": describe_problem(problem),
        "deliveries": problem.deliveries,
        "error": problem.error,
        "first_at": when(problem.first_at),
        "last_at": when(problem.last_at),
        "acknowledged_at": when(problem.acknowledged_at),
        "resolved_at": when(problem.resolved_at),
    }
