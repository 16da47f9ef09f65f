"""Signing in to the console: the admin password, sessions with a server side, CSRF tokens.

    gate = Gate(store, secure=settings.public_url().startswith("https:"), clock=time.time,
                new_id=new_uuid, proxies=TrustedProxies.from_config([...]))
    session = await gate.read(request)           # a Session, signed in or not
    if not session.signed_in: ... redirect to /signin

The password is kept as an argon2id hash in the store (`admin_values`), beside the key that signs
cookies: every process of a scale-out sees the same ones, and `relayhook admin password` works on
a running server. Each sign-in is a row in the store (`console_sessions`: created, last seen,
address, user agent); the cookie, signed with itsdangerous, carries a random token whose SHA-256
is that row's key. Signing out, revoking a session (console or API) or changing the password
deletes rows, and every process refuses their cookies within SESSION_CHECK_SECONDS: a process
remembers a lookup that long, no longer. The cookie also holds the CSRF token and a one-time
flash message. Not Starlette's SessionMiddleware: it would wrap the ingress hot path too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from relayhook.core.clients import TrustedProxies
from relayhook.passwords import ADMIN_ACCOUNT, PASSWORD_HASH, password_matches
from relayhook.store.base import ConsoleSession, ConsoleStore
from relayhook.web.console.throttle import SignInGuard

SESSION_KEY = "session_key"
COOKIE = "relayhook_console"
DEVICE_COOKIE = "relayhook_device"  # "this browser signed in to the account before"
SESSION_SECONDS = 7 * 24 * 3600
DEVICE_SECONDS = 365 * 24 * 3600
HASH_CACHE_SECONDS = 1.0  # a new password is checked against within this
SESSION_CHECK_SECONDS = 0.5  # a revoked session is refused by every process within this
SESSIONS_REMEMBERED = 4096  # lookups kept at most per process
TOUCH_SECONDS = 60.0  # "last seen" is written at most this often per session
MAX_USER_AGENT = 300


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Session:
    """What the signed cookie holds: a CSRF token always; `sid` (the session's token) once
    signed in; a one-time `flash` message. `record` is the session's row while it is open.
    `changed` says the cookie must be set again."""

    data: dict[str, Any] = field(default_factory=dict)
    signed_in: bool = False
    changed: bool = False
    record: ConsoleSession | None = None

    @property
    def csrf(self) -> str:
        token = self.data.get("csrf")
        if not isinstance(token, str):
            token = self.data["csrf"] = secrets.token_urlsafe(24)
            self.changed = True
        return token

    def csrf_matches(self, given: str | None) -> bool:
        token = self.data.get("csrf")
        return (
            isinstance(token, str)
            and given is not None
            and hmac.compare_digest(token.encode(), given.encode())
        )

    def flash(self, message: str) -> None:
        self.data["flash"] = message
        self.changed = True

    def take_flash(self) -> str | None:
        message = self.data.pop("flash", None)
        if message is not None:
            self.changed = True
        return message if isinstance(message, str) else None


class Gate:
    """Reads and writes the session cookie, keeps the session rows, checks passwords against
    the stored hash (through the sign-in guard)."""

    def __init__(
        self,
        store: ConsoleStore,
        *,
        secure: bool,
        clock: Callable[[], float],
        new_id: Callable[[], str],
        proxies: TrustedProxies | None = None,
    ) -> None:
        self.store, self.secure, self.clock, self.new_id = store, secure, clock, new_id
        self.proxies = proxies or TrustedProxies()
        self.guard = SignInGuard(clock)
        self._serializer: URLSafeTimedSerializer | None = None
        self._hash: tuple[float, str | None] = (float("-inf"), None)
        self._sessions: dict[str, tuple[float, ConsoleSession | None]] = {}

    async def start(self) -> None:
        """Make the session key on the first start (shared by every process)."""
        await self.store.set_admin_value(
            SESSION_KEY, secrets.token_urlsafe(32), self.clock(), replace=False
        )

    async def _signer(self) -> URLSafeTimedSerializer:
        if self._serializer is None:
            key = await self.store.get_admin_value(SESSION_KEY)
            if key is None:
                await self.start()
                key = await self.store.get_admin_value(SESSION_KEY)
            self._serializer = URLSafeTimedSerializer(str(key), salt="relayhook-console")
        return self._serializer

    def address_of(self, request: Request) -> str:
        """The client's address: `[server] forwarded_allow_ips` says whether a proxy's
        X-Forwarded-For is believed."""
        return self.proxies.client_of(request.scope)

    async def password_hash(self) -> str | None:
        read_at, stored = self._hash
        if self.clock() - read_at > HASH_CACHE_SECONDS:
            stored = await self.store.get_admin_value(PASSWORD_HASH)
            self._hash = (self.clock(), stored)
        return stored

    async def _load(self, raw: str | None, max_age: int, salt: str = "") -> dict[str, Any]:
        if not raw:
            return {}
        signer = await self._signer()
        try:
            loaded = (
                signer if not salt else URLSafeTimedSerializer(signer.secret_key, salt=salt)
            ).loads(raw, max_age=max_age)
        except BadSignature:
            return {}
        return loaded if isinstance(loaded, dict) else {}

    async def _session_of(self, token: str) -> ConsoleSession | None:
        """The open session of `token`, as the store said at most SESSION_CHECK_SECONDS ago."""
        key, now = token_hash(token), self.clock()
        read_at, record = self._sessions.get(key, (float("-inf"), None))
        if now - read_at > SESSION_CHECK_SECONDS:
            record = await self.store.find_session(key, now)
            if len(self._sessions) >= SESSIONS_REMEMBERED:
                self._sessions.clear()
            self._sessions[key] = (now, record)
        if record is not None and now - record.last_seen_at > TOUCH_SECONDS:
            await self.store.touch_session(record.id, now)
            record = dataclasses.replace(record, last_seen_at=now)
            self._sessions[key] = (self._sessions[key][0], record)
        return record

    async def read(self, request: Request) -> Session:
        """The request's session, read once per request (kept in its scope)."""
        known = request.scope.get("console_session")
        if isinstance(known, Session):
            return known
        session = await self._read(request)
        request.scope["console_session"] = session
        return session

    async def account_of(self, request: Request) -> str | None:
        """Whose open session the request carries, or None."""
        session = await self.read(request)
        return session.record.account if session.record is not None else None

    async def _read(self, request: Request) -> Session:
        data = await self._load(request.cookies.get(COOKIE), SESSION_SECONDS)
        token = data.get("sid")
        record = await self._session_of(token) if isinstance(token, str) else None
        session = Session(data, record is not None, record=record)
        if token is not None and record is None:  # signed out, revoked or expired: forget it
            data.pop("sid", None)
            session.changed = True
        return session

    async def check_password(self, password: str, stored: str | None = None) -> bool | None:
        """Whether `password` matches `stored` (default: the first admin's hash); None when
        too many checks run already (try again in a second): argon2 work is capped, see
        throttle.SignInGuard."""
        stored = stored if stored is not None else await self.password_hash()
        if stored is None:
            return False
        return await self.guard.verify(password_matches, stored, password)

    async def sign_in(
        self, session: Session, request: Request, account: str = ADMIN_ACCOUNT
    ) -> None:
        """A new session row of `account` for this browser; the cookie gets its token (and a
        new CSRF)."""
        token, now = secrets.token_urlsafe(32), self.clock()
        agent = request.headers.get("user-agent", "")[:MAX_USER_AGENT]
        record = ConsoleSession(
            self.new_id(), account, now, now, now + SESSION_SECONDS, self.address_of(request), agent
        )
        await self.store.create_session(record, token_hash(token))
        session.data = {"sid": token, "csrf": secrets.token_urlsafe(24)}
        session.record, session.signed_in, session.changed = record, True, True

    async def sign_out(self, session: Session) -> None:
        """End this browser's session in every process, and forget it in the cookie."""
        if session.record is not None:
            await self.revoke(session.record.id)
        session.data, session.record = {}, None
        session.signed_in, session.changed = False, True

    async def revoke(self, session_id: str) -> bool:
        revoked = await self.store.revoke_session(session_id)
        self._sessions.clear()  # this process at once; the others within SESSION_CHECK_SECONDS
        return revoked

    async def revoke_others(self, session: Session) -> int:
        keep = session.record.id if session.record is not None else None
        account = session.record.account if session.record is not None else ADMIN_ACCOUNT
        ended = await self.store.revoke_sessions(account, keep=keep)
        self._sessions.clear()
        return ended

    def forget_sessions(self) -> None:
        """After a change made elsewhere in this process (a new password)."""
        self._sessions.clear()
        self._hash = (float("-inf"), None)

    async def device_of(self, request: Request, account: str = ADMIN_ACCOUNT) -> str | None:
        """The device token of a browser that signed in to `account` before, or None."""
        data = await self._load(
            request.cookies.get(DEVICE_COOKIE), DEVICE_SECONDS, salt="relayhook-device"
        )
        device = data.get("device")
        return device if isinstance(device, str) and data.get("account") == account else None

    async def remember_device(
        self, response: Response, device: str | None, account: str = ADMIN_ACCOUNT
    ) -> None:
        """After a successful sign-in: mark this browser as one `account` used (see throttle)."""
        signer = await self._signer()
        value = URLSafeTimedSerializer(signer.secret_key, salt="relayhook-device").dumps(
            {"account": account, "device": device or secrets.token_urlsafe(16)}
        )
        response.set_cookie(
            DEVICE_COOKIE,
            value,
            max_age=DEVICE_SECONDS,
            path="/signin",
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )

    async def write(self, session: Session, response: Response) -> None:
        """Set the cookie on `response` when the session changed."""
        if not session.changed:
            return
        value = (await self._signer()).dumps(session.data)
        response.set_cookie(
            COOKIE,
            value,
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )
