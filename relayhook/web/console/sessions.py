"""Settings: the signed-in sessions (Revoke) and the password. Self-contained: a Settings page
includes `_sessions.html` and `_password.html` with `await settings_context(console, ctx)`.

    GET  /settings/sessions                  the two sections on a page of their own
    POST /settings/sessions/{id}/revoke      sign one session out, in every process
    POST /settings/sessions/revoke-others    sign out every session but this one
    POST /settings/password                  a new password; every other session ends
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from relayhook.passwords import ADMIN_ACCOUNT, MIN_PASSWORD, password_matches
from relayhook.web.console.pages import Ctx

if TYPE_CHECKING:
    from relayhook.web.console.core import Console

PAGE = "/settings/sessions"


async def settings_context(console: Console, ctx: Ctx, **errors: str) -> dict[str, Any]:
    """What `_sessions.html` and `_password.html` need."""
    record = ctx.session.record
    account = record.account if record is not None else ADMIN_ACCOUNT
    everyone = []
    if ctx.can("admin"):  # admins see and revoke everyone's sessions
        names = {a.id: a.name for a in await console.parts.store.list_accounts()}
        everyone = [
            (names.get(s.account, s.account), s)
            for s in await console.parts.store.list_sessions(None, console.now())
            if s.account != account
        ]
    return {
        "sessions": await console.parts.store.list_sessions(account, console.now()),
        "current": record.id if record is not None else None,
        "password_errors": errors,
        "everyone": everyone,
    }


async def sessions_page(console: Console, ctx: Ctx, status: int = 200, **errors: str) -> Response:
    return ctx.render(
        "settings_sessions.html",
        status,
        title="Sessions and password",
        **await settings_context(console, ctx, **errors),
    )


async def revoke(console: Console, ctx: Ctx) -> Response:
    session_id = ctx.param("id")
    if ctx.session.record is not None and session_id == ctx.session.record.id:
        await console.gate.sign_out(ctx.session)
        return ctx.redirect("/signin", "You are signed out.")
    mine = await console.parts.store.list_sessions(
        None if ctx.can("admin") else _account(ctx), console.now()
    )
    if session_id not in {s.id for s in mine}:
        return ctx.redirect(PAGE, "That session had ended already.")
    if await console.gate.revoke(session_id):
        return ctx.redirect(PAGE, "That session is signed out.")
    return ctx.redirect(PAGE, "That session had ended already.")


async def revoke_others(console: Console, ctx: Ctx) -> Response:
    ended = await console.gate.revoke_others(ctx.session)
    return ctx.redirect(PAGE, f"Signed out {ended} other session{'s' * (ended != 1)}.")


async def change_password(console: Console, ctx: Ctx) -> Response:
    gate, form, record = console.gate, ctx.form, ctx.session.record
    account_id = _account(ctx)
    address = gate.address_of(ctx.request)
    # A signed-in browser counts its wrong current passwords on its own (as a known browser).
    own = f"session {record.id}" if record is not None else None
    refused = gate.guard.refusal(address, account_id, own)
    if refused is not None:
        return await sessions_page(console, ctx, 429, current_password=refused[1])
    new, again = form.get("new_password"), form.get("new_password_again")
    errors: dict[str, str] = {}
    account = await console.people.must(account_id)
    stored = await console.people.password_hash(account)
    matched = (
        await gate.guard.verify(password_matches, stored, form.get("current_password"))
        if stored is not None
        else False
    )
    if matched is None:
        return await sessions_page(
            console,
            ctx,
            429,
            current_password="Many sign-ins are being tried at once. Try again in a second.",
        )
    if not matched:
        gate.guard.failed(address, account_id, own)
        errors["current_password"] = "That is not the current password. Check it and try again."
    if len(new) < MIN_PASSWORD:
        errors["new_password"] = f"Enter a new password of at least {MIN_PASSWORD} characters."
    elif new != again:
        errors["new_password_again"] = "The two new passwords differ. Type the same one twice."
    if errors:
        return await sessions_page(console, ctx, 422, **errors)
    before = len(await console.parts.store.list_sessions(account_id, console.now()))
    await console.people.set_password(
        account_id, new, keep=record.id if record is not None else None
    )
    ended = before - len(await console.parts.store.list_sessions(account_id, console.now()))
    gate.forget_sessions()
    return ctx.redirect(
        PAGE,
        f"The password is changed; {ended} other session"
        f"{'s were' if ended != 1 else ' was'} signed out.",
    )


def _account(ctx: Ctx) -> str:
    record = ctx.session.record
    return record.account if record is not None else ADMIN_ACCOUNT


ROUTES = [
    (PAGE, sessions_page, ["GET"]),
    ("/settings/sessions/revoke-others", revoke_others, ["POST"]),
    ("/settings/sessions/{id}/revoke", revoke, ["POST"]),
    ("/settings/password", change_password, ["POST"]),
]
