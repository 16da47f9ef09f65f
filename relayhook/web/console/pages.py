"""What every console page shares: templates, the session gate around each view, forms.

    @console.page                          # signed in, CSRF checked on POST
    async def overview(ctx: Ctx) -> Response:
        return ctx.render("overview.html", hooks=...)

A form post without the session's CSRF token is answered 403 before anything else is looked at.
"""

from __future__ import annotations

import json
import re
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
from relayhook.core.problems import describe_problem
from relayhook.core.records import Problem
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
            me=self.principal,
            can=self.can,
            csrf=self.session.csrf,
            signed_in=self.session.signed_in,
            flash=self.session.take_flash(),
            path=self.request.url.path,
            **self.globals,
            **context,
        )
        # A lone surrogate from a hostile payload (JSON allows "\udfff") is shown escaped:
        # strict UTF-8 would turn the page into a 500.
        return HTMLResponse(page.encode("utf-8", "backslashreplace"), status_code=status)

    def redirect(self, url: str, flash: str | None = None) -> RedirectResponse:
        if flash:
            self.session.flash(flash)
        return RedirectResponse(url, status_code=303)


View = Callable[[Ctx], Awaitable[Response]]


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(WEB_DIR / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = format_when
    env.filters["urlpart"] = lambda value: quote(str(value), safe="")
    env.filters["hook_page"] = hook_address
    env.filters["relay_page"] = relay_address
    env.filters["json"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)
    env.filters["pretty"] = pretty_body
    env.filters["duration"] = format_duration
    env.filters["word"] = lambda value: STATUS_WORDS.get(str(value), str(value).replace("_", " "))
    env.filters["plain_error"] = plain_error
    env.filters["hour_label"] = hour_label
    return env


def hour_label(epoch: float, short: bool = False) -> str:
    """The UTC hour starting at `epoch`: `14:00` (short) or `14:00-15:00 UTC`."""
    moment = datetime.fromtimestamp(epoch, UTC)
    start = f"{moment.hour:02d}:{moment.minute:02d}"
    if short:
        return start
    end = datetime.fromtimestamp(epoch + 3600, UTC)
    return f"{start}-{end.hour:02d}:{end.minute:02d} UTC"


STATUS_WORDS = {  # a stored status or outcome kind -> the word a person reads
    "pending": "waiting",
    "claimed": "sending",
    "succeeded": "delivered",
    "failed": "will retry",
    "dead": "gave up",
    "skipped": "filtered out",
    "paused": "paused",
    "cancelled": "cancelled",
    "queued": "waiting",
    "condition_false": "filtered out",
    "type_not_subscribed": "not its event type",
    "relay_not_subscribed": "not from its relays",
    "no_event": "no event",
    "not_evaluated": "not checked yet",
    "delivered": "delivered",
    "render_error": "could not be made",
    "destination_refused": "address not allowed",
    # an attempt's error class
    "render": "the request could not be made",
    "timeout": "no answer in time",
    "connect": "could not connect",
    "destination": "address not allowed",
}
_MISSING = re.compile(r"has no attribute '([^']*)'|'([^']*)' is undefined")


def plain_error(text: str | None) -> str:
    """A delivery's error as a no-code user reads it (the raw text goes under Details)."""
    if not text:
        return ""
    lowered = text.lower()
    missing = _MISSING.search(text)
    if missing:
        return (
            f"The event has no field {missing.group(1) or missing.group(2)!r}: the hook "
            "reads a field this event does not have."
        )
    if "timed out" in lowered or "timeout" in lowered:
        return "No answer in time: the service took too long."
    if any(
        word in lowered for word in ("private", "not allowed", "loopback", "destination refused")
    ):
        return (
            "The address is a private or local one, which is not allowed: allow it in "
            "Settings if it is yours."
        )
    if "connect" in lowered or "name or service" in lowered or "resolve" in lowered:
        return "Could not reach the address: check the URL, or whether the service is up."
    answered = re.match(r"(?:HTTP )?(\d{3})\b", text)
    if answered:
        return f"The service answered {answered.group(1)}."
    return (
        text
        if len(text) <= 120 and "Error" not in text and "'" not in text
        else "The request could not be sent: see Details."
    )


def format_duration(value: float, seconds: bool = False) -> str:
    """A duration as people read it: `3 ms`, `1.2 s`, `46 s`, `12 min`, `3 h 5 min`.
    `value` is milliseconds, or seconds with `seconds=True`."""
    ms = value * 1000 if seconds else value
    if ms < 1000:
        return f"{ms:,.0f} ms"
    if ms < 10_000:
        return f"{ms / 1000:.1f} s"
    total = round(ms / 1000)
    if total < 120:
        return f"{total} s"
    if total < 7200:
        return f"{round(total / 60)} min"
    return f"{total // 3600} h {round(total % 3600 / 60)} min"


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
    return Form(
        parse_qsl(body[:MAX_FORM_BYTES].decode("utf-8", errors="replace"), keep_blank_values=True)
    )


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
                        "error.html",
                        403,
                        title="Form expired",
                        message="This form was missing its security token (or it expired). "
                        "Go back, reload the page and send it again.",
                    )
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


def shown_problems(problems: list[Problem]) -> list[dict[str, object]]:
    """Problems as the `_problems.html` list shows them: each with its one-line summary."""
    return [{"problem": p, "summary": describe_problem(p)} for p in problems]
