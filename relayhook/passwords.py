"""The console's admin password: an argon2id hash in the store (`admin_values`), shared by every
process, set by `relayhook admin password` or made up on the first start.

    password = await ensure_password(store, now)     # None if one was set already
    await set_password(store, "a new long password", now)
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

if TYPE_CHECKING:
    from relayhook.store.base import ConsoleStore

PASSWORD_HASH = "password_hash"
ADMIN_ACCOUNT = "admin"  # whose sessions are kept: the one admin (people of their own later)
MIN_PASSWORD = 10

_hasher = PasswordHasher()  # argon2id, RFC 9106's low-memory profile


@functools.cache
def dummy_hash() -> str:
    """Checked against when no one of that name can sign in: the same work, so the time of
    the answer does not tell which names exist."""
    return _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """The argon2id hash to store. ValueError for a password too short to be one."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a console password has at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def new_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


def password_matches(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def fingerprint(stored_hash: str) -> str:
    return hashlib.sha256(stored_hash.encode()).hexdigest()[:16]


async def ensure_password(store: ConsoleStore, now: float) -> str | None:
    """Make up a password when none is stored; returns it (to be shown once) if this call set
    it, None when one was there already (or another process set one first)."""
    if await store.get_admin_value(PASSWORD_HASH) is not None:
        return None
    password = new_password()
    stored_hash = await asyncio.to_thread(hash_password, password)
    written = await store.set_admin_value(PASSWORD_HASH, stored_hash, now, replace=False)
    return password if written else None


async def set_password(
    store: ConsoleStore, password: str, now: float, *, keep_session: str | None = None
) -> int:
    """Set a new password and end every session but `keep_session` (the one that changed it),
    in one transaction; how many sessions ended."""
    stored_hash = await asyncio.to_thread(hash_password, password)
    return await store.change_secret(
        PASSWORD_HASH, stored_hash, now, account=ADMIN_ACCOUNT, keep=keep_session
    )
