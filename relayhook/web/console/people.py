"""People, API keys, the audit log and invites in the console.

GET  /settings/people                 admins: everyone, Invite, Disable, Reset, Role
POST /settings/people                 invite: the one-time link is shown to pass on
POST /settings/people/{id}/...        disable, enable, reset (a new link), role
GET  /welcome/{token}                 an invite or reset link: choose a password
GET  /settings/keys                   API keys (admins: all; others: their own), New key
POST /settings/keys/{id}/revoke       refused by every process within a second
GET  /audit                           the audit log, with filters
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from relayhook.core.people import ROLES, Principal, Role, role_allows
from relayhook.errors import ConflictError, InvalidError, NotFoundError
from relayhook.passwords import MIN_PASSWORD
from relayhook.web.console.pages import Ctx, NotFound

if TYPE_CHECKING:
    from relayhook.web.console.core import Console

EXPIRY_DAYS = (("30", "30 days"), ("90", "90 days"), ("365", "A year"), ("", "Never"))
DAY = 86400.0


def _me(ctx: Ctx) -> Principal:
    principal = ctx.principal
    if principal is None:  # relayhook.web.access lets no stranger here
        raise NotFound("Sign in first.")
    return principal


def ago(seconds: float) -> str:
    """90 -> "2 min ago", 7200 -> "2 h ago": how long ago, as people say it."""
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{round(seconds / size)} {unit} ago"
    return "just now"


async def last_change(console: Console, target: str) -> str | None:
    """ "Changed by ana 2 h ago" for a relay's or a hook's page (its newest successful
    change in the audit log), or None."""
    for entry in await console.parts.store.list_audit(target=target, limit=20):
        status = entry.detail.get("status")
        changed = "after" in entry.detail or entry.action.endswith(".rotate")
        if changed and isinstance(status, int) and status < 400:
            return f"Changed by {entry.actor_name} {ago(console.now() - entry.at)}"
    return None


# -- people


async def people_page(
    console: Console,
    ctx: Ctx,
    status: int = 200,
    *,
    link: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    return ctx.render(
        "settings_people.html",
        status,
        title="People",
        people=await console.parts.store.list_accounts(),
        roles=ROLES,
        link=link,
        errors=errors or {},
        values=values or {"name": "", "email": "", "role": "viewer"},
    )


async def invite(console: Console, ctx: Ctx) -> Response:
    values = {k: ctx.form.get(k) for k in ("name", "email", "role")}
    try:
        account, link = await console.people.invite(values["name"], values["email"], values["role"])
    except InvalidError as exc:
        errors = {str(e.key[0]): _sentence(e.message) for e in exc.errors}
        return await people_page(console, ctx, 422, errors=errors, values=values)
    except ConflictError as exc:
        return await people_page(
            console, ctx, 409, errors={"email": _sentence(str(exc))}, values=values
        )
    ctx.session.flash(
        f"{account.name} is invited as {account.role}. Pass them the link below: "
        "it works once, for a day."
    )
    return await people_page(console, ctx, link=link)


async def change_person(console: Console, ctx: Ctx) -> Response:
    account_id, what = ctx.param("id"), ctx.request.url.path.rsplit("/", 1)[-1]
    people = console.people
    try:
        if what == "reset":
            account = await people.must(account_id)
            link = await people.reset(account_id)
            ctx.session.flash(
                f"{account.name}'s password no longer works and they are signed "
                "out. Pass them the link below to choose a new one."
            )
            return await people_page(console, ctx, link=link)
        if what in ("disable", "enable"):
            account = await people.set_disabled(account_id, what == "disable")
            message = (
                f"{account.name} is disabled and signed out everywhere."
                if what == "disable"
                else f"{account.name} can sign in again."
            )
        else:
            account = await people.set_role(account_id, ctx.form.get("role"))
            message = f"{account.name} is now {account.role}."
    except NotFoundError:
        raise NotFound("There is no such person.") from None
    except (ConflictError, ValueError) as exc:
        return ctx.redirect("/settings/people", _sentence(str(exc)))
    return ctx.redirect("/settings/people", message)


async def welcome(console: Console, ctx: Ctx) -> Response:
    token = ctx.param("token")
    account = await console.people.link_account(token)
    if account is None:
        return ctx.render(
            "error.html",
            404,
            title="Link not valid",
            message="This link was "
            "used already or is more than a day old. Ask an admin for a new one.",
        )
    error = ""
    if ctx.request.method == "POST":
        password, again = ctx.form.get("new_password"), ctx.form.get("new_password_again")
        if len(password) < MIN_PASSWORD:
            error = f"Enter a password of at least {MIN_PASSWORD} characters."
        elif password != again:
            error = "The two passwords differ. Type the same one twice."
        elif await console.people.take_link(token, password) is not None:
            return ctx.redirect("/signin", "Your password is set. Sign in with your e-mail.")
        else:
            error = "This link was used already. Ask an admin for a new one."
    return ctx.render(
        "welcome.html",
        422 if error else 200,
        title="Choose a password",
        account=account,
        error=error,
    )


# -- API keys


async def keys_page(
    console: Console,
    ctx: Ctx,
    status: int = 200,
    *,
    token: str | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    me = _me(ctx)
    keys = [
        k
        for k in await console.parts.store.list_keys()
        if me.may("admin") or k.created_by == me.actor
    ]
    return ctx.render(
        "settings_keys.html",
        status,
        title="API keys",
        keys=keys,
        token=token,
        roles=[r for r in ROLES if role_allows(me.role, r)],
        now=console.now(),
        expiry=EXPIRY_DAYS,
        errors=errors or {},
    )


async def create_key(console: Console, ctx: Ctx) -> Response:
    form, me = ctx.form, _me(ctx)
    days = form.get("expires")
    try:
        _, token = await console.people.create_key(
            form.get("name"),
            form.get("role"),
            by=me,
            expires_at=console.now() + float(days) * DAY if days.isdigit() else None,
            relays=_listed(form.get("relays")),
            hooks=_listed(form.get("hooks")),
        )
    except InvalidError as exc:
        errors = {str(e.key[0]): _sentence(e.message) for e in exc.errors}
        return await keys_page(console, ctx, 422, errors=errors)
    return await keys_page(console, ctx, 201, token=token)


async def revoke_key(console: Console, ctx: Ctx) -> Response:
    me, key_id = _me(ctx), ctx.param("id")
    mine = {
        k.id
        for k in await console.parts.store.list_keys()
        if me.may("admin") or k.created_by == me.actor
    }
    if key_id in mine and await console.people.revoke_key(key_id):
        return ctx.redirect("/settings/keys", "The key is revoked: it stopped working at once.")
    return ctx.redirect("/settings/keys", "That key was revoked already.")


# -- the audit log


async def audit_page(console: Console, ctx: Ctx) -> Response:
    query = ctx.request.query_params
    filters = {k: query.get(k, "").strip() for k in ("actor", "action", "target")}
    before = query.get("before", "")
    entries = await console.parts.store.list_audit(
        actor=filters["actor"] or None,
        action=filters["action"] or None,
        target=filters["target"] or None,
        before=int(before) if before.isdigit() else None,
        limit=100,
    )
    return ctx.render(
        "audit.html",
        title="Audit log",
        entries=entries,
        filters=filters,
        more=entries[-1].id if len(entries) == 100 else None,
    )


def _listed(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


def role_label(role: Role) -> str:
    return role.capitalize()


ROUTES: list[tuple[str, Any, list[str]]] = [
    ("/settings/people", people_page, ["GET"]),
    ("/settings/people", invite, ["POST"]),
    ("/settings/people/{id}/disable", change_person, ["POST"]),
    ("/settings/people/{id}/enable", change_person, ["POST"]),
    ("/settings/people/{id}/reset", change_person, ["POST"]),
    ("/settings/people/{id}/role", change_person, ["POST"]),
    ("/welcome/{token}", welcome, ["GET", "POST"]),
    ("/settings/keys", keys_page, ["GET"]),
    ("/settings/keys", create_key, ["POST"]),
    ("/settings/keys/{id}/revoke", revoke_key, ["POST"]),
    ("/audit", audit_page, ["GET"]),
]
PUBLIC_PATHS = ("/welcome/{token}",)
