"""The console's Erase a person page (signed in: the console's admin): the same erasure as
`relayhook erase` and `POST /api/erase`, this server's spool included, and its report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from relayhook.erase import erase
from relayhook.web.console.pages import Ctx

if TYPE_CHECKING:
    from relayhook.web.console.core import Console


async def erase_page(console: Console, ctx: Ctx) -> Response:
    report, error = None, None
    subject = ctx.form.get("subject", "").strip() if ctx.request.method == "POST" else ""
    if ctx.request.method == "POST":
        if ctx.form.get("confirm") != "yes":
            error = "Tick the box to confirm: an erasure cannot be undone."
        else:
            try:
                report = await erase(console.parts.store, subject, spool=console.parts.spool)
            except ValueError:
                error = "Type the e-mail address or id to erase (at least 3 characters)."
    return ctx.render(
        "erase.html",
        422 if error else 200,
        title="Erase a person",
        subject=subject,
        error=error,
        report=report,
    )


ROUTES = [("/erase", erase_page, ["GET", "POST"])]
