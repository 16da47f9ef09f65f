"""Versioned schema migrations, the same rules for every engine.

Each engine lists its migrations, numbered 1, 2, 3... in order; a database remembers the last one
applied (SQLite: `PRAGMA user_version`; PostgreSQL: the `schema_migrations` table). `plan` says
which are pending, and refuses a database newer than this relayhook, or one that is behind when
migrating is not allowed (`relayhook serve --no-migrate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relayhook.store.base import StoreError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str  # what it does, in a few words: printed by `relayhook migrate`
    sql: str
    # It rebuilds a table other tables reference: SQLite runs it with foreign keys off (they
    # cannot be turned off inside a transaction) and checks every reference before it commits.
    rebuilds: bool = False

    def __str__(self) -> str:
        return f"{self.version} ({self.name})"


def check_numbering(migrations: Sequence[Migration]) -> None:
    """ValueError unless the versions are 1, 2, 3... (a programming error, caught by tests)."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3...: {versions}")


def plan(
    current: int,
    migrations: Sequence[Migration],
    *,
    where: str,
    migrate: bool,
    upto: int | None = None,
) -> list[Migration]:
    """The migrations to apply to a database at version `current` (0: empty), in order (up to
    version `upto`, for tests that make an older database)."""
    latest = migrations[-1].version
    if current > latest:
        raise StoreError(
            f"{where} has schema version {current}, newer than this relayhook's ({latest}):"
            " upgrade relayhook"
        )
    pending = [m for m in migrations if current < m.version <= (upto or latest)]
    if pending and not migrate:
        names = ", ".join(str(m) for m in pending)
        raise StoreError(
            f"{where} has schema version {current}; this relayhook needs {latest}"
            f" (pending: {names}): run `relayhook migrate`, or serve without --no-migrate"
        )
    return pending
