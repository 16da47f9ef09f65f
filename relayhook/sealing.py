"""Secrets at rest: relay secrets and hook secret values are sealed before the store sees them.

    sealer = Sealer.from_key(key)             # any string of 32+ characters
    sealed = sealer.seal({"secret": "s3cret"})  # an opaque text for the store
    sealer.open(sealed) == {"secret": "s3cret"}

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`): authenticated, so a changed or foreign
value is refused rather than read as garbage. The key comes from `[secrets] key`, the
RELAYHOOK_SECRET_KEY environment variable, or a key file made on first start (see assembly).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from relayhook.errors import RelayhookError

MIN_KEY_LENGTH = 32


class SealError(RelayhookError):
    """A sealed value cannot be opened: another key sealed it, or it was changed."""


class Sealer:
    def __init__(self, fernet: Fernet) -> None:
        self._fernet = fernet

    @classmethod
    def from_key(cls, key: str) -> Sealer:
        """Any string of at least 32 characters; it is hashed into Fernet's 32-byte key, so a
        generated `new_key()` and a long passphrase work alike."""
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"the secrets key must have at least {MIN_KEY_LENGTH} characters")
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        return cls(Fernet(base64.urlsafe_b64encode(digest)))

    def seal(self, values: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(values).encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._fernet.decrypt(sealed.encode("ascii")))
        except (InvalidToken, ValueError) as exc:
            raise SealError("a sealed secret cannot be opened with this key (was the key"
                            " changed? set [secrets] key to the one that sealed it)") from exc
        return data


def new_key() -> str:
    return secrets.token_urlsafe(32)


def read_or_create_key_file(path: Path) -> tuple[str, bool]:
    """The key in `path`, or a new one written there (mode 0600, never readable by others even
    for a moment). Returns (key, created)."""
    try:
        return path.read_text(encoding="ascii").strip(), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = new_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs once it is written
        for _ in range(100):  # bounded: 2 s at most
            key = path.read_text(encoding="ascii").strip()
            if key:
                return key, False
            time.sleep(0.02)
        raise ValueError(f"{path} stays empty: remove it to make a new key") from None
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(key + "\n")
        file.flush()
        os.fsync(file.fileno())
    return key, True
