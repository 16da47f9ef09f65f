"""Hook pages: the list with an Active/Inactive switch each, a hook's History tab (filters,
Replay all that match, with the count first, then progress, cancellable) and Send test event."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.responses import Response

from relayhook.core.events import Event, format_time
from relayhook.core.examples import example_event
from relayhook.core.hooks import Hook
from relayhook.core.samples import sample_event
from relayhook.errors import ConflictError
from relayhook.explain import hook_skips
from relayhook.store import DELIVERY_STATUSES, DeliveryFilter, NewDelivery, RequestRecord
from relayhook.web.console import changes
from relayhook.web.console.editing import activation_findings
from relayhook.web.console.pages import Ctx, Form, NotFound, hook_address
from relayhook.web.console.problems import shown as shown_problems
from relayhook.web.readmodel import FilterError, delivery_filter, hook_summaries

if TYPE_CHECKING:
    from relayhook.web.console.core import Console

HISTORY_PAGE = 50
REPLAY_PAGE = 100
TEST_RELAY = "(test)"  # not a possible relay name: marks the console's test events
FILTER_KEYS = ("min_code", "max_code", "since", "until", "text")

def hook_named(console: Console, name: str) -> Hook:
    hook = console.parts.live.hooks.get(name)
    if hook is None:
        raise NotFound(f"There is no hook named {name!r}.")
    return hook

async def summary_of(console: Console, name: str) -> dict[str, Any]:
    return next(h for h in await hook_summaries(console.parts, console.now())
                if h["name"] == name)

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
    deliveries = await console.parts.store.find_deliveries(where, limit=HISTORY_PAGE,
                                                           before=before)
    took = await last_attempt_ms(console, deliveries)
    filtered = bool(shown["status"]) or any(shown[key] for key in FILTER_KEYS)
    pairs = [("status", s) for s in shown["status"]] + [
        (key, shown[key]) for key in FILTER_KEYS if shown[key]]
    return ctx.render(
        "hook.html", title=f"Hook {hook.name}", hook=await summary_of(console, hook.name),
        deliveries=deliveries, took=took, shown=shown, statuses=DELIVERY_STATUSES,
        attempts_max=len(hook.retry.schedule),
        filter_error=error,
        filtered=filtered, filter_query=urlencode(pairs), test_relay=TEST_RELAY,
        skips=wanted_skips(hook, await hook_skips(console.parts, hook.name, SKIPS_SCANNED))
        [:SKIPS_SHOWN],
        problems=shown_problems(await console.parts.store.list_problems(hook=hook.name)),
        sample_options=[("", "the connector's example"), *[
            (s.name, f"sample {s.name}") for s in await console.parts.store.list_samples()]],
        next_before=deliveries[-1].id if len(deliveries) == HISTORY_PAGE else None)

SKIPS_SCANNED, SKIPS_SHOWN = 200, 20


def wanted_skips(hook: Hook, skips: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requests the hook did not take that it might have wanted: none from relays it does
    not listen to, and of the events of another type only those of a service it listens to
    (a type starting as one of its patterns does: `gamify.` for `gamify.optin.submitted`)."""
    prefixes = {pattern.split(".")[0] + "." for pattern in hook.spec.events
                if not pattern.startswith("*")}
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
            return ctx.render("activate_confirm.html", 409, title=f"Switch on {hook.name}?",
                              hook=hook.name, findings=findings, source=source, back=back)
    try:
        changed = await console.parts.manager.set_active(hook.name, active,
                                                         "switched off in the console")
    except ConflictError as exc:
        return ctx.redirect(back, f"{exc}.")
    console.parts.wake()
    if active:
        message = f"Hook {hook.name!r} is active: {changed} waiting deliveries are sent now."
    else:
        message = (f"Hook {hook.name!r} is inactive: its new deliveries wait, paused "
                   f"({changed} paused now), until it is switched back on.")
    return ctx.redirect(back, message)

