"""Problems pages: a hook's failures grouped by signature, with Acknowledge and Replay affected
(the Problems page lists every hook's; a hook's page lists its own)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from relayhook.core.problems import describe_problem
from relayhook.core.records import Problem
from relayhook.errors import NotFoundError
from relayhook.operations import NotOpenError
from relayhook.web.console.pages import Ctx, NotFound

if TYPE_CHECKING:
    from relayhook.web.console.core import Console

RESOLVED_SHOWN = 20


def shown(problems: list[Problem]) -> list[dict[str, object]]:
    return [{"problem": p, "summary": describe_problem(p)} for p in problems]


async def list_problems(console: Console, ctx: Ctx) -> Response:
    store = console.parts.store
    current = await store.list_problems()
    resolved = await store.list_problems(statuses=("resolved",), limit=RESOLVED_SHOWN)
    return ctx.render("problems.html", title="Problems", problems=shown(current),
                      resolved=shown(resolved))


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
    return ctx.redirect(back_to(ctx), f"Replayed {count} affected deliveries of hook "
                                      f"{problem.hook}: they are sent again now.")


ROUTES = [
    ("/problems", list_problems, ["GET"]),
    ("/problems/{id}/acknowledge", acknowledge, ["POST"]),
    ("/problems/{id}/replay", replay_affected, ["POST"]),
]
