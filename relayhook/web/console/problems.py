"""Problems pages: a hook's failures grouped by signature, with Acknowledge and Replay affected
(the Problems page lists every hook's; a hook's page lists its own)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from relayhook.core.events import format_time
from relayhook.core.problems import describe_problem
from relayhook.errors import NotFoundError
from relayhook.operations import NotOpenError
from relayhook.web.console.pages import Ctx, NotFound, shown_problems
from relayhook.web.console.relays import SAMPLE_AGENT, WIRING_LOOKBACK, plain_rejection

if TYPE_CHECKING:
    from relayhook.web.console.core import Console

RESOLVED_SHOWN = 20
REJECTED_LOOKBACK = 500  # the newest rejected requests grouped
DAY = 86400.0


async def request_problems(console: Console) -> list[dict[str, Any]]:
    """What went wrong at the relays in the last 24 hours: rejected requests grouped by relay
    and cause (the newest of each linked), and credentials refused since the relay's last
    accepted request. Three reads, whatever the number of relays."""
    store = console.parts.store
    since = format_time(datetime.fromtimestamp(console.now() - DAY, UTC))
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for record in await store.list_requests(status="rejected", limit=REJECTED_LOOKBACK):
        if record.received_at < since:
            break
        cause = plain_rejection(record.error)
        group = groups.setdefault(
            (record.relay, cause),
            {
                "kind": "rejected",
                "relay": record.relay,
                "cause": cause,
                "count": 0,
                "last_at": record.received_at,
                "newest": record.id,
                "raw": record.error or "",
            },
        )
        group["count"] += 1
    found = sorted(groups.values(), key=lambda g: g["last_at"], reverse=True)
    for relay, (count, at) in sorted((await store.auth_failures()).items()):
        if at < since or relay not in {r.name for r in console.parts.live.relays.values()}:
            continue
        accepted = [
            r
            for r in await store.list_requests(
                relay=relay, status="accepted", limit=WIRING_LOOKBACK
            )
            if dict(r.headers).get("user-agent") != SAMPLE_AGENT
        ]  # the provider's
        if not accepted or accepted[0].received_at < at:
            found.insert(
                0,
                {
                    "kind": "refused",
                    "relay": relay,
                    "count": count,
                    "last_at": at,
                    "cause": "missing or wrong credentials",
                    "newest": None,
                    "raw": "",
                },
            )
    return found


async def open_count(console: Console) -> int:
    """The Problems tab's number: open hook problems and relay problems of the last day."""
    hooks = await console.parts.store.list_problems(statuses=("open",), limit=100)
    return len(hooks) + len(await request_problems(console))


async def list_problems(console: Console, ctx: Ctx) -> Response:
    store = console.parts.store
    current = await store.list_problems()
    resolved = await store.list_problems(statuses=("resolved",), limit=RESOLVED_SHOWN)
    return ctx.render(
        "problems.html",
        title="Problems",
        problems=shown_problems(current),
        resolved=shown_problems(resolved),
        relay_problems=await request_problems(console),
    )


def back_to(ctx: Ctx) -> str:
    back = ctx.form.get("back", "/problems")
    return back if back.startswith("/") and not back.startswith("//") else "/problems"


async def acknowledge(console: Console, ctx: Ctx) -> Response:
    try:
        problem = await console.parts.operations.acknowledge_problem(ctx.param("id"))
    except NotFoundError as exc:
        raise NotFound("There is no problem with this id.") from exc
    except NotOpenError as exc:
        return ctx.redirect(back_to(ctx), f"It is {exc.problem.status} already.")
    return ctx.redirect(back_to(ctx), f"Acknowledged: {describe_problem(problem)}.")


async def replay_affected(console: Console, ctx: Ctx) -> Response:
    try:
        count, problem = await console.parts.operations.replay_problem(ctx.param("id"))
    except NotFoundError as exc:
        raise NotFound("There is no problem with this id.") from exc
    ctx.request.scope["audit"] = {"replayed": count, "hook": problem.hook}
    return ctx.redirect(
        back_to(ctx),
        f"Replayed {count} affected deliveries of hook {problem.hook}: they are sent again now.",
    )


ROUTES = [
    ("/problems", list_problems, ["GET"]),
    ("/problems/{id}/acknowledge", acknowledge, ["POST"]),
    ("/problems/{id}/replay", replay_affected, ["POST"]),
]
