"""Signing in to the console: the admin password, the session cookie, CSRF tokens, throttling.

    gate = Gate(store, secure=settings.public_url().startswith("https:"), clock=time.time)
    session = await gate.read(request)           # a Session, signed in or not
    if not session.signed_in: ... redirect to /signin

The password is kept as an argon2id hash in the store (`admin_values`), beside the key that signs
session cookies: every process of a scale-out sees the same ones, and `relayhook admin password`
works on a running server. The cookie is signed with itsdangerous, not Starlette's
SessionMiddleware: that middleware would wrap the ingress hot path too, and could not end the
sessions of an old password; ours carries a fingerprint of the password hash, so setting a new
password signs every browser out.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from relayhook.passwords import PASSWORD_HASH, fingerprint, password_matches
from relayhook.store.base import ConfigStore

SESSION_KEY = "session_key"
COOKIE = "relayhook_console"
SESSION_SECONDS = 7 * 24 * 3600
FAILURES_ALLOWED = 5  # per address within THROTTLE_WINDOW; the next try is answered 429
THROTTLE_WINDOW = 60.0
THROTTLE_ADDRESSES = 10_000  # remembered at most; the oldest are forgotten first
HASH_CACHE_SECONDS = 1.0  # a new password ends other processes' sessions within this

@dataclass
class Session:
    """What the signed cookie holds: a CSRF token always; `auth` (the password's fingerprint)
    once signed in; a one-time `flash` message. `changed` says the cookie must be set again."""

    data: dict[str, Any] = field(default_factory=dict)
    signed_in: bool = False
    changed: bool = False

    @property
    def csrf(self) -> str:
        token = self.data.get("csrf")
        if not isinstance(token, str):
            token = self.data["csrf"] = secrets.token_urlsafe(24)
            self.changed = True
        return token

    def csrf_matches(self, given: str | None) -> bool:
        token = self.data.get("csrf")
        return isinstance(token, str) and given is not None and hmac.compare_digest(
            token.encode(), given.encode())

    def flash(self, message: str) -> None:
        self.data["flash"] = message
        self.changed = True

    def take_flash(self) -> str | None:
        message = self.data.pop("flash", None)
        if message is not None:
            self.changed = True
        return message if isinstance(message, str) else None


class Throttle:
    """Failed sign-ins per address: after FAILURES_ALLOWED within the window, `retry_after`
    gives the seconds until the oldest of them leaves it. `clock` is injected."""

    def __init__(self, clock: Callable[[], float], allowed: int = FAILURES_ALLOWED,
                 window: float = THROTTLE_WINDOW) -> None:
        self.clock, self.allowed, self.window = clock, allowed, window
        self._failures: dict[str, list[float]] = {}

    def retry_after(self, address: str) -> int | None:
        now = self.clock()
        recent = [t for t in self._failures.get(address, []) if t > now - self.window]
        if recent:
            self._failures[address] = recent
        else:
            self._failures.pop(address, None)
        if len(recent) < self.allowed:
            return None
        return max(1, int(recent[-self.allowed] + self.window - now + 0.999))

    def fail(self, address: str) -> None:
        if address not in self._failures and len(self._failures) >= THROTTLE_ADDRESSES:
            del self._failures[next(iter(self._failures))]  # bounded: forget the oldest
        self._failures.setdefault(address, []).append(self.clock())
        del self._failures[address][: -self.allowed]  # only the newest few matter

    def forget(self, address: str) -> None:
        self._failures.pop(address, None)


class Gate:
    """Reads and writes the session cookie; checks passwords against the stored hash."""

    def __init__(self, store: ConfigStore, *, secure: bool, clock: Callable[[], float]) -> None:
        self.store, self.secure, self.clock = store, secure, clock
        self.throttle = Throttle(clock)
        self._serializer: URLSafeTimedSerializer | None = None
        self._hash: tuple[float, str | None] = (float("-inf"), None)

    async def start(self) -> None:
        """Make the session key on the first start (shared by every process)."""
        await self.store.set_admin_value(SESSION_KEY, secrets.token_urlsafe(32), self.clock(),
                                         replace=False)

    async def _signer(self) -> URLSafeTimedSerializer:
        if self._serializer is None:
            key = await self.store.get_admin_value(SESSION_KEY)
            if key is None:
                await self.start()
                key = await self.store.get_admin_value(SESSION_KEY)
            self._serializer = URLSafeTimedSerializer(str(key), salt="relayhook-console")
        return self._serializer

    async def password_hash(self) -> str | None:
        read_at, stored = self._hash
        if self.clock() - read_at > HASH_CACHE_SECONDS:
            stored = await self.store.get_admin_value(PASSWORD_HASH)
            self._hash = (self.clock(), stored)
        return stored

    async def read(self, request: Request) -> Session:
        raw = request.cookies.get(COOKIE)
        data: dict[str, Any] = {}
        if raw:
            try:
                loaded = (await self._signer()).loads(raw, max_age=SESSION_SECONDS)
                data = loaded if isinstance(loaded, dict) else {}
            except BadSignature:
                data = {}
        stored = await self.password_hash()
        auth = data.get("auth")
        signed_in = stored is not None and isinstance(auth, str) and hmac.compare_digest(
            auth, fingerprint(stored))
        return Session(data, signed_in)

    async def check_password(self, password: str) -> bool:
        stored = await self.password_hash()
        if stored is None:
            return False
        return await asyncio.to_thread(password_matches, stored, password)

    async def sign_in(self, session: Session) -> None:
        stored = await self.password_hash()
        session.data = {"auth": fingerprint(stored or ""), "csrf": secrets.token_urlsafe(24)}
        session.signed_in = session.changed = True

    async def write(self, session: Session, response: Response) -> None:
        """Set the cookie on `response` when the session changed."""
        if not session.changed:
            return
        value = (await self._signer()).dumps(session.data)
        response.set_cookie(COOKIE, value, max_age=SESSION_SECONDS, path="/", httponly=True,
                            samesite="lax", secure=self.secure)
