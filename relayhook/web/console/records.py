"""Lineage pages: a raw request with its events and their deliveries (Map again for a rejected
one), and a delivery with every attempt (Copy as cURL) and the way back to its request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from relayhook.core.outcomes import marked_fields, names_read
from relayhook.errors import ConflictError, InvalidError, NotFoundError
from relayhook.explain import request_outcomes
from relayhook.store import FINAL_STATUSES, DeliveryFilter, RequestRecord
from relayhook.tracing import trace_id_hex
from relayhook.web.console.pages import Ctx, NotFound
from relayhook.web.readmodel import (
    attempt_curl,
    attempt_json,
    pretty_body,
    request_json,
)

if TYPE_CHECKING:
    from relayhook.web.console.core import Console

LINEAGE_LIMIT = 500


async def show_request(console: Console, ctx: Ctx) -> Response:
    store = console.parts.store
    record = await store.get_request(ctx.param("id"))
    if record is None:
        raise NotFound("There is no kept request with this id.")
    events = await store.list_events(request_id=record.id, limit=LINEAGE_LIMIT)
    deliveries = await store.find_deliveries(
        DeliveryFilter(request_id=record.id), limit=LINEAGE_LIMIT
    )
    by_event: dict[str, list[Any]] = {}
    for delivery in deliveries:
        by_event.setdefault(delivery.event_id, []).append(delivery)
    outcomes = await request_outcomes(console.parts, record)
    return ctx.render(
        "request.html",
        title="Request",
        record=request_json(record),
        outcomes=outcomes,
        body=pretty_body(record.body),
        events=events,
        by_event=by_event,
        events_options=[(e.id, f"{e.type} {e.subject or ''}") for e in events],
        relay_known=any(r.name == record.relay for r in console.parts.live.relays.values()),
    )


async def kept_request(console: Console, request_id: str) -> RequestRecord:
    try:
        return await console.parts.operations.kept_request(request_id)
    except NotFoundError as exc:
        raise NotFound("There is no kept request with this id.") from exc


async def remap(console: Console, ctx: Ctx) -> Response:
    record = await kept_request(console, ctx.param("id"))
    message = await console.parts.operations.map_again(record)
    return ctx.redirect(f"/requests/{record.id}", f"Mapped again: {message}.")


async def rerun(console: Console, ctx: Ctx) -> Response:
    record = await kept_request(console, ctx.param("id"))
    message = await console.parts.operations.run_again(record)
    return ctx.redirect(f"/requests/{record.id}#why", f"Run again: {message}.")


async def pin_sample(console: Console, ctx: Ctx) -> Response:
    """Pin as sample: the request with its events, or one of them (`event`), under a name."""
    request_id = ctx.param("id")
    try:
        sample = await console.parts.operations.pin_sample(
            ctx.form.get("name", ""), request_id, ctx.form.get("event") or None
        )
    except InvalidError as exc:
        return ctx.redirect(f"/requests/{request_id}#pin", exc.errors[0].message)
    except (NotFoundError, ConflictError) as exc:
        return ctx.redirect(f"/requests/{request_id}#pin", f"{exc}.")
    return ctx.redirect(
        f"/requests/{request_id}#pin",
        f"Pinned as sample {sample.name!r}: "
        "kept past retention, for previews, test sends and condition trials.",
    )


async def show_delivery(console: Console, ctx: Ctx) -> Response:
    found = await console.parts.store.get_delivery(ctx.param("id"))
    if found is None:
        raise NotFound("There is no delivery with this id.")
    delivery, attempts = found
    # An attempt that failed at render sent nothing: it has no request to show.
    shown = [
        {
            **attempt_json(a),
            "curl": attempt_curl(a.request) if a.request else "",
            "response_text": pretty_body(a.response_body),
        }
        for a in reversed(attempts)
    ]
    hook = console.parts.live.hooks.get(delivery.hook)
    read = names_read(hook.stored_spec()) if hook is not None else ()
    fields = (
        marked_fields(delivery.event.to_cloudevent(), read) if delivery.event is not None else []
    )
    return ctx.render(
        "delivery.html",
        title="Delivery",
        delivery=delivery,
        attempts=shown,
        fields=fields,
        sent=next((a for a in shown if a["request"]), None),
        event=delivery.event,
        finished=delivery.status in FINAL_STATUSES,
        hook_known=delivery.hook in console.parts.live.hooks,
        trace_id=(
            trace_id_hex(delivery.event.request_id)
            if console.settings.tracing.enabled and delivery.event is not None
            else None
        ),
    )


async def replay_delivery(console: Console, ctx: Ctx) -> Response:
    delivery_id = ctx.param("id")
    try:
        replayed = await console.parts.operations.replay_delivery(delivery_id)
    except NotFoundError as exc:
        raise NotFound("There is no delivery with this id.") from exc
    except ConflictError:
        return ctx.redirect(
            f"/deliveries/{delivery_id}",
            "It is being sent right now; replay it once this try is over.",
        )
    ctx.request.scope["audit"] = {"replayed": replayed}
    return ctx.redirect(f"/deliveries/{delivery_id}", "Replayed: it is sent again now.")


ROUTES = [
    ("/requests/{id}", show_request, ["GET"]),
    ("/requests/{id}/remap", remap, ["POST"]),
    ("/requests/{id}/run-again", rerun, ["POST"]),
    ("/requests/{id}/pin", pin_sample, ["POST"]),
    ("/deliveries/{id}", show_delivery, ["GET"]),
    ("/deliveries/{id}/replay", replay_delivery, ["POST"]),
]
