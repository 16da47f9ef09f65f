"""Secrets at rest: relay secrets and hook secret values are sealed before the store sees them.

    sealer = Sealer.from_key(key)             # any string of 32+ characters
    sealed = sealer.seal({"secret": "s3cret"})  # an opaque text for the store
    sealer.open(sealed) == {"secret": "s3cret"}

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`): authenticated, so a changed or foreign
value is refused rather than read as garbage. The key comes from `[secrets] key`, the
RELAYHOOK_SECRET_KEY environment variable, or a key file made on first start (see assembly).

A sealer holds a key ring: it seals with the first key and opens with any (`Sealer.from_keys`,
MultiFernet), so a rotation (relayhook.keys) can seal every value again with a new key while the
old one still opens what it has not reached yet. A key file holds the ring one key a line, the
current key first; a sealer made `from_key_file` reads it again when the file changes, so a
running server follows a rotation without a restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from relayhook.errors import RelayhookError

MIN_KEY_LENGTH = 32
CANNOT_OPEN = (
    "a sealed secret cannot be opened with this key (was the key changed? set"
    " [secrets] key to the one that sealed it)"
)


class SealError(RelayhookError):
    """A sealed value cannot be opened: another key sealed it, or it was changed."""


class Sealer:
    def __init__(self, fernets: Sequence[Fernet], *, key_file: Path | None = None) -> None:
        self._use(fernets)
        self._key_file = key_file
        self._stamp = _stamp(key_file) if key_file is not None else None

    @classmethod
    def from_key(cls, key: str) -> Sealer:
        """Any string of at least 32 characters; it is hashed into Fernet's 32-byte key, so a
        generated `new_key()` and a long passphrase work alike."""
        return cls.from_keys([key])

    @classmethod
    def from_keys(cls, keys: Sequence[str], *, key_file: Path | None = None) -> Sealer:
        """Seals with `keys[0]`, opens with any of them."""
        return cls([_fernet(key) for key in keys], key_file=key_file)

    @classmethod
    def from_key_file(cls, path: Path) -> Sealer:
        """The ring in `path` (one key a line, the current one first), read again whenever
        the file changes."""
        return cls.from_keys(read_key_file(path), key_file=path)

    def seal(self, values: dict[str, Any]) -> str:
        self._follow()  # a rotation may have put a new key first meanwhile
        return self._ring.encrypt(json.dumps(values).encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> dict[str, Any]:
        try:
            return self._open(sealed)
        except SealError:
            if not self._follow():
                raise
        return self._open(sealed)  # sealed with a key this process has just read

    def is_current(self, sealed: str) -> bool:
        """Whether `sealed` opens with the current (first) key."""
        try:
            self._fernets[0].decrypt(sealed.encode("ascii"))
        except (InvalidToken, ValueError):
            return False
        return True

    def reseal(self, sealed: str) -> str:
        """`sealed` sealed again with the current key (opened with any); SealError if none
        opens it."""
        try:
            return self._ring.rotate(sealed.encode("ascii")).decode("ascii")
        except (InvalidToken, ValueError) as exc:
            raise SealError(CANNOT_OPEN) from exc

    def _open(self, sealed: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._ring.decrypt(sealed.encode("ascii")))
        except (InvalidToken, ValueError) as exc:
            raise SealError(CANNOT_OPEN) from exc
        return data

    def _use(self, fernets: Sequence[Fernet]) -> None:
        if not fernets:
            raise ValueError("a key ring needs at least one key")
        self._fernets = list(fernets)
        self._ring = MultiFernet(self._fernets)

    def _follow(self) -> bool:
        """Read the key file again if it changed since; True if the keys changed."""
        if self._key_file is None:
            return False
        stamp = _stamp(self._key_file)
        if stamp == self._stamp or stamp is None:  # unchanged, or gone: keep what we have
            return False
        try:
            keys = read_key_file(self._key_file)
            self._use([_fernet(key) for key in keys])
        except (OSError, ValueError):
            return False  # half written by hand, say: keep the keys we have
        self._stamp = stamp
        return True


def _fernet(key: str) -> Fernet:
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"the secrets key must have at least {MIN_KEY_LENGTH} characters")
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def new_key() -> str:
    return secrets.token_urlsafe(32)


def read_key_file(path: Path) -> list[str]:
    """The keys in `path`, the current one first; ValueError if it holds none."""
    keys = [line.strip() for line in path.read_text(encoding="ascii").splitlines()]
    keys = [key for key in keys if key]
    if not keys:
        raise ValueError(f"{path} holds no key: remove it to make a new key")
    return keys


def write_key_file(path: Path, keys: Sequence[str]) -> None:
    """Replace `path` with `keys`, one a line, atomically (a reader sees the old ring or the
    new one, never half of it), mode 0600, fsync'd."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write("".join(f"{key}\n" for key in keys))
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_or_create_key_file(path: Path) -> tuple[list[str], bool]:
    """The keys in `path` (the current one first), or a new key written there (mode 0600,
    never readable by others even for a moment). Returns (keys, created)."""
    try:
        return read_key_file(path), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = new_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs once it is written
        for _ in range(100):  # bounded: 2 s at most
            if path.read_text(encoding="ascii").strip():
                return read_key_file(path), False
            time.sleep(0.02)
        raise ValueError(f"{path} stays empty: remove it to make a new key") from None
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(key + "\n")
        file.flush()
        os.fsync(file.fileno())
    return [key], True
