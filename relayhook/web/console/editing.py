"""New hook and edit hook: the form, its buttons (Use preset, Add a row, Preview, Save) and the
live preview the script asks for (`POST /hooks/preview`, JSON)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from relayhook.core.connectors import emitted_types
from relayhook.core.events import Event
from relayhook.core.examples import example_event, example_events, newest_event
from relayhook.core.hooks import PRESETS_DIR, Hook
from relayhook.core.outbound import render_request
from relayhook.core.samples import sample_event
from relayhook.core.templating import RenderError
from relayhook.errors import InvalidError, NotFoundError, SpecError
from relayhook.web.console import changes
from relayhook.web.console.hookform import (
    METHODS,
    Row,
    apply_preset,
    blank_values,
    compile_spec,
    errors_by_field,
    secret_values,
    spec_of,
    values_from_spec,
    values_of,
)
from relayhook.web.console.pages import Ctx, NotFound
from relayhook.web.readmodel import attempt_curl
from relayhook.web.samples_api import try_condition

if TYPE_CHECKING:
    from relayhook.web.console.core import Console


DRY_RUN_EVENTS = 50  # "would have matched 12 of the last 50"


def event_choices(console: Console) -> list[dict[str, Any]]:
    """The event types each connector emits: its constant rule types and its example's."""
    groups = []
    for connector in sorted(console.connectors.values(), key=lambda c: c.spec.title.lower()):
        types = set(emitted_types(connector)[0])
        types |= {event.type for event in example_events(connector, connector.id)}
        groups.append({"title": connector.spec.title, "types": sorted(types)})
    return groups


def presets() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.toml"))


async def preview_of(console: Console, hook: Hook | None, values: dict[str, Any],
                     sample: str = "") -> dict[str, str]:
    """The exact request as cURL, secrets masked, for the saved `sample` if one is chosen, else
    the newest stored event the hook takes (else a connector's example), and which event."""
    if hook is None:
        return {"curl": "", "source": "Fix the errors to see the request."}
    event: Event | None = None
    saved = await console.parts.store.get_sample(sample) if sample else None
    if saved is not None:
        event, source = sample_event(saved, hook), f"sample {saved.name!r}"
    else:
        event = await newest_event(console.parts.store, hook)
        source = "the newest matching event received"
    if event is None and saved is None:
        sources = [(c, c.id) for c in console.connectors.values()]
        event = example_event(hook, sources)
        source = "the connector's example (no matching event received yet)"
    if event is None:
        return {"curl": "", "source": "No received event or connector example matches the "
                "events chosen."}
    try:
        request = render_request(hook, event, delivery_id="preview",
                                 secrets=console.settings.template_secrets(), now=time.time())
    except RenderError as exc:
        return {"curl": "", "source": f"Rendering failed for {source}: {exc}"}
    hidden = {**console.settings.template_secrets(),
              **{f"field{i}": v for i, v in enumerate(secret_values(values))}}
    return {"curl": attempt_curl(request.record(hidden)),
            "source": f"{source}: {event.type}, subject {event.subject or '(none)'}"}


async def hook_form(console: Console, ctx: Ctx) -> Response:
    name = ctx.request.path_params.get("name")
    known = {t for group in event_choices(console) for t in group["types"]}
    action = ctx.form.get("action", "") if ctx.request.method == "POST" else ""
    errors: list[SpecError] = []
    if ctx.request.method == "GET":
        values = blank_values() if name is None else await stored_values(console, name, known)
    else:
        values = values_of(ctx.form, known)
        if name is not None:
            values["name"] = name  # a hook keeps its name (the field is read-only)
    if action == "preset" and values["preset"]:
        try:
            values = apply_preset(values)
        except SpecError as exc:
            errors.append(exc)
    for kind in ("header", "param", "body"):
        if action == f"add_{kind}":
            values["body_rows" if kind == "body" else kind].append(Row())
    if not values["header"]:
        values["header"].append(Row(secret=True))
    if not values["param"]:
        values["param"].append(Row())
    if values["body_mode"] == "rows" and not values["body_rows"]:
        values["body_rows"].append(Row())
    spec, errors_read = spec_of(values)
    hook, errors_compiled = compile_spec(spec) if not errors_read else (None, [])
    errors += errors_read + errors_compiled
    if action == "save" and not errors:
        problem = await changes.save_hook(console, spec, name)
        if problem is None:
            return ctx.redirect(f"/hooks/{spec['name']}", f"Hook {spec['name']!r} is saved; "
                                "it takes effect for the next event.")
        shown_errors = (errors_by_field(problem.errors, values)
                        if isinstance(problem, InvalidError) else {"name": problem})
        return await render_form(ctx, console, name, values, shown_errors, None)
    shown = errors if action in ("save", "preview", "dry_run") else []
    sample = ctx.form.get("sample", "") if ctx.request.method == "POST" else ""
    preview = (await preview_of(console, hook, values, sample)
               if action == "preview" or name else None)
    trial = None
    if action == "dry_run" and hook is not None:
        trial = (await try_condition(console.parts, hook, values["when"] or None,
                                     DRY_RUN_EVENTS)).summary()
    return await render_form(ctx, console, name, values, errors_by_field(shown, values),
                             preview, sample=sample, trial=trial)


async def stored_values(console: Console, name: str, known: set[str]) -> dict[str, Any]:
    """The hook as written, each secret shown as [redacted] (saved back unchanged, it keeps
    its value)."""
    try:
        return values_from_spec(console.parts.manager.written(name), known)
    except NotFoundError as exc:
        raise NotFound(f"There is no hook named {name!r}.") from exc


async def render_form(ctx: Ctx, console: Console, name: str | None, values: dict[str, Any],
                      errors: dict[str, str], preview: dict[str, str] | None, *,
                      sample: str = "", trial: str | None = None) -> Response:
    samples = [(s.name, f"sample {s.name}") for s in await console.parts.store.list_samples()]
    return ctx.render(
        "hook_form.html", 422 if errors else 200,
        title=f"Edit hook {name}" if name else "New hook", editing=name, values=values,
        errors=errors, preview=preview, event_groups=event_choices(console),
        relays=sorted(r.name for r in console.parts.live.relays.values()), presets=presets(),
        method_options=[(m, m) for m in METHODS], trial=trial, sample=sample,
        sample_options=[("", "the newest matching event"), *samples])


async def live_preview(console: Console, ctx: Ctx) -> Response:
    """What the script shows beside the form as it changes: JSON {curl, source, errors}."""
    known = {t for group in event_choices(console) for t in group["types"]}
    values = values_of(ctx.form, known)
    spec, errors = spec_of(values)
    hook, compiled = compile_spec(spec) if not errors else (None, [])
    preview = await preview_of(console, hook, values, ctx.form.get("sample", ""))
    return JSONResponse({**preview, "errors": errors_by_field(errors + compiled, values)})


ROUTES = [
    ("/hooks/new", hook_form, ["GET", "POST"]),
    ("/hooks/preview", live_preview, ["POST"]),
    ("/hooks/{name}/edit", hook_form, ["GET", "POST"]),
]
