"""The one place that changes people and API keys, and writes the audit log.

    people = People(store, clock=time.time, new_id=new_uuid)
    account, link = await people.invite("Ana", "ana@example.com", "operator", by=admin)
    key, token = await people.create_key("CI", "editor", by=admin)   # token shown once
    principal = await people.principal_of_token(token)               # None: unknown, revoked

Every process sees a disabled person, a revoked key or a revoked session within CHECK_SECONDS:
a lookup is remembered that long, no longer; the change itself ends the sessions in the store.
The first admin is the account `admin` (relayhook.passwords keeps its password where it always
was, so `relayhook admin password` works as before).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from relayhook.core.people import (
    Account,
    ApiKey,
    AuditEntry,
    Principal,
    as_role,
    redact_detail,
)
from relayhook.delivery.mail import Mailer as SmtpMailer
from relayhook.errors import ConflictError, InvalidError, NotFoundError, SpecError
from relayhook.passwords import ADMIN_ACCOUNT, PASSWORD_HASH, hash_password
from relayhook.settings import Settings
from relayhook.store.base import Store

log = logging.getLogger("relayhook.people")
CHECK_SECONDS = 0.5  # a disabled person or a revoked key is refused by every process within this
LINK_SECONDS = 24 * 3600  # an invite or a reset link is valid this long, once
TOUCH_SECONDS = 60.0  # a key's "last used" is written at most this often
REMEMBERED = 4096
KEY_PREFIX = "rhk_"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
Mailer = Callable[[str, str, str], Awaitable[None]]  # (to, subject, text)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class People:
    """Accounts, one-time links, API keys and the audit log, over the store."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float],
        new_id: Callable[[], str],
        admin_token: str = "",
        secrets_to_hide: Callable[[], Sequence[str]] = tuple,
        mailer: Mailer | None = None,
        public_url: str = "",
    ) -> None:
        self.store, self.clock, self.new_id = store, clock, new_id
        self.admin_token, self.mailer, self.public_url = admin_token, mailer, public_url
        self.secrets_to_hide = secrets_to_hide
        self._accounts: dict[str, tuple[float, Account | None]] = {}
        self._keys: dict[str, tuple[float, ApiKey | None]] = {}

    # -- accounts

    async def ensure_admin(self) -> None:
        """The first admin's account row (its password is relayhook.passwords')."""
        if await self.store.get_account(ADMIN_ACCOUNT) is None:
            await self.store.save_account(
                Account(ADMIN_ACCOUNT, "admin", "", "admin", self.clock())
            )

    async def account(self, account_id: str) -> Account | None:
        """The account, as the store said at most CHECK_SECONDS ago."""
        now = self.clock()
        read_at, found = self._accounts.get(account_id, (float("-inf"), None))
        if now - read_at > CHECK_SECONDS:
            found = await self.store.get_account(account_id)
            if len(self._accounts) >= REMEMBERED:
                self._accounts.clear()
            self._accounts[account_id] = (now, found)
        return found

    async def must(self, account_id: str) -> Account:
        found = await self.store.get_account(account_id)
        if found is None:
            raise NotFoundError(f"there is no person {account_id!r}")
        return found

    async def login(self, login: str) -> Account | None:
        """The account someone signs in as: an e-mail, or an account id (`admin`)."""
        login = login.strip() or ADMIN_ACCOUNT
        found = await self.store.find_account(login) if "@" in login else None
        return found or await self.store.get_account(login)

    async def password_hash(self, account: Account) -> str | None:
        if account.id == ADMIN_ACCOUNT:
            return await self.store.get_admin_value(PASSWORD_HASH)
        return account.password_hash

    async def add(
        self,
        name: str,
        email: str,
        role: str,
        *,
        password: str | None = None,
        origin: str = "password",
    ) -> Account:
        """A new person. InvalidError naming the field that is wrong; ConflictError when the
        e-mail is taken."""
        errors = []
        if not name.strip():
            errors.append(SpecError(("name",), "enter the person's name"))
        if not EMAIL.match(email.strip()):
            errors.append(SpecError(("email",), "enter an e-mail address like ana@example.com"))
        try:
            checked_role = as_role(role)
        except ValueError as exc:
            errors.append(SpecError(("role",), str(exc)))
        hashed = None
        if password is not None:
            try:
                hashed = hash_password(password)
            except ValueError as exc:
                errors.append(SpecError(("password",), str(exc)))
        if errors:
            raise InvalidError(errors)
        if await self.store.find_account(email.strip()) is not None:
            raise ConflictError(f"someone has the e-mail {email.strip()} already")
        account = Account(
            self.new_id(),
            name.strip(),
            email.strip(),
            checked_role,
            self.clock(),
            hashed,
            origin=origin,
        )
        await self.store.save_account(account)
        return account

    async def new_link(self, account: Account, kind: str) -> str:
        """A one-time link (invite or reset) valid for LINK_SECONDS; mailed when a mailer is
        set. Returns the link to show the admin."""
        token = secrets.token_urlsafe(24)
        await self.store.create_link(token_hash(token), account.id, self.clock() + LINK_SECONDS)
        link = f"{self.public_url.rstrip('/')}/welcome/{token}"
        if self.mailer is not None and account.email:
            subject = (
                "You are invited to Relayhook"
                if kind == "invite"
                else "Set a new Relayhook password"
            )
            try:
                await self.mailer(
                    account.email,
                    subject,
                    f"Hello {account.name},\n\nSet your password here (the link "
                    f"works once, for a day):\n{link}\n",
                )
            except Exception:
                log.exception("could not e-mail the %s link to %s", kind, account.email)
        return link

    async def invite(self, name: str, email: str, role: str) -> tuple[Account, str]:
        account = await self.add(name, email, role)
        return account, await self.new_link(account, "invite")

    async def reset(self, account_id: str) -> str:
        """The old password stops working and every session ends; a link sets a new one."""
        account = await self.must(account_id)
        if account.id == ADMIN_ACCOUNT:
            await self.store.change_secret(
                PASSWORD_HASH, "!reset", self.clock(), account=ADMIN_ACCOUNT
            )
        else:
            await self.store.save_account(replace(account, password_hash=None), end_sessions=True)
        self.forget()
        return await self.new_link(account, "reset")

    async def link_account(self, token: str) -> Account | None:
        account_id = await self.store.peek_link(token_hash(token), self.clock())
        return None if account_id is None else await self.store.get_account(account_id)

    async def take_link(self, token: str, password: str) -> Account | None:
        """Set the password of a link's account (once); None when the link is not valid."""
        hashed = hash_password(password)  # ValueError first: the link stays usable
        account_id = await self.store.use_link(token_hash(token), self.clock())
        if account_id is None:
            return None
        return await self.set_password(account_id, hashed=hashed)

    async def set_password(
        self,
        account_id: str,
        password: str = "",
        *,
        hashed: str | None = None,
        keep: str | None = None,
    ) -> Account:
        """A new password; every session of the account but `keep` ends."""
        account = await self.must(account_id)
        hashed = hashed or hash_password(password)
        if account.id == ADMIN_ACCOUNT:
            await self.store.change_secret(
                PASSWORD_HASH, hashed, self.clock(), account=ADMIN_ACCOUNT, keep=keep
            )
        else:
            account = replace(account, password_hash=hashed)
            await self.store.save_account(account, end_sessions=True, keep=keep)
        self.forget()
        return account

    async def set_disabled(self, account_id: str, disabled: bool) -> Account:
        """Disable (every session ends at once, in every process) or enable an account."""
        account = await self.must(account_id)
        if disabled and account.role == "admin" and await self._last_admin(account):
            raise ConflictError("this is the last admin who can sign in; make another first")
        account = replace(account, disabled_at=self.clock() if disabled else None)
        await self.store.save_account(account, end_sessions=disabled)
        self.forget()
        return account

    async def set_role(self, account_id: str, role: str) -> Account:
        account = await self.must(account_id)
        new_role = as_role(role)
        if account.role == "admin" and new_role != "admin" and await self._last_admin(account):
            raise ConflictError("this is the last admin; make another first")
        account = replace(account, role=new_role)
        await self.store.save_account(account)
        self.forget()
        return account

    async def _last_admin(self, account: Account) -> bool:
        return not any(
            a.role == "admin" and a.active and a.id != account.id
            for a in await self.store.list_accounts()
        )

    def forget(self) -> None:
        """After a change made in this process: read accounts and keys again at once."""
        self._accounts.clear()
        self._keys.clear()

    async def principal_of_account(self, account_id: str) -> Principal | None:
        account = await self.account(account_id)
        if account is None or not account.active:
            return None
        return Principal(account.id, "person", account.role, account.name)

    # -- API keys

    async def create_key(
        self,
        name: str,
        role: str,
        *,
        by: Principal,
        expires_at: float | None = None,
        relays: Sequence[str] = (),
        hooks: Sequence[str] = (),
    ) -> tuple[ApiKey, str]:
        """A new key and its token (shown once: only its hash is kept)."""
        errors = []
        if not name.strip():
            errors.append(SpecError(("name",), "name the key after what uses it, like CI"))
        try:
            checked = as_role(role)
            if not by.may(checked):
                errors.append(SpecError(("role",), "a key cannot have more rights than you"))
        except ValueError as exc:
            errors.append(SpecError(("role",), str(exc)))
        if expires_at is not None and expires_at <= self.clock():
            errors.append(SpecError(("expires",), "choose an expiry in the future"))
        if errors:
            raise InvalidError(errors)
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            self.new_id(),
            name.strip(),
            checked,
            by.actor,
            self.clock(),
            expires_at,
            tuple(r for r in relays if r),
            tuple(h for h in hooks if h),
        )
        await self.store.create_key(key, token_hash(token))
        return key, token

    async def revoke_key(self, key_id: str) -> bool:
        revoked = await self.store.revoke_key(key_id, self.clock())
        self.forget()
        return revoked

    async def principal_of_token(self, token: str) -> Principal | None:
        """Who a bearer token is: the `[admin] token` (an admin key), a usable API key, or
        None."""
        if self.admin_token and hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Principal("admin-token", "token", "admin", "[admin] token")
        if not token.startswith(KEY_PREFIX):
            return None
        now, hashed = self.clock(), token_hash(token)
        read_at, key = self._keys.get(hashed, (float("-inf"), None))
        if now - read_at > CHECK_SECONDS:
            key = await self.store.find_key(hashed)
            if len(self._keys) >= REMEMBERED:
                self._keys.clear()
            self._keys[hashed] = (now, key)
        if key is None or not key.usable(now):
            return None
        if key.last_used_at is None or now - key.last_used_at > TOUCH_SECONDS:
            await self.store.touch_key(key.id, now)
            self._keys[hashed] = (self._keys[hashed][0], replace(key, last_used_at=now))
        return Principal(key.id, "key", key.role, key.name, key.relays, key.hooks)

    # -- the audit log

    async def record(
        self,
        who: Principal | None,
        address: str,
        action: str,
        target: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one audit line; secrets (by name, and every secret value the configuration
        holds) are redacted. A failure to write is logged, never raised to the person."""
        entry = AuditEntry(
            self.clock(),
            who.actor if who else "anonymous",
            who.name if who else "anonymous",
            address,
            action,
            target,
            redact_detail(dict(detail or {}), list(self.secrets_to_hide())),
        )
        try:
            await self.store.append_audit(entry)
        except Exception:
            log.exception("could not write the audit line %s %s", action, target)


def invite_mailer(settings: Settings) -> Mailer | None:
    """Invites and reset links by e-mail through `[alerts.email]`'s server, when it has one."""
    mail = settings.alerts.email
    if not mail.host or not mail.sender:
        return None

    async def send(to: str, subject: str, text: str) -> None:
        server = SmtpMailer(
            mail.host,
            mail.port,
            mail.sender,
            (to,),
            mail.username,
            mail.password.get_secret_value(),
            mail.tls,
            mail.timeout,
        )
        message = EmailMessage()
        message["Subject"], message["From"], message["To"] = subject, mail.sender, to
        message["Date"] = formatdate(usegmt=True)
        message.set_content(text)
        await asyncio.to_thread(server.send, message)

    return send
