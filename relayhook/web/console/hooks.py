"""Hook pages: the list with an Active/Inactive switch each, a hook's History tab (filters,
Replay all that match, with the count first, then progress, cancellable) and Send test event."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.responses import Response

from relayhook.core.hooks import Hook
from relayhook.errors import ConflictError, NotFoundError
from relayhook.explain import hook_skips
from relayhook.operations import TEST_RELAY, ReplayJob
from relayhook.store import DELIVERY_STATUSES, DeliveryFilter
from relayhook.web.console import changes
from relayhook.web.console.editing import activation_findings
from relayhook.web.console.pages import Ctx, Form, NotFound, hook_address, shown_problems
from relayhook.web.console.people import last_change
from relayhook.web.readmodel import FilterError, delivery_filter, hook_summaries

if TYPE_CHECKING:
    from relayhook.web.console.core import Console

HISTORY_PAGE = 50
FILTER_KEYS = ("min_code", "max_code", "since", "until", "text")


def hook_named(console: Console, name: str) -> Hook:
    hook = console.parts.live.hooks.get(name)
    if hook is None:
        raise NotFound(f"There is no hook named {name!r}.")
    return hook


async def summary_of(console: Console, name: str) -> dict[str, Any]:
    return next(h for h in await hook_summaries(console.parts, console.now()) if h["name"] == name)


async def list_hooks(console: Console, ctx: Ctx) -> Response:
    hooks = await hook_summaries(console.parts, console.now())
    return ctx.render("hooks.html", title="Hooks", hooks=hooks)


def filter_of(values: Form | Any, hook: str) -> tuple[DeliveryFilter, dict[str, Any]]:
    """The history filter of a query string or a posted form, and the values to show back."""
    params = {key: values.get(key, "") for key in FILTER_KEYS}
    statuses = [s for s in values.getlist("status") if s]
    return delivery_filter(params, statuses, hook=hook), {**params, "status": statuses}


async def show_hook(console: Console, ctx: Ctx) -> Response:
    hook = hook_named(console, ctx.param("name"))
    query = ctx.request.query_params
    error = None
    try:
        where, shown = filter_of(query, hook.name)
    except FilterError as exc:
        where, shown, error = DeliveryFilter(hook=hook.name), {"status": []}, str(exc)
        shown.update({key: query.get(key, "") for key in FILTER_KEYS})
    before = query.get("before") or None
    deliveries = await console.parts.store.find_deliveries(where, limit=HISTORY_PAGE, before=before)
    took = await last_attempt_ms(console, deliveries)
    filtered = bool(shown["status"]) or any(shown[key] for key in FILTER_KEYS)
    pairs = [("status", s) for s in shown["status"]] + [
        (key, shown[key]) for key in FILTER_KEYS if shown[key]
    ]
    return ctx.render(
        "hook.html",
        title=f"Hook {hook.name}",
        hook=await summary_of(console, hook.name),
        deliveries=deliveries,
        took=took,
        shown=shown,
        statuses=DELIVERY_STATUSES,
        attempts_max=len(hook.retry.schedule),
        filter_error=error,
        filtered=filtered,
        filter_query=urlencode(pairs),
        test_relay=TEST_RELAY,
        skips=wanted_skips(hook, await hook_skips(console.parts, hook.name, SKIPS_SCANNED))[
            :SKIPS_SHOWN
        ],
        problems=shown_problems(await console.parts.store.list_problems(hook=hook.name)),
        sample_options=[
            ("", "the connector's example"),
            *[(s.name, f"sample {s.name}") for s in await console.parts.store.list_samples()],
        ],
        next_before=deliveries[-1].id if len(deliveries) == HISTORY_PAGE else None,
        last_change=await last_change(console, f"hook:{hook.name}"),
    )


SKIPS_SCANNED, SKIPS_SHOWN = 200, 20


def wanted_skips(hook: Hook, skips: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requests the hook did not take that it might have wanted: none from relays it does
    not listen to, and of the events of another type only those of a service it listens to
    (a type starting as one of its patterns does: `gamify.` for `gamify.optin.submitted`)."""
    prefixes = {
        pattern.split(".")[0] + "." for pattern in hook.spec.events if not pattern.startswith("*")
    }
    wanted = []
    for skip in skips:
        if skip["outcome"] == "relay_not_subscribed":
            continue
        if skip["outcome"] == "type_not_subscribed" and prefixes and "*" not in prefixes:
            types = skip.get("types") or []
            if types and not any(t.startswith(tuple(prefixes)) for t in types):
                continue
        wanted.append(skip)
    return wanted


