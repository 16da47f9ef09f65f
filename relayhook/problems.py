"""Problems: a hook's failures grouped by their signature, so that 23 deliveries refused with
401 read as one thing to fix ("hook 'hubspot': status 401 since 09:12, 23 deliveries").

Pure: the store keeps the problems (in the transaction of `Store.finish`), this names them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from relayhook.events import format_time
from relayhook.records import Attempt, Outcome, Problem

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


def describe_problem(problem: Problem) -> str:
    """"hook 'hubspot': status 401 since 09:12 UTC, 23 deliveries"."""
    since = datetime.fromtimestamp(problem.first_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    plural = "delivery" if problem.deliveries == 1 else "deliveries"
    return (f"hook {problem.hook!r}: {problem.signature} since {since}, "
            f"{problem.deliveries} {plural}")


def problem_json(problem: Problem) -> dict[str, object]:
    """A problem as the API answers it and an alert sends it: times in RFC 3339."""
    def when(at: float | None) -> str | None:
        return None if at is None else format_time(datetime.fromtimestamp(at, UTC))

    return {"id": problem.id, "hook": problem.hook, "signature": problem.signature,
            "status": problem.status, "summary": describe_problem(problem),
            "deliveries": problem.deliveries, "error": problem.error,
            "first_at": when(problem.first_at), "last_at": when(problem.last_at),
            "acknowledged_at": when(problem.acknowledged_at),
            "resolved_at": when(problem.resolved_at)}
