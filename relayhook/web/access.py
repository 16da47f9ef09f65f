"""The policy table (relayhook.core.policy) enforced around every route, and the audit line of
every change made through one.

    routes = enforce(routes, access)

Who asks: under `/api/` a bearer token (the `[admin] token` or an API key); elsewhere the
console's session cookie. Refused: 401 (API) or the sign-in page (console) for a stranger, 403
for a role too low, a key limited to other relays and hooks, or a route without a policy entry.
A console refusal is a page, so a forged form post gets no further than a missing button would.

Every request that is not a GET is written to the audit log after it was answered: who, from
which address, what (the route, its names and ids, the form's choices), the answer's status,
and for a relay or a hook its configuration before and after (secrets redacted). A view adds
its own words with `request.scope["audit"] = {"replayed": n}`, or says that nothing was done
(a confirmation page) with `request.scope["audit"] = None`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relayhook.core.people import Principal
from relayhook.core.policy import OWN_CHECK, PUBLIC, SIGNED_IN, rule_for
from relayhook.people import People

MAX_BODY = 1_048_576  # what a form or JSON body may hold (the console's limit)
MAX_ANSWER = 65_536  # a JSON answer read for the audit line's counts
# Form and JSON fields whose values the audit line keeps; any other field is named only.
KEPT = (
    "action",
    "status",
    "statuses",
    "since",
    "until",
    "hook",
    "relay",
    "active",
    "rotate",
    "name",
    "connector",
    "role",
    "email",
    "expires",
    "limit",
    "login",
    "preset",
    "events",
    "reason",
    "min_code",
    "max_code",
    "text",
)
COUNTS = ("replayed", "count", "queued", "acknowledged", "deleted", "total", "changed")
CREATES = ("/api/hooks", "/api/relays", "/hooks/new", "/relays/new")
PLAIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
SIGNIN_RESULTS = {303: "success", 302: "success", 401: "failure", 429: "throttled"}

Forbidden = Callable[[Request, str], Awaitable[Response]]
Describe = Callable[[str, str], Awaitable[dict[str, Any] | None]]
Session = Callable[[Request], Awaitable[str | None]]


class Access:
    """Who a request is from, and whether the policy lets them through."""

    def __init__(
        self,
        people: People,
        *,
        session_account: Session | None = None,
        forbidden_page: Forbidden | None = None,
        describe: Describe | None = None,
        address_of: Callable[[Request], str] | None = None,
    ) -> None:
        self.people, self.session_account = people, session_account
        self.forbidden_page, self.describe = forbidden_page, describe
        self.address_of = address_of or (lambda r: r.client.host if r.client else "unknown")

    async def principal(self, request: Request) -> Principal | None:
        if "principal" in request.scope:
            return request.scope["principal"]  # type: ignore[no-any-return]
        found: Principal | None = None
        if request.url.path.startswith("/api/"):
            given = request.headers.get("authorization", "")
            if given[:7].lower() == "bearer ":
                found = await self.people.principal_of_token(given[7:].strip())
        elif self.session_account is not None:
            account = await self.session_account(request)
            found = await self.people.principal_of_account(account) if account else None
        request.scope["principal"] = found
        return found

    def wrap(self, app: ASGIApp, path: str) -> ASGIApp:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive)
            api = path.startswith("/api/")
            rule = rule_for(request.method, path)
            if rule is None:
                message = (
                    f"{request.method} {path} has no entry in the policy table "
                    "(relayhook.core.policy.POLICY); refused"
                )
                await self._refuse(request, api, 403, message)(scope, receive, send)
                return
            if rule == OWN_CHECK:
                await app(scope, receive, send)
                return
            principal = await self.principal(request)
            if rule != PUBLIC:
                refused = self._refusal(request, api, principal, rule, path)
                if refused is not None:
                    await refused(scope, receive, send)
                    return
            if request.method in ("GET", "HEAD"):
                await app(scope, receive, send)
                return
            await self._audited(app, request, path, principal, scope, send)

        return guarded

    def _refusal(
        self, request: Request, api: bool, principal: Principal | None, rule: str, path: str
    ) -> ASGIApp | None:
        if principal is None:
            if not api:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/signin?next={quote(target, safe='')}", 303)
            if not self.people.admin_token and "authorization" not in request.headers:
                return JSONResponse(
                    {"error": "the API is off: set [admin] token or make an API key"}, 403
                )
            return JSONResponse(
                {"error": "missing, wrong, expired or revoked bearer token"},
                401,
                headers={"WWW-Authenticate": 'Bearer realm="relayhook"'},
            )
        if rule != SIGNED_IN and not principal.may(rule):  # type: ignore[arg-type]
            return self._refuse(
                request,
                api,
                403,
                f"This needs the {rule} role; {principal.name} is {principal.role}.",
            )
        if principal.relays or principal.hooks:
            relay, hook = scoped_names(request, path)
            if (relay is None and hook is None) or not principal.reaches(relay, hook):
                return self._refuse(
                    request,
                    api,
                    403,
                    "This key is limited to some relays and "
                    "hooks; name one of them in the path or with ?hook= or "
                    "?relay=.",
                )
        return None

    def _refuse(self, request: Request, api: bool, status: int, message: str) -> ASGIApp:
        if api or self.forbidden_page is None:
            return JSONResponse({"error": message}, status)

        async def page(scope: Scope, receive: Receive, send: Send) -> None:
            assert self.forbidden_page is not None
            await (await self.forbidden_page(request, message))(scope, receive, send)

        return page

    async def _audited(
        self,
        app: ASGIApp,
        request: Request,
        path: str,
        principal: Principal | None,
        scope: Scope,
        send: Send,
    ) -> None:
        body = await _read_body(request)
        relay, hook = scoped_names(request, path)
        created = _fields(request.headers.get("content-type", ""), body).get("name")
        if isinstance(created, str) and path in CREATES:
            relay, hook = (created, None) if "relays" in path else (None, created)
        kind, name = ("hook", hook) if hook else ("relay", relay) if relay else ("", None)
        before = await self._describe(kind, name)
        status, answer = 500, bytearray()

        async def replay_body() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and len(answer) < MAX_ANSWER:
                answer.extend(message.get("body", b"")[: MAX_ANSWER - len(answer)])
            await send(message)

        try:
            await app(scope, replay_body, capture)
        finally:
            extra = scope.get("audit", {})  # a view's own words: a count; None: nothing done
            if extra is not None:
                await self._record(
                    request, path, principal, kind, name, before, body, bytes(answer), status, extra
                )

    async def _record(
        self,
        request: Request,
        path: str,
        principal: Principal | None,
        kind: str,
        name: str | None,
        before: dict[str, Any] | None,
        body: bytes,
        answer: bytes,
        status: int,
        extra: Mapping[str, Any],
    ) -> None:
        after = await self._describe(kind, name)
        detail = {**audit_detail(request, path, body, answer, status), **extra}
        if before != after:
            detail.update(before=before, after=after)
        who = request.scope.get("principal") or principal
        action = action_of(request.method, path, detail)
        if action == "signin":
            action = f"signin.{SIGNIN_RESULTS.get(status, 'failure')}"
        target = f"{kind}:{name}" if name else target_of(request, path)
        await self.people.record(who, self.address_of(request), action, target, detail)

    async def _describe(self, kind: str, name: str | None) -> dict[str, Any] | None:
        if self.describe is None or not name:
            return None
        try:
            return await self.describe(kind, name)
        except Exception:
            return None


def enforce(routes: list[BaseRoute], access: Access) -> list[BaseRoute]:
    """Every Route behind the policy (mounted static files are public)."""
    for route in routes:
        if isinstance(route, Route):
            route.app = access.wrap(route.app, route.path)
    return routes


def scoped_names(request: Request, path: str) -> tuple[str | None, str | None]:
    """The relay and the hook a request names (path, then query)."""
    params: Mapping[str, Any] = request.path_params or _path_params(request)
    name = params.get("name")
    relay = name if path.startswith(("/api/relays/", "/relays/")) else None
    hook = name if path.startswith(("/api/hooks/", "/hooks/")) else None
    return (
        relay or request.query_params.get("relay") or None,
        hook or request.query_params.get("hook") or None,
    )


def _path_params(request: Request) -> Mapping[str, Any]:
    return request.scope.get("path_params", {})  # type: ignore[no-any-return]


def target_of(request: Request, path: str) -> str:
    params = {k: v for k, v in _path_params(request).items() if k != "token"}  # a link's secret
    if not params:
        return ""
    first = path.strip("/").split("/")
    noun = first[1] if first[0] in ("api", "settings") and len(first) > 1 else first[0]
    return f"{noun.rstrip('s')}:{next(iter(params.values()))}"


def action_of(method: str, path: str, detail: Mapping[str, Any]) -> str:
    """A dotted name from the route: POST /api/hooks -> hooks.create, PUT /api/hooks/{name} ->
    hooks.update, POST /hooks/{name}/replay -> hooks.replay, plus the form's `action`."""
    words = [
        w
        for w in path.strip("/").split("/")
        if w and not w.startswith("{") and w not in ("api", "settings")
    ]
    verb = {"PUT": "update", "DELETE": "delete", "PATCH": "update"}.get(method)
    if verb is None and len(words) == 1 and words[0] not in ("signin", "signout", "welcome"):
        verb = "create"
    name = ".".join(words + ([verb] if verb else []))
    chosen = (detail.get("form") or {}).get("action")
    return f"{name}.{chosen}" if isinstance(chosen, str) and chosen.isidentifier() else name


