"""The Settings page: the public URL relay URLs start with and the private networks hooks may
send to, beside the signed-in sessions and the password (the partials of `sessions.py`). The
first two are run-time settings (`relayhook.live.RunSettings`):
kept in the store, applied by every process at its next refresh, like relays and hooks."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.responses import Response

from relayhook.core.ssrf import parse_cidrs
from relayhook.live import RUN_SETTINGS, RunSettings
from relayhook.web.console.pages import Ctx
from relayhook.web.console.sessions import settings_context

if TYPE_CHECKING:
    from relayhook.web.console.core import Console


async def show_settings(
    console: Console,
    ctx: Ctx,
    *,
    errors: dict[str, str] | None = None,
    typed: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    run = console.parts.live.run_settings
    config = console.settings
    values = {
        "public_url": run.public_url,
        "allow_cidrs": "\n".join(run.allow_cidrs),
        **(typed or {}),
    }
    return ctx.render(
        "settings.html",
        422 if errors else status,
        title="Settings",
        errors=errors or {},
        values=values,
        config_public_url=config.server.public_url or "",
        effective_public_url=console.parts.manager.public_url,
        config_cidrs=list(config.delivery.allow_cidrs),
        allow_private=config.delivery.allow_private_destinations,
        **await settings_context(console, ctx),  # for the sessions and password partials
    )


async def settings_page(console: Console, ctx: Ctx) -> Response:
    return await show_settings(console, ctx)


def check_public_url(text: str) -> str | None:
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return (
            "Write the whole address, starting with https:// (such as https://relay.example.com)."
        )
    if parts.query or parts.fragment:
        return "The address may not hold a ? or a #."
    return None


async def save_network(console: Console, ctx: Ctx) -> Response:
    public_url = ctx.form.get("public_url").strip().rstrip("/")
    cidrs = [c.strip() for c in re.split(r"[\s,]+", ctx.form.get("allow_cidrs")) if c.strip()]
    errors: dict[str, str] = {}
    problem = check_public_url(public_url)
    if problem:
        errors["public_url"] = problem
    try:
        parse_cidrs(cidrs)
    except ValueError as exc:
        errors["allow_cidrs"] = (
            f"{str(exc).removeprefix('allow_cidrs: ')}. Write one address "
            "or network per line, such as 192.168.1.20 or 10.0.0.0/24."
        )
    if errors:
        return await show_settings(
            console,
            ctx,
            errors=errors,
            typed={
                "public_url": ctx.form.get("public_url"),
                "allow_cidrs": ctx.form.get("allow_cidrs"),
            },
        )
    run = RunSettings(allow_cidrs=tuple(cidrs), public_url=public_url)
    await console.parts.store.set_admin_value(RUN_SETTINGS, run.dump(), console.now())
    await console.parts.live.refresh_settings(console.parts.store)  # here at once; others soon
    return ctx.redirect("/settings", "Saved. Every process applies it within a few seconds.")


ROUTES = [
    ("/settings", settings_page, ["GET"]),
    ("/settings/network", save_network, ["POST"]),
]
