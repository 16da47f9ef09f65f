"""The web console: server-rendered pages at `/`, for people (the JSON API is for scripts).

    routes = console_routes(Console(parts, settings, clock=clock, new_id=new_id))

Every basic flow is a plain form post (no JavaScript needed); `static/console.js` only enhances
(copy buttons, the live preview). Pages read through `relayhook.web.readmodel`, as the API does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from relayhook.web.console import admin, editing, hooks, problems, records, relays, search
from relayhook.web.console.core import Console
from relayhook.web.console.pages import WEB_DIR, Ctx
from relayhook.web.readmodel import hook_summaries, relay_summaries

__all__ = ["Console", "console_routes"]


async def overview(console: Console, ctx: Ctx) -> Response:
    now = console.now()
    relays = await relay_summaries(console.parts, now)
    hooks = await hook_summaries(console.parts, now)
    return ctx.render("overview.html", relays=relays, hooks=hooks, title="Overview",
                      chart_start=now - 86400)


async def sign_in(console: Console, ctx: Ctx) -> Response:
    target = ctx.request.query_params.get("next", "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"  # only our own pages: no open redirect
    if ctx.request.method == "GET":
        if ctx.session.signed_in:
            return RedirectResponse(target, 303)
        return ctx.render("signin.html", title="Sign in", next=target, error=None)
    address = ctx.request.client.host if ctx.request.client else "unknown"
    wait = console.gate.throttle.retry_after(address)
    if wait is not None:
        response = ctx.render("signin.html", 429, title="Sign in", next=target,
                              error=f"Too many wrong passwords. Try again in {wait} seconds.")
        response.headers["Retry-After"] = str(wait)
        return response
    if not await console.gate.check_password(ctx.form.get("password")):
        console.gate.throttle.fail(address)
        return ctx.render("signin.html", 401, title="Sign in", next=target,
                          error="That password is not right. Check it and try again.")
    console.gate.throttle.forget(address)
    await console.gate.sign_in(ctx.session)
    return RedirectResponse(target, 303)


async def sign_out(console: Console, ctx: Ctx) -> Response:
    ctx.session.data = {}
    ctx.session.signed_in, ctx.session.changed = False, True
    return ctx.redirect("/signin", "You are signed out.")


async def favicon(request: Request) -> Response:
    return FileResponse(WEB_DIR / "static" / "favicon.svg", media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})


ConsoleView = Callable[[Console, Ctx], Awaitable[Response]]


def console_routes(console: Console) -> list[BaseRoute]:
    def view(fn: ConsoleView, public: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def bound(ctx: Ctx) -> Response:
            if ctx.session.signed_in and ctx.request.method == "GET":
                ctx.globals = {**ctx.globals, "problem_count": await problems.open_count(console)}
            return await fn(console, ctx)

        return console.pages.wrap(bound, public=public)

    routes: list[BaseRoute] = [
        Route("/", view(overview), methods=["GET"]),
        Route("/signin", view(sign_in, public=True), methods=["GET", "POST"]),
        Route("/signout", view(sign_out, public=True), methods=["POST"]),
        Route("/favicon.ico", favicon, methods=["GET"]),  # asked for by browsers, signed in or not
        Mount("/static", app=StaticFiles(directory=WEB_DIR / "static"), name="static"),
    ]
    # editing first: /hooks/new before /hooks/{name}
    for module in (relays, records, editing, hooks, problems, admin, search):
        routes += [Route(path, view(fn), methods=methods) for path, fn, methods in module.ROUTES]
    return routes
