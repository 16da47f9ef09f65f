"""One read model for the JSON API and the console: a page never computes a figure differently
from the API. Records become plain dicts here (times as RFC 3339, bytes as text or base64).

    relays = await relay_summaries(parts, now)      # GET /api/relays and the console
    hooks = await hook_summaries(parts, now)        # GET /api/hooks and the console
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from relayhook.assembly import Parts
from relayhook.core.events import format_time, parse_time
from relayhook.core.problems import problem_json
from relayhook.core.redaction import redacted_url
from relayhook.core.shapes import Shape
from relayhook.relays import Relay
from relayhook.store import (
    DELIVERY_STATUSES,
    ActivityRow,
    Attempt,
    Delivery,
    DeliveryFilter,
    RequestRecord,
)

DAY = 24 * 3600.0
HOUR = 3600.0
FILTER_STATUSES = DELIVERY_STATUSES


class FilterError(ValueError):
    """A history filter that cannot be read; the message names the parameter."""


def format_epoch(seconds: float | None) -> str | None:
    return None if seconds is None else format_time(datetime.fromtimestamp(seconds, UTC))


def bytes_text(data: bytes) -> tuple[str, str]:
    """(text, "utf-8") or, for bytes that are not UTF-8, (base64, "base64")."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def pretty_body(data: bytes) -> str:
    """A body for people: indented JSON when it is JSON, else its text (or base64)."""
    text, encoding = bytes_text(data)
    if encoding != "utf-8":
        return f"(binary, base64) {text}"
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def request_json(record: RequestRecord) -> dict[str, Any]:
    body, encoding = bytes_text(record.body)
    return {
        "id": record.id,
        "relay": record.relay,
        "received_at": record.received_at,
        "status": record.status,
        "error": record.error,
        "method": record.method,
        "query": record.query,
        "headers": [list(pair) for pair in record.headers],
        "body": body,
        "body_encoding": encoding,
        "truncated": record.truncated,
        "event_ids": list(record.event_ids),
        "duplicate_ids": list(record.duplicate_ids),
        "test": record.test,
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "hook": delivery.hook,
        "relay": delivery.relay,
        "subject": delivery.subject,
        "status": delivery.status,
        "tries": delivery.tries,
        "attempts": delivery.attempts,
        "due_at": format_epoch(delivery.due_at),
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": format_epoch(delivery.created_at),
        "updated_at": format_epoch(delivery.updated_at),
        "test": delivery.test,
    }


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    body, encoding = bytes_text(attempt.response_body)
    return {
        "number": attempt.number,
        "started_at": format_epoch(attempt.started_at),
        "duration_ms": round(attempt.duration_ms, 3),
        "request": attempt.request,
        "response_status": attempt.response_status,
        "response_headers": [list(pair) for pair in attempt.response_headers],
        "response_body": body,
        "response_body_encoding": encoding,
        "error_class": attempt.error_class,
        "error": attempt.error,
    }


def attempt_curl(request: Mapping[str, Any]) -> str:
    """The stored (redacted) request of an attempt as a cURL command."""
    from relayhook.core.outbound import OutboundRequest

    body = request.get("body") or ""
    data = (
        base64.b64decode(body)
        if request.get("body_encoding") == "base64"
        else str(body).encode("utf-8")
    )
    headers = tuple((str(k), str(v)) for k, v in request.get("headers", []))
    return OutboundRequest(
        str(request.get("method", "POST")), str(request.get("url", "")), headers, data
    ).as_curl()


# --- filters -----------------------------------------------------------------------------


def _time_param(value: str, name: str) -> float:
    try:
        return parse_time(value).timestamp()
    except ValueError as exc:
        raise FilterError(f"{name} must be an RFC 3339 time, got {value!r}") from exc


def _code_param(value: str, name: str) -> int:
    if not value.isdigit() or not 100 <= int(value) <= 599:
        raise FilterError(f"{name} must be an HTTP status code from 100 to 599, got {value!r}")
    return int(value)


def delivery_filter(
    params: Mapping[str, str], statuses: list[str], hook: str | None = None
) -> DeliveryFilter:
    """A DeliveryFilter from query parameters (`status` may repeat or hold a comma list; `min_code`,
    `max_code`, `since`, `until`, `text`, `request`, `event`). FilterError names a bad one."""
    wanted: list[str] = [s for value in statuses for s in value.split(",") if s]
    for status in wanted:
        if status not in FILTER_STATUSES:
            raise FilterError(f"status must be among {', '.join(FILTER_STATUSES)}, got {status!r}")
    given = {key: value.strip() for key, value in params.items() if value.strip()}
    min_code = _code_param(given["min_code"], "min_code") if "min_code" in given else None
    max_code = _code_param(given["max_code"], "max_code") if "max_code" in given else None
    if min_code is not None and max_code is not None and min_code > max_code:
        raise FilterError(f"min_code {min_code} is above max_code {max_code}")
    return DeliveryFilter(
        hook=hook if hook is not None else given.get("hook"),
        statuses=tuple(wanted),  # type: ignore[arg-type]
        min_code=min_code,
        max_code=max_code,
        since=_time_param(given["since"], "since") if "since" in given else None,
        until=_time_param(given["until"], "until") if "until" in given else None,
        text=given.get("text"),
        request_id=given.get("request"),
        event_id=given.get("event"),
    )


