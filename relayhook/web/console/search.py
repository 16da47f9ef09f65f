"""One search box for the whole console: every relay's requests (body, query string, header
values: credentials are stored redacted) and the events they became, newest first, over the
newest SCAN of each. Matches are counted and highlighted."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from markupsafe import Markup, escape
from starlette.responses import Response

from relayhook.store import RequestRecord
from relayhook.web.console.pages import Ctx

if TYPE_CHECKING:
    from relayhook.core.events import Event
    from relayhook.web.console.core import Console

SCAN = 5_000  # requests and events looked through, newest first
PAGE = 500
SHOWN = 50
AROUND = 60  # characters shown on each side of the first match


def snippet(text: str, needle: str) -> Markup | None:
    """The text around the first match, the match in <mark>; None when it does not match."""
    at = text.lower().find(needle.lower())
    if at < 0:
        return None
    start, end = max(at - AROUND, 0), min(at + len(needle) + AROUND, len(text))
    return Markup("{}{}<mark>{}</mark>{}{}").format(
        "…" if start else "",
        escape(text[start:at]),
        escape(text[at : at + len(needle)]),
        escape(text[at + len(needle) : end]),
        "…" if end < len(text) else "",
    )


def request_text(record: RequestRecord) -> str:
    body = record.body.decode("utf-8", errors="replace")
    headers = " ".join(f"{name}: {value}" for name, value in record.headers)
    return f"{record.query} {headers} {body}"


def event_text(event: Event) -> str:
    return " ".join(
        [event.type, event.subject or "", json.dumps(event.data, ensure_ascii=False, default=str)]
    )


async def scan(
    page_of: Callable[[str | None], Awaitable[list[Any]]],
    text_of: Callable[[Any], str],
    needle: str,
) -> tuple[int, list[dict[str, Any]]]:
    """How many of the newest SCAN items hold `needle`, and the newest SHOWN of them with
    their snippets. `page_of(before)` gives PAGE items, newest first."""
    count, shown = 0, list[dict[str, Any]]()
    before: str | None = None
    for _ in range(SCAN // PAGE):  # bounded: SCAN items
        page = await page_of(before)
        for item in page:
            found = snippet(text_of(item), needle)
            if found is not None:
                count += 1
                if len(shown) < SHOWN:
                    shown.append({"item": item, "snippet": found})
        if len(page) < PAGE:
            break
        before = page[-1].id
    return count, shown


async def search(console: Console, ctx: Ctx) -> Response:
    needle = ctx.request.query_params.get("q", "").strip()[:200]
    store = console.parts.store
    requests: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    counts = {"requests": 0, "events": 0}
    if needle:
        counts["requests"], requests = await scan(
            lambda before: store.list_requests(limit=PAGE, before=before), request_text, needle
        )
        counts["events"], events = await scan(
            lambda before: store.list_events(limit=PAGE, before=before), event_text, needle
        )
    return ctx.render(
        "search.html",
        title=f"Search: {needle}" if needle else "Search",
        q=needle,
        requests=requests,
        events=events,
        counts=counts,
        scan=SCAN,
        shown=SHOWN,
    )


ROUTES = [("/search", search, ["GET"])]