async def last_attempt_ms(console: Console, deliveries: list[Any]) -> dict[str, float]:
    """How long each delivery's last attempt took (its "Took"; the waits between retries are
    not in it: "Done after" shows those)."""
    took: dict[str, float] = {}
    for delivery in deliveries:
        if delivery.attempts:
            found = await console.parts.store.get_delivery(delivery.id)
            if found is not None and found[1]:
                took[delivery.id] = max(found[1], key=lambda a: a.number).duration_ms
    return took


async def set_active(console: Console, ctx: Ctx) -> Response:
    hook = hook_named(console, ctx.param("name"))
    active = ctx.form.get("active") == "on"
    back = ctx.form.get("back", "/hooks")
    back = back if back.startswith("/") and not back.startswith("//") else "/hooks"
    if active and ctx.form.get("confirm") != "yes":
        findings, source = await activation_findings(console, hook)
        if findings:
            return ctx.render(
                "activate_confirm.html",
                409,
                title=f"Switch on {hook.name}?",
                hook=hook.name,
                findings=findings,
                source=source,
                back=back,
            )
    try:
        changed = await console.parts.manager.set_active(
            hook.name, active, "switched off in the console"
        )
    except ConflictError as exc:
        return ctx.redirect(back, f"{exc}.")
    console.parts.wake()
    if active:
        message = f"Hook {hook.name!r} is active: {changed} waiting deliveries are sent now."
    else:
        message = (
            f"Hook {hook.name!r} is inactive: its new deliveries wait, paused "
            f"({changed} paused now), until it is switched back on."
        )
    return ctx.redirect(back, message)


async def send_test(console: Console, ctx: Ctx) -> Response:
    """Send the connector's example event (never a customer's data unless a saved sample is
    chosen) through the hook now, kept in its history as a test delivery."""
    hook = hook_named(console, ctx.param("name"))
    operations = console.parts.operations
    try:
        chosen = await operations.choose_event(hook, sample=ctx.form.get("sample") or None)
    except NotFoundError as exc:
        return ctx.redirect(hook_address(hook.name), f"{exc}.")
    sent = await operations.send_test(hook, chosen.event)
    return ctx.redirect(
        f"/deliveries/{sent.delivery_id}",
        "Test event sent to the hook's URL: its answer shows below.",
    )


# --- Replay all that match ----------------------------------------------------------------


async def replay_matching(console: Console, ctx: Ctx) -> Response:
    hook = hook_named(console, ctx.param("name"))
    try:
        where, shown = filter_of(ctx.form, hook.name)
    except FilterError as exc:
        return ctx.redirect(hook_address(hook.name), f"The filter cannot be read: {exc}")
    count = await console.parts.operations.count_matching(where)
    if ctx.form.get("confirm") != "yes" or count == 0:
        ctx.request.scope["audit"] = None  # a question, not yet an action
        return ctx.render(
            "replay_confirm.html",
            title=f"Replay {hook.name}",
            hook=hook.name,
            count=count,
            shown=shown,
            keys=FILTER_KEYS,
        )
    job = console.parts.operations.start_replay(where, count)
    ctx.request.scope["audit"] = {"replayed": count, "job": job.id}
    return ctx.redirect(f"/jobs/{job.id}")


def job_named(console: Console, job_id: str) -> ReplayJob:
    try:
        return console.parts.operations.replay_job(job_id)
    except NotFoundError as exc:
        raise NotFound("There is no replay with this id running in this process.") from exc


async def show_job(console: Console, ctx: Ctx) -> Response:
    job = job_named(console, ctx.param("id"))
    return ctx.render("job.html", title=f"Replaying {job.hook}", job=job)


async def cancel_job(console: Console, ctx: Ctx) -> Response:
    job = job_named(console, ctx.param("id"))
    await console.parts.operations.cancel_replay(job.id)
    return ctx.redirect(f"/jobs/{job.id}", f"Replay cancelled after {job.done} deliveries.")


async def delete_hook(console: Console, ctx: Ctx) -> Response:
    name = hook_named(console, ctx.param("name")).name
    deleted, message = await changes.delete_hook(console, name)
    if not deleted:
        return ctx.redirect(hook_address(name), message)
    return ctx.redirect("/hooks", f"Hook {name!r} is deleted; its history stays. {message}")


ROUTES = [
    ("/hooks", list_hooks, ["GET"]),
    ("/hooks/{name}", show_hook, ["GET"]),
    ("/hooks/{name}/view", show_hook, ["GET"]),  # the page of a hook called `new` (hook_page)
    ("/hooks/{name}/active", set_active, ["POST"]),
    ("/hooks/{name}/test", send_test, ["POST"]),
    ("/hooks/{name}/replay", replay_matching, ["POST"]),
    ("/hooks/{name}/delete", delete_hook, ["POST"]),
    ("/jobs/{id}", show_job, ["GET"]),
    ("/jobs/{id}/cancel", cancel_job, ["POST"]),
]
