"""The filters Relayhook adds to Jinja's own: plain functions of data, no template machinery.

{{ rule.timestamp | epoch_ms }}   {{ 'Level Completed' | dotted }}
{{ params | unfilled_placeholders }}
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from relayhook.core.events import format_time
from relayhook.core.regex import compile_regex


def epoch_ms(value: Any) -> str:
    """Filter: epoch milliseconds -> RFC 3339 (`{{ rule.timestamp | epoch_ms }}`)."""
    return _epoch(value, 1000, "epoch milliseconds")


def epoch_s(value: Any) -> str:
    """Filter: epoch seconds -> RFC 3339."""
    return _epoch(value, 1, "epoch seconds")


def _epoch(value: Any, per_second: int, unit: str) -> str:
    try:
        return format_time(datetime.fromtimestamp(float(value) / per_second, UTC))
    except (OverflowError, OSError, ValueError) as exc:
        hint = (
            " (epoch milliseconds? drop `| epoch_s`: numbers are epoch milliseconds)"
            if per_second == 1
            else ""
        )
        raise ValueError(f"{value!r} is not a time in {unit}{hint}") from exc


def dotted(value: Any) -> str:
    """Filter: an event name as type segments: `Level Completed`, `levelCompleted` and
    `level_completed` all give `level.completed`."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1.\2", str(value))
    return ".".join(part for part in re.split(r"[^A-Za-z0-9]+", text.lower()) if part)


def path_segment(value: Any) -> str:
    """Filter: a value as ONE URL path segment: `/` and `%` encoded, `.` and `..` too, so an
    event's `../../admin` cannot walk out of the path the hook's URL sets."""
    text = urllib.parse.quote(str(value), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


def flatten(value: Any, sep: str = "__", prefix: str = "") -> Any:
    """Filter: nested objects as one flat object, `{"data": {"score": 1}}` -> `{"data__score":
    1}` (the way Zapier names nested fields). Lists and other values are kept as they are."""
    if not isinstance(value, dict):
        return value
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(item, dict) and item:
            flat.update(flatten(item, sep, name))
        else:
            flat[name] = item
    return flat


def regex_search(value: Any, pattern: str) -> str | None:
    """Filter: the first match of `pattern` in the text: its first group if it has one, else the
    whole match; none when it does not match (`{{ h | regex_search('t=([0-9]+)') }}`). RE2
    syntax, linear in the text (core/regex.py): a provider's text cannot make it run away."""
    match = compile_regex(pattern, "regex_search").search(str(value))
    if match is None:
        return None
    found: str | None = match.group(1) if match.re.groups else match.group(0)
    return found


_PLACEHOLDER_TEXT = re.compile(r"\{\s*[A-Za-z_][\w.-]*\s*\}")


def unfilled_placeholders(value: Any) -> list[list[str]]:
    """Filter: the [name, placeholder] pairs of an object whose text (or list of texts) still
    holds a `{placeholder}`: what a provider sends when nothing filled it in."""
    found: list[list[str]] = []
    if not isinstance(value, Mapping):
        return found
    for name, item in value.items():
        for text in item if isinstance(item, list) else [item]:
            match = _PLACEHOLDER_TEXT.search(text) if isinstance(text, str) else None
            if match is not None:
                found.append([str(name), match.group(0)])
                break
    return found
