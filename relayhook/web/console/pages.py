"""What every console page shares: templates, the session gate around each view, forms.

    @console.page                          # signed in, CSRF checked on POST
    async def overview(ctx: Ctx) -> Response:
        return ctx.render("overview.html", hooks=...)

A form post without the session's CSRF token is answered 403 before anything else is looked at.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from relayhook.core.hooks import RESERVED_HOOK_NAMES
from relayhook.core.people import Principal, Role
from relayhook.manage import RESERVED_RELAY_NAMES
from relayhook.web.console.session import Gate, Session
from relayhook.web.readmodel import pretty_body

WEB_DIR = Path(__file__).resolve().parent.parent  # templates/ and static/: package data
MAX_FORM_BYTES = 1_048_576
SECURITY_HEADERS = {
    # Our own script and stylesheet only; inline SVG is markup, not script.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Form:
    """A posted urlencoded form: `get` the first value, `getlist` every value of a name."""

    def __init__(self, pairs: list[tuple[str, str]] | None = None) -> None:
        self.pairs = pairs or []

    def get(self, name: str, default: str = "") -> str:
        return next((v for k, v in self.pairs if k == name), default)

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.pairs)


@dataclass
class Ctx:
    """One request to a console page: the request, its session and form, and how to answer."""

    request: Request
    session: Session
    form: Form
    env: Environment
    globals: dict[str, Any] = field(default_factory=dict)

    def param(self, name: str) -> str:
        return self.request.path_params[name]  # type: ignore[no-any-return]

    @property
    def principal(self) -> Principal | None:
        """Who is signed in (relayhook.web.access found them before the view ran)."""
        found = self.request.scope.get("principal")
        return found if isinstance(found, Principal) else None

    def can(self, role: Role) -> bool:
        """Whether the person may do what `role` may: templates show a button only then."""
        principal = self.principal
        return principal is not None and principal.may(role)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        page = self.env.get_template(template).render(
            me=self.principal, can=self.can,
            csrf=self.session.csrf, signed_in=self.session.signed_in,
            flash=self.session.take_flash(), path=self.request.url.path, **self.globals,
            **context)
        return HTMLResponse(page, status_code=status)

    def redirect(self, url: str, flash: str | None = None) -> RedirectResponse:
        if flash:
            self.session.flash(flash)
        return RedirectResponse(url, status_code=303)


View = Callable[[Ctx], Awaitable[Response]]


def make_environment() -> Environment:
    env = Environment(loader=FileSystemLoader(WEB_DIR / "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = format_when
    env.filters["urlpart"] = lambda value: quote(str(value), safe="")
    env.filters["hook_page"] = hook_address
    env.filters["relay_page"] = relay_address
    env.filters["json"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)
    env.filters["pretty"] = pretty_body
    return env


def hook_address(name: str) -> str:
    """The address of a hook's page. A hook stored before names were checked may be called
    `new` or `preview`: its page is then /hooks/NAME/view (/hooks/new is the new-hook form)."""
    return _page("/hooks/", name, RESERVED_HOOK_NAMES)


def relay_address(name: str) -> str:
    """The address of a relay's page (/relays/NAME/view for a relay called `new`)."""
    return _page("/relays/", name, RESERVED_RELAY_NAMES)


def _page(prefix: str, name: str, reserved: frozenset[str]) -> str:
    path = prefix + quote(str(name), safe="")
    return path + "/view" if str(name) in reserved else path


def format_when(value: str | float | None) -> str:
    """A stored time (RFC 3339 text or epoch seconds) as people read it, in UTC."""
    if value is None or value == "":
        return "never"
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def read_form(request: Request) -> Form:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            break
    return Form(parse_qsl(body[:MAX_FORM_BYTES].decode("utf-8", errors="replace"),
                          keep_blank_values=True))


class Pages:
    """Wraps views: reads the session, checks CSRF on POST, sends strangers to sign in, adds
    the security headers and writes the cookie back when it changed."""

    def __init__(self, gate: Gate, env: Environment, globals: dict[str, Any]) -> None:
        self.gate, self.env, self.globals = gate, env, globals

    def wrap(self, view: View, *, public: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = await self.gate.read(request)
            form = Form()
            ctx = Ctx(request, session, form, self.env, self.globals)
            if request.method == "POST":
                ctx.form = await read_form(request)
                if not session.csrf_matches(ctx.form.get("csrf") or None):
                    response: Response = ctx.render(
                        "error.html", 403, title="Form expired",
                        message="This form was missing its security token (or it expired). "
                        "Go back, reload the page and send it again.")
                    return await self.finish(session, response)
            if not public and not session.signed_in:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse(f"/signin?next={quote(target, safe='')}", 303)
                return await self.finish(session, response)
            try:
                response = await view(ctx)
            except NotFound as exc:
                response = ctx.render("error.html", 404, title="Not found", message=str(exc))
            return await self.finish(session, response)

        return endpoint

    async def finish(self, session: Session, response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        await self.gate.write(session, response)
        return response


class NotFound(Exception):
    """A page for something that is not there; the message says what."""