# --- summaries ---------------------------------------------------------------------------


@dataclass
class Activity:
    """Counts per status over the last 24 hours, and per hour (oldest first)."""

    totals: dict[str, int] = field(default_factory=dict)
    hours: list[dict[str, int]] = field(default_factory=lambda: [{} for _ in range(24)])

    def add(self, bucket: int, status: str, count: int) -> None:
        self.totals[status] = self.totals.get(status, 0) + count
        hour = self.hours[min(bucket, 23)]
        hour[status] = hour.get(status, 0) + count


def activities(rows: list[ActivityRow]) -> dict[str, Activity]:
    by_name: dict[str, Activity] = {}
    for name, bucket, status, count in rows:
        by_name.setdefault(name, Activity()).add(bucket, status, count)
    return by_name


def relay_json(
    parts: Parts, relay: Relay, failures: Mapping[str, tuple[int, str]], secret: bool = False
) -> dict[str, Any]:
    """A relay as the API and the console show it; its secret only when asked (reveal)."""
    count, last = failures.get(relay.name, (0, None))
    shown = {
        "name": relay.name,
        "connector": relay.connector.id,
        "connector_title": relay.connector.spec.title,
        "url": parts.manager.relay_url(relay),
        "source": relay.source,
        "auth_failures": count,
        "last_auth_failure": last,
        "expect": (
            None
            if relay.expect is None
            else {"at_least": relay.expect[0], "minutes": relay.expect[1]}
        ),
    }
    return {**shown, "secret": relay.secret} if secret else shown


async def hook_json(parts: Parts, name: str) -> dict[str, Any]:
    """A hook as the API and the console show it: no secret value anywhere."""
    live = parts.live
    hook, active = live.hooks[name], live.active()[name]
    spec = hook.spec
    return {
        "name": name,
        "source": "config" if live.is_config_hook(name) else "api",
        "description": spec.description,
        "active": active,
        "inactive_reason": None if active else live.reason(name),
        "events": spec.events,
        "relays": spec.relays,
        "preset": spec.preset,
        "method": hook.method,
        "url": redacted_url(hook.url.source),
        # as typed ({event.subject} stays so; its secrets already [redacted]), where `url`
        # is the template it was compiled to
        "url_written": str(parts.manager.written(name).get("url") or redacted_url(hook.url.source)),
        "timeout": hook.timeout,
        "concurrency": hook.concurrency,
        "ordered": hook.ordered,
        "rate_limit": hook.rate_limit.model_dump() if hook.rate_limit else None,
        "signed": hook.signing_secret is not None,
        "deliveries": await parts.store.count_deliveries(hook=name),
        "spec": parts.manager.written(name),
    }


async def relay_summaries(parts: Parts, now: float) -> list[dict[str, Any]]:
    """Each relay (relay_json), its newest request, its last 24 hours' counts and its open
    problems (gone quiet, payloads changed shape)."""
    store = parts.store
    failures = await store.auth_failures()
    problems: dict[str, list[dict[str, object]]] = {}
    for problem in reversed(await store.list_problems(limit=1000)):
        if problem.relay:
            problems.setdefault(problem.relay, []).append(problem_json(problem))
    activity = activities(await store.request_activity(since=now - DAY, bucket_seconds=HOUR))
    items = []
    for relay in sorted(parts.live.relays.values(), key=lambda r: r.name):
        newest = await store.list_requests(relay=relay.name, limit=1)
        recent = activity.get(relay.name, Activity())
        counts = recent.totals
        items.append(
            {
                **relay_json(parts, relay, failures),
                "last_request_at": newest[0].received_at if newest else None,
                "last_request_status": newest[0].status if newest else None,
                "last_24h": {
                    "accepted": counts.get("accepted", 0),
                    "rejected": counts.get("rejected", 0),
                },
                "problems": problems.get(relay.name, []),
                "last_24h_hourly": recent.hours,
            }
        )
    return items


async def hook_summaries(parts: Parts, now: float) -> list[dict[str, Any]]:
    """Each hook (hook_json), its deliveries per status in the last 24 hours and those 24
    hours hour by hour."""
    activity = activities(await parts.store.delivery_activity(since=now - DAY, bucket_seconds=HOUR))
    items = []
    for name in sorted(parts.live.hooks):
        recent = activity.get(name, Activity())
        items.append(
            {
                **await hook_json(parts, name),
                "last_24h": {status: recent.totals.get(status, 0) for status in DELIVERY_STATUSES},
                "last_24h_hourly": recent.hours,
            }
        )
    return items


async def relay_shapes(parts: Parts, name: str) -> list[dict[str, Any]]:
    """The shape of a relay's payloads (relayhook.shapewatch), per event type, the request body
    first: its fields with their type and how often each is present; what a field picker
    offers."""
    shapes = await parts.store.get_shapes(name)
    items = []
    for type_ in sorted(shapes):
        shape = Shape.from_json(json.loads(shapes[type_]))
        items.append(
            {"type": type_ or None, "payloads": shape.payloads, "fields": shape.field_list()}
        )
    return items