def audit_detail(
    request: Request, path: str, body: bytes, answer: bytes, status: int
) -> dict[str, Any]:
    detail: dict[str, Any] = {"route": f"{request.method} {path}", "status": status}
    if request.scope.get("path_params"):
        detail["params"] = dict(request.scope["path_params"])
    query = {k: v for k, v in request.query_params.items() if k in KEPT}
    if query:
        detail["query"] = query
    fields = _fields(request.headers.get("content-type", ""), body)
    if fields:
        detail["form"] = {k: v for k, v in fields.items() if k in KEPT}
        named = sorted(k for k in fields if k not in KEPT and k != "csrf")
        if named:
            detail["fields"] = named
    try:
        parsed = json.loads(answer) if answer else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        detail.update({k: v for k, v in parsed.items() if k in COUNTS and isinstance(v, int)})
        if status >= 400 and isinstance(parsed.get("error"), str):
            detail["error"] = parsed["error"][:300]
    return detail


def _fields(content_type: str, body: bytes) -> dict[str, Any]:
    """A JSON object's or a form's fields (whatever the content type says: a script may send
    JSON as anything); only those with a plain name, so a body is never kept by mistake."""
    if not body:
        return {}
    text = body.decode("utf-8", errors="replace")
    if "json" in content_type or text.lstrip().startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            return {}
        pairs = list(parsed.items()) if isinstance(parsed, dict) else []
    else:
        pairs = parse_qsl(text, keep_blank_values=True)
    return {str(k): v for k, v in pairs if PLAIN_NAME.fullmatch(str(k))}


async def _read_body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY:
            break
    return bytes(body)
