"""What the SQLite engine's modules share about rows: JSON columns, events, filtered pages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from relayhook.store.text import dumps

__all__ = ["Row", "dumps", "page_query", "where"]

Row = tuple[Any, ...]
Filters = Sequence[tuple[str, object]]


def where(filters: Filters) -> tuple[str, list[object]]:
    """`WHERE ... AND ...` from (condition with one `?`, value) pairs; a None value is no filter."""
    given = [(condition, value) for condition, value in filters if value is not None]
    conditions = " AND ".join(condition for condition, _ in given)
    return (f"WHERE {conditions}" if conditions else ""), [value for _, value in given]


def page_query(
    table: str, columns: str, filters: Filters, before: str | None, limit: int
) -> tuple[str, list[object]]:
    """Newest first; `before` is the id of the row to page from (exclusive)."""
    if limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")
    if before is not None:
        # An unknown `before` id compares with NULL: an empty page, not an error.
        filters = [*filters, (f"seq < (SELECT seq FROM {table} WHERE id = ?)", before)]
    clause, params = where(filters)
    return f"SELECT {columns} FROM {table} {clause} ORDER BY seq DESC LIMIT ?", [*params, limit]
