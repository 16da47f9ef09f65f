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

from relayhook.passwords import ADMIN_ACCOUNT
from relayhook.web.console import (
    admin,
    editing,
    hooks,
    problems,
    records,
    relays,
    search,
    sessions,
)
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
    gate = console.gate
    address, device = gate.address_of(ctx.request), await gate.device_of(ctx.request)
    refused = gate.guard.refusal(address, ADMIN_ACCOUNT, device)
    matched = None if refused else await gate.check_password(ctx.form.get("password"))
    if refused or matched is None:
        wait, error = refused or (1, "Many sign-ins are being tried at once. Try again in a "
                                  "second.")
        response = ctx.render("signin.html", 429, title="Sign in", next=target, error=error)
        response.headers["Retry-After"] = str(wait)
        return response
    if not matched:
        gate.guard.failed(address, ADMIN_ACCOUNT, device)
        return ctx.render("signin.html", 401, title="Sign in", next=target,
                          error="That password is not right. Check it and try again.")
    gate.guard.succeeded(address, device)
    await gate.sign_in(ctx.session, ctx.request)
    redirect = RedirectResponse(target, 303)
    await gate.remember_device(redirect, device)
    return redirect


async def sign_out(console: Console, ctx: Ctx) -> Response:
    await console.gate.sign_out(ctx.session)
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
    for module in (relays, records, editing, hooks, problems, sessions, admin, search):
        routes += [Route(path, view(fn), methods=methods) for path, fn, methods in module.ROUTES]
    return routes
