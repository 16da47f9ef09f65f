"""Erasing a person: the forms a value takes in what Relayhook keeps, and how each is written
over. Pure; the store engines, the spool and the samples apply it (relayhook.erase).

A value (an e-mail address, a player id) is found however it was written: as is, in any case,
escaped in JSON (`\\u0040`), and URL-encoded in a query or form (`a%40b.com`, `a+b`); each
occurrence becomes `[erased]` (`%5Berased%5D` where it was URL-encoded), so JSON stays JSON.

>>> subject = Subject.of("Ann@Example.com")
>>> subject.scrub_text('{"to":"ann@example.com","q":"x=ann%40example.com"}')
'{"to":"[erased]","q":"x=%5Berased%5D"}'
>>> subject.scrub_text("nothing here") is None
True
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

from relayhook.core.events import Event
from relayhook.core.records import RequestRecord

ERASED = "[erased]"
ERASED_URL = quote(ERASED, safe="")

# Where people's data is kept, engine-neutral: table, its key columns, the columns that hold
# what providers sent or what was made of it. Samples keep bodies in base64: relayhook.erase
# scrubs them through the store's sample methods instead.
TABLES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("requests", ("id",), ("body", "headers", "query", "error")),
    ("events", ("id",), ("subject", "source", "data")),
    ("deliveries", ("id",), ("subject", "last_error")),
    (
        "attempts",
        ("delivery_id", "number"),
        ("request", "response_headers", "response_body", "error"),
    ),
    ("outcomes", ("request_id", "hook"), ("detail",)),
    ("problems", ("id",), ("error",)),
)


@dataclass(frozen=True)
class Subject:
    value: str
    forms: tuple[tuple[str, str], ...]  # (form as found, what replaces it)
    pattern: re.Pattern[str]

    @classmethod
    def of(cls, value: str) -> Subject:
        value = value.strip()
        if len(value) < 3:
            raise ValueError("a subject to erase has at least 3 characters")
        found: dict[str, str] = {value: ERASED}
        for escaped in (json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]):
            found.setdefault(escaped, ERASED)
        for encoded in (quote(value, safe=""), quote_plus(value, safe=""), quote(value)):
            found.setdefault(encoded, ERASED_URL)
        forms = tuple(sorted(found.items(), key=lambda form: -len(form[0])))  # longest first
        pattern = re.compile("|".join(re.escape(form) for form, _ in forms), re.IGNORECASE)
        return cls(value, forms, pattern)

    def needles(self) -> list[str]:
        """The forms in lower case, for an engine's first look (`instr(lower(x), ?)`)."""
        return sorted({form.lower() for form, _ in self.forms})

    def scrub_text(self, text: str) -> str | None:
        """`text` with every form written over, or None when none is in it."""
        if not self.pattern.search(text):
            return None
        lowered = {form.lower(): by for form, by in self.forms}
        return self.pattern.sub(lambda m: lowered[m.group().lower()], text)

    def scrub_bytes(self, data: bytes) -> bytes | None:
        """The same for bytes (a body): read as UTF-8, other bytes kept as they were."""
        text = data.decode("utf-8", errors="surrogateescape")
        scrubbed = self.scrub_text(text)
        return None if scrubbed is None else scrubbed.encode("utf-8", errors="surrogateescape")

    def scrub(self, value: object) -> object | None:
        """A column's value scrubbed (text or bytes), or None when it holds no form."""
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return self.scrub_bytes(bytes(value))
        return None

    def is_subject(self, subject: str | None) -> bool:
        """An event about this person: its subject is the value (in any case)."""
        return subject is not None and subject.strip().lower() == self.value.lower()


@dataclass
class Found:
    """What an erasure found and did, per place: `deleted` rows (events about the person, with
    their deliveries and attempts), `scrubbed` rows (the value written over)."""

    deleted: dict[str, int]
    scrubbed: dict[str, int]

    def merge(self, other: Found) -> Found:
        def add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}

        return Found(add(self.deleted, other.deleted), add(self.scrubbed, other.scrubbed))


def scrub_record(subject: Subject, record: RequestRecord) -> RequestRecord | None:
    """A kept request with the value written over (body, headers, query, error), or None
    when it does not hold it."""
    body = subject.scrub_bytes(record.body)
    headers = [(name, subject.scrub_text(value)) for name, value in record.headers]
    query, error = subject.scrub_text(record.query), subject.scrub_text(record.error or "")
    if body is None and query is None and error is None and all(v is None for _, v in headers):
        return None
    return replace(
        record,
        body=record.body if body is None else body,
        query=query or record.query,
        headers=tuple(
            (n, v if v is not None else old)
            for (n, v), (_, old) in zip(headers, record.headers, strict=True)
        ),
        error=record.error if error is None else error,
    )


def scrub_event(subject: Subject, event: Event) -> Event | None:
    """An event with the value written over (source, data), or None when it does not hold
    it. An event about the person (`is_subject`) is not scrubbed but dropped by callers."""
    data = subject.scrub_text(json.dumps(event.data, ensure_ascii=False))
    source = subject.scrub_text(event.source)
    if data is None and source is None:
        return None
    return replace(
        event, source=source or event.source, data=event.data if data is None else json.loads(data)
    )


# -- fields a connector redacts or drops at ingest (`redact`, `drop`)

REDACTED = "[redacted]"


def redact_request(
    record: RequestRecord, redact: Sequence[str], drop: Sequence[str]
) -> RequestRecord:
    """The request as it may be kept: its `redact` fields written over, its `drop` fields
    removed (headers, query parameters, JSON body fields; a body that is not JSON keeps its
    bytes). Applied before anything is stored, spooled or mapped."""
    rules = [(path, False) for path in redact] + [(path, True) for path in drop]
    headers = list(record.headers)
    query = parse_qsl(record.query, keep_blank_values=True)
    body_rules = []
    for path, remove in rules:
        place, _, name = path.partition(".")
        if place == "headers":
            headers = _apply_pairs(headers, name.lower(), remove, lower=True)
        elif place == "query":
            query = _apply_pairs(query, name, remove)
        else:
            body_rules.append((path.removeprefix("body."), remove))
    body = record.body
    if body_rules:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict | list):
            for path, remove in body_rules:
                _apply_path(data, path.split("."), remove)
            body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    changed_query = urlencode(query) if any(p.startswith("query.") for p, _ in rules) else None
    return replace(
        record,
        headers=tuple(headers),
        body=body,
        query=record.query if changed_query is None else changed_query,
    )


def _apply_pairs(
    pairs: list[tuple[str, str]], name: str, remove: bool, lower: bool = False
) -> list[tuple[str, str]]:
    def hit(key: str) -> bool:
        return (key.lower() if lower else key) == name

    if remove:
        return [(k, v) for k, v in pairs if not hit(k)]
    return [(k, REDACTED if hit(k) else v) for k, v in pairs]


def _apply_path(node: object, parts: list[str], remove: bool) -> None:
    """Write over (or remove) the field at `parts` below `node`; `name[]` walks a list."""
    head, rest = parts[0], parts[1:]
    key, walks = (head[:-2], True) if head.endswith("[]") else (head, False)
    if not isinstance(node, dict) or key not in node:
        return
    if walks:
        items = node[key] if isinstance(node[key], list) else []
        if not rest:
            node[key] = [] if remove else [REDACTED for _ in items]
        for item in items if rest else ():
            _apply_path(item, rest, remove)
    elif rest:
        _apply_path(node[key], rest, remove)
    elif remove:
        del node[key]
    else:
        node[key] = REDACTED
