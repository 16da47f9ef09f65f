"""New hook and edit hook: the form, its buttons (Use preset, Add a row, Preview, Save) and the
live preview the script asks for (`POST /hooks/preview`, JSON)."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from relayhook.core.connectors import emitted_types
from relayhook.core.examples import example_events
from relayhook.core.hooks import PRESETS_DIR, Hook
from relayhook.core.outbound import record_request, render_request
from relayhook.core.redaction import restore_secrets
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
    spec_of,
    values_from_spec,
    values_of,
)
from relayhook.web.console.pages import Ctx, NotFound, hook_address
from relayhook.web.console.whatchanges import what_would_change
from relayhook.web.readmodel import attempt_curl

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
    operations = console.parts.operations
    try:
        chosen = await operations.choose_event(hook, sample=sample or None, newest=True)
    except NotFoundError:
        chosen = None
    if chosen is None and sample:  # a sample deleted meanwhile: as if none were chosen
        with contextlib.suppress(NotFoundError):
            chosen = await operations.choose_event(hook, newest=True)
    if chosen is None:
        return {"curl": "", "source": "No received event or connector example matches the "
                "events chosen."}
    event, source = chosen.event, chosen.source
    secrets, now = console.settings.template_secrets(), time.time()
    try:
        request = render_request(hook, event, delivery_id="preview", secrets=secrets, now=now)
        # What the history would keep: the hook's own secrets by place, and anything its
        # templates derive from `[secrets]` (a `| reverse`, a `[:-1]`) masked.
        shown = record_request(hook, event, request, delivery_id="preview", secrets=secrets,
                               now=now)
    except RenderError as exc:
        return {"curl": "", "source": f"Rendering failed for {source}: {exc}"}
    return {"curl": attempt_curl(shown),
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
    # Compiled (for the preview) with the secrets the form shows as [redacted] put back.
    full = restore_secrets(spec, console.parts.live.kept_secrets(name)) if name else spec
    hook, errors_compiled = compile_spec(full) if not errors_read else (None, [])
    errors += errors_read + errors_compiled
    if action == "save" and not errors:
        problem = await changes.save_hook(console, spec, name,
                                          (full, hook) if hook is not None else None)
        if problem is None:
            return ctx.redirect(hook_address(spec["name"]), f"Hook {spec['name']!r} is saved; "
                                "it takes effect for the next event.")
        shown_errors = (errors_by_field(problem.errors, values)
                        if isinstance(problem, InvalidError) else {"name": problem})
        return await render_form(ctx, console, name, values, shown_errors, None)
    shown = errors if action in ("save", "preview", "dry_run", "what_would_change") else []
    sample = ctx.form.get("sample", "") if ctx.request.method == "POST" else ""
    preview = (await preview_of(console, hook, values, sample)
               if action == "preview" or name else None)
    would_change = None
    if action == "what_would_change" and hook is not None:
        would_change = await what_would_change(console, hook)
    trial = None
    if action == "dry_run" and hook is not None:
        trial = (await console.parts.operations.dry_run(hook, values["when"] or None,
                                                        DRY_RUN_EVENTS)).summary()
    return await render_form(ctx, console, name, values, errors_by_field(shown, values),
                             preview, sample=sample, trial=trial,
                             would_change=would_change)


async def stored_values(console: Console, name: str, known: set[str]) -> dict[str, Any]:
    """The hook as written, each secret shown as [redacted] (saved back unchanged, it keeps
    its value)."""
    try:
        return values_from_spec(console.parts.manager.written(name), known)
    except NotFoundError as exc:
        raise NotFound(f"There is no hook named {name!r}.") from exc


async def render_form(ctx: Ctx, console: Console, name: str | None, values: dict[str, Any],
                      errors: dict[str, str], preview: dict[str, str] | None, *,
                      sample: str = "", trial: str | None = None,
                      would_change: dict[str, Any] | None = None) -> Response:
    samples = [(s.name, f"sample {s.name}") for s in await console.parts.store.list_samples()]
    return ctx.render(
        "hook_form.html", 422 if errors else 200,
        title=f"Edit hook {name}" if name else "New hook", editing=name, values=values,
        errors=errors, preview=preview, event_groups=event_choices(console),
        relays=sorted(r.name for r in console.parts.live.relays.values()), presets=presets(),
        method_options=[(m, m) for m in METHODS], trial=trial, sample=sample,
        sample_options=[("", "the newest matching event"), *samples], would_change=would_change)


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
