"""The web console: server-rendered pages at `/`, for people (the JSON API is for scripts).

    routes = console_routes(Console(parts, clock=clock, new_id=new_id))

Every basic flow is a plain form post (no JavaScript needed); `static/console.js` only enhances
(copy buttons, the live preview). Pages read through `relayhook.web.readmodel`, as the API does;
changes go through the two services, `parts.manager` (relays, hooks) and `parts.operations`
(replays, problems, test sends, samples, dry runs).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from relayhook.passwords import ADMIN_ACCOUNT, dummy_hash
from relayhook.web.console import (
    admin,
    editing,
    erasing,
    hooks,
    oidc,
    people,
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
    return ctx.render(
        "overview.html", relays=relays, hooks=hooks, title="Overview", chart_start=now - 86400
    )


async def sign_in(console: Console, ctx: Ctx) -> Response:
    target = ctx.request.query_params.get("next", "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"  # only our own pages: no open redirect
    if ctx.request.method == "GET":
        if ctx.session.signed_in:
            return RedirectResponse(target, 303)
        return ctx.render("signin.html", title="Sign in", next=target, error=None, login="")
    gate, people = console.gate, console.people
    login = ctx.form.get("login").strip()
    account = await people.login(login)
    account_id = account.id if account is not None else (login or ADMIN_ACCOUNT).lower()
    address = gate.address_of(ctx.request)
    device = await gate.device_of(ctx.request, account_id)
    refused = gate.guard.refusal(address, account_id, device)
    matched: bool | None = False
    if refused is None and account is not None and account.active:
        stored = await people.password_hash(account)
        matched = await gate.check_password(ctx.form.get("password"), stored or "")
    elif refused is None:  # the same work for no one, so a name cannot be told by the time
        await gate.check_password(ctx.form.get("password"), dummy_hash())
    if refused or matched is None:
        wait, error = refused or (
            1,
            "Many sign-ins are being tried at once. Try again in a second.",
        )
        response = ctx.render(
            "signin.html", 429, title="Sign in", next=target, error=error, login=login
        )
        response.headers["Retry-After"] = str(wait)
        return response
    if not matched or account is None:
        gate.guard.failed(address, account_id, device)
        return ctx.render(
            "signin.html",
            401,
            title="Sign in",
            next=target,
            login=login,
            error="That e-mail or password is not right. Check them and try again.",
        )
    gate.guard.succeeded(address, device)
    await gate.sign_in(ctx.session, ctx.request, account.id)
    ctx.request.scope["principal"] = await people.principal_of_account(account.id)
    redirect = RedirectResponse(target, 303)
    await gate.remember_device(redirect, device, account.id)
    return redirect


async def sign_out(console: Console, ctx: Ctx) -> Response:
    await console.gate.sign_out(ctx.session)
    return ctx.redirect("/signin", "You are signed out.")


async def favicon(request: Request) -> Response:
    return FileResponse(
        WEB_DIR / "static" / "favicon.svg",
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


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
    modules = [relays, records, editing, hooks, problems, sessions, erasing, people, admin, search]
    if console.oidc is not None:
        modules.append(oidc)
    public = (*people.PUBLIC_PATHS, *(path for path, _, _ in oidc.ROUTES))
    for module in modules:
        routes += [
            Route(path, view(fn, public=path in public), methods=methods)
            for path, fn, methods in module.ROUTES
        ]
    return routes