async def send_test(console: Console, ctx: Ctx) -> Response:
    """Send the connector's example event (never a customer's data unless a saved sample is
    chosen) through the hook, by the real dispatcher, as a delivery marked test."""
    hook = hook_named(console, ctx.param("name"))
    saved = await console.parts.store.get_sample(ctx.form.get("sample", "") or "")
    if saved is not None:
        example = sample_event(saved, hook)
        if example is None:
            return ctx.redirect(hook_address(hook.name), f"Sample {saved.name!r} holds no event.")
    else:
        sources = [(r.connector, r.name) for r in console.parts.live.relays.values()]
        sources += [(c, c.id) for c in console.connectors.values()]
        example = example_event(hook, sources)
    if example is None:
        return ctx.redirect(hook_address(hook.name), "No connector's example makes an event this "
                            f"hook takes ({', '.join(hook.spec.events)}).")
    now = console.clock()
    event = Event(id=console.new_id(), source=example.source, type=example.type,
                  subject=example.subject, time=example.time, data=example.data,
                  relay=TEST_RELAY)
    record = RequestRecord(
        id=console.new_id(), relay=TEST_RELAY, received_at=format_time(now), method="POST",
        query="", headers=(("x-relayhook-test", "console"),),
        body=json.dumps(event.to_cloudevent()).encode(), status="accepted")
    active = console.parts.live.active().get(hook.name, False)
    delivery = NewDelivery(id=console.new_id(), event_id=event.id, hook=hook.name,
                           subject=event.subject, status="pending" if active else "paused",
                           due_at=now.timestamp())
    await console.parts.store.ingest(record, [event], [delivery])
    console.parts.wake()
    return ctx.redirect(f"/deliveries/{delivery.id}", "Test event sent to the hook's URL: "
                        "its answer shows below." if active else
                        "The hook is inactive: the test event waits, paused, until it is on.")

# --- Replay all that match ----------------------------------------------------------------

@dataclass
class ReplayJob:
    """A bulk replay running in this process: `done` of `total`, cancellable between pages."""

    id: str
    hook: str
    total: int
    done: int = 0
    cancelled: bool = False
    finished: bool = False
    error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

JOBS: dict[str, ReplayJob] = {}
MAX_JOBS = 100

async def run_replay(console: Console, job: ReplayJob, where: DeliveryFilter) -> None:
    store, before = console.parts.store, None
    try:
        for _ in range(1_000_000):  # bounded: pages until none is left
            if job.cancelled:
                break
            page = await store.find_deliveries(where, limit=REPLAY_PAGE, before=before)
            if not page:
                break
            before = page[-1].id
            now = console.now()
            # One replay per delivery, all at once: the store commits them together.
            counts = await asyncio.gather(*(store.replay(now=now, delivery_id=d.id)
                                            for d in page if d.status != "claimed"))
            job.done += sum(counts)
            console.parts.wake()
    except Exception as exc:  # shown on the job's page: the replay stops, nothing is lost
        job.error = str(exc)
    finally:
        job.finished = True

async def replay_matching(console: Console, ctx: Ctx) -> Response:
    hook = hook_named(console, ctx.param("name"))
    try:
        where, shown = filter_of(ctx.form, hook.name)
    except FilterError as exc:
        return ctx.redirect(hook_address(hook.name), f"The filter cannot be read: {exc}")
    count = await console.parts.store.count_found_deliveries(where)
    if ctx.form.get("confirm") != "yes" or count == 0:
        return ctx.render("replay_confirm.html", title=f"Replay {hook.name}", hook=hook.name,
                          count=count, shown=shown, keys=FILTER_KEYS)
    for old in [j for j in JOBS.values() if j.finished][: max(0, len(JOBS) - MAX_JOBS + 1)]:
        del JOBS[old.id]
    job = ReplayJob(id=console.new_id(), hook=hook.name, total=count)
    JOBS[job.id] = job
    job.task = asyncio.create_task(run_replay(console, job, where))
    return ctx.redirect(f"/jobs/{job.id}")

def job_named(job_id: str) -> ReplayJob:
    job = JOBS.get(job_id)
    if job is None:
        raise NotFound("There is no replay with this id running in this process.")
    return job

async def show_job(console: Console, ctx: Ctx) -> Response:
    job = job_named(ctx.param("id"))
    return ctx.render("job.html", title=f"Replaying {job.hook}", job=job)

async def cancel_job(console: Console, ctx: Ctx) -> Response:
    job = job_named(ctx.param("id"))
    job.cancelled = True
    if job.task is not None:
        await asyncio.wait({job.task}, timeout=5.0)
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
