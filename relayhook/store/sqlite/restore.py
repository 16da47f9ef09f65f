"""Restoring an SQLite backup in the store's place, and the lock that keeps it from replacing a
store in use.

Every process that opens the store holds a shared `flock` on the database file for as long as
it is open (`hold_shared`); `restore` takes it exclusively, so it refuses while `relayhook serve`
or any other command has the store open, and a store cannot open while a restore runs. (flock
locks are apart from the POSIX locks SQLite takes itself.)

    fd = hold_shared(path)          # at open; os.close(fd) at close
    kept = restore(backup, path)    # the copy of what was there before, or None
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from pathlib import Path

from relayhook.store.base import StoreError
from relayhook.store.sqlite.ops import backup as copy_database
from relayhook.store.sqlite.schema import LATEST

IN_USE = (
    "{path} is in use by a running relayhook (serve, or another command): stop it before restoring"
)


def _locked(path: Path, mode: int) -> int:
    """An fd on `path` (made if missing) with the flock `mode`, on the file that has that name
    now (a restore may have put another in its place meanwhile). BlockingIOError if taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(10):  # bounded: a name replaced ten times over in a row is a fault
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except PermissionError:  # a database this user may only read: a lock needs no more
            fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise StoreError(f"{path} keeps being replaced")


def hold_shared(path: Path) -> int:
    """The shared lock an open store holds on its database file; StoreError while a restore
    runs."""
    try:
        return _locked(path, fcntl.LOCK_SH)
    except BlockingIOError:
        raise StoreError(f"{path} is being restored: start again once the restore ends") from None


def check_backup(source: Path) -> int:
    """The schema version of the backup `source`; StoreError if it is no usable backup."""
    if not source.is_file():
        raise StoreError(f"{source}: no such file")
    try:
        with contextlib.closing(
            sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True)
        ) as conn:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{source} is not an SQLite database: {exc}") from exc
    if result != "ok":
        raise StoreError(f"{source} fails its check: {result}")
    if version < 1 or "requests" not in tables:
        raise StoreError(f"{source} is not a relayhook backup (no relayhook schema in it)")
    if version > LATEST:
        raise StoreError(
            f"{source} has schema version {version}, newer than this relayhook's"
            f" ({LATEST}): restore it with the release that made it"
        )
    return version


def restore(source: Path, target: Path, *, now: float | None = None) -> Path | None:
    """Put the backup `source` in the place of the database `target`, which no process may
    have open. What `target` held (its WAL included) is first copied beside it, as
    `<name>.before-restore-<UTC time>`, and that path returned (None if it held nothing)."""
    check_backup(source)
    try:
        fd = _locked(target, fcntl.LOCK_EX)
    except BlockingIOError:
        raise StoreError(IN_USE.format(path=target)) from None
    try:
        kept = None
        if os.fstat(fd).st_size > 0:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
            kept = target.with_name(f"{target.name}.before-restore-{stamp}")
            copy_database(lambda: sqlite3.connect(target), kept)
        partial = target.with_name(target.name + ".restoring")
        partial.unlink(missing_ok=True)  # left by a restore that was killed
        try:
            copy_database(lambda: sqlite3.connect(source), partial)
            for suffix in ("-wal", "-shm"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return kept
    finally:
        os.close(fd)
