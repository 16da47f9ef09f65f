"""New hook and edit hook: the form, its buttons (Use preset, Add a row, Preview, Save) and the
live preview the script asks for (`POST /hooks/preview`, JSON)."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from relayhook.core.connectors import emitted_types
from relayhook.core.diagnostics import Finding as Diagnosis
from relayhook.core.events import Event
from relayhook.core.examples import example_events
from relayhook.core.hooks import PRESETS_DIR, Hook, validate_hook
from relayhook.core.outbound import record_request, render_request
from relayhook.core.redaction import restore_secrets
from relayhook.core.templating import RenderError
from relayhook.errors import FindingsError, InvalidError, NotFoundError, SpecError
from relayhook.web.console import changes
from relayhook.web.console.hookcheck import (
    Finding,
    blocking,
    event_fields,
    pattern_findings,
    render_findings,
)
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
    in_use = {relay.connector.id for relay in console.parts.live.relays.values()}
    for connector in sorted(console.connectors.values(), key=lambda c: c.spec.title.lower()):
        types = set(emitted_types(connector)[0])
        types |= {event.type for event in example_events(connector, connector.id)}
        groups.append(
            {
                "title": connector.spec.title,
                "types": sorted(types),
                "labels": {t: readable_type(t, connector.id) for t in types},
                "has_relay": connector.id in in_use,
            }
        )
    return groups


def readable_type(event_type: str, connector_id: str) -> str:
    """`gmetri.rule.triggered` -> `rule triggered` (the connector's title is its heading)."""
    parts = event_type.split(".")
    if parts[0] == connector_id and len(parts) > 1:
        parts = parts[1:]
    return " ".join(parts).replace("_", " ")


PRESET_SENDS = {  # as templates/presets/README.md says it, in a tile's few words
    "zapier": "A flat JSON object, for a Catch Hook",
    "pabbly": "A flat JSON object, for a Webhook trigger",
    "make": "The whole event, for a Custom webhook",
    "n8n": "The whole event, for a Webhook node",
    "hubspot": "A contact upsert keyed by the e-mail",
    "slack": "A message to a channel",
    "cloudevents": "CloudEvents 1.0 JSON",
    "standard-webhooks": "Signed type, timestamp and data",
}
PRESET_ORDER = ("zapier", "pabbly", "make", "n8n", "hubspot", "slack")


def presets() -> list[str]:
    names = sorted(path.stem for path in PRESETS_DIR.glob("*.toml"))
    return [n for n in PRESET_ORDER if n in names] + [n for n in names if n not in PRESET_ORDER]


def preset_tiles() -> list[dict[str, str]]:
    """Each preset with its name as its file's first line says it (`Zapier`, `Pabbly
    Connect`) and what it sends."""
    tiles = []
    for name in presets():
        lines = (PRESETS_DIR / f"{name}.toml").read_text(encoding="utf-8").splitlines()
        first = lines[0].lstrip("# ") if lines else name
        title = first.split(":")[0].split(" (")[0].split(",")[0].rstrip(".")
        sends = PRESET_SENDS.get(name, "")
        tiles.append({"name": name, "title": title, "sends": sends})
    return tiles


async def preview_event(
    console: Console, spec: dict[str, Any], sample: str = ""
) -> tuple[Event | None, str]:
    """The event the preview and the field picker use, and where it came from: the saved
    `sample` if one is chosen, else the newest stored event of the chosen events and relays,
    else a connector's example (relayhook.operations chooses). Works before the rest of the
    hook is valid: only its events and relays are needed."""
    try:
        probe = validate_hook(
            {
                "name": "preview",
                "events": spec.get("events", []),
                "relays": spec.get("relays", []),
                "url": "https://example.com/",
            }
        )
    except InvalidError:
        return None, "Choose the events first: their fields are listed here."
    operations = console.parts.operations
    chosen = None
    try:
        chosen = await operations.choose_event(probe, sample=sample or None, newest=True)
    except NotFoundError:
        if sample:  # a sample deleted meanwhile, or holding no event these events take
            with contextlib.suppress(NotFoundError):
                chosen = await operations.choose_event(probe, newest=True)
    if chosen is None:
        return None, "No received event or connector example matches the events chosen."
    return chosen.event, chosen.source


async def activation_findings(console: Console, hook: Hook) -> tuple[list[Finding], str]:
    """What stops a hook from being switched on without a confirmation: its request cannot
    be made for its preview event. And which event that was."""
    event, source = await preview_event(
        console, {"events": hook.spec.events, "relays": hook.spec.relays}
    )
    if event is None:
        return [], source
    known = {t for group in event_choices(console) for t in group["types"]}
    values = values_from_spec(console.parts.manager.written(hook.name), known)
    findings = render_findings(
        hook, event, values, console.settings.template_secrets(), console.now()
    )
    return blocking(findings), source


async def known_types(console: Console) -> set[str]:
    """Event types a pattern may mean: what the connectors emit, and the newest stored ones."""
    types = {t for group in event_choices(console) for t in group["types"]}
    return types | {e.type for e in await console.parts.store.list_events(limit=500)}


async def preview_of(
    console: Console,
    hook: Hook | None,
    values: dict[str, Any],
    spec: dict[str, Any],
    sample: str = "",
) -> dict[str, Any]:
    """The exact request as cURL (secrets masked), the event it was made from and its fields,
    and what Save would find (hookcheck)."""
    event, source = await preview_event(console, spec, sample)
    fields = event_fields(event) if event is not None else []
    shown = {"curl": "", "source": source, "fields": fields, "findings": []}
    if hook is None:
        return {
            **shown,
            "source": f"Fix the errors to see the request. Fields from {source}."
            if event is not None
            else source,
        }
    findings = pattern_findings(
        hook, await known_types(console), [p for p in values["patterns"].split() if p]
    )
    if event is None:
        return {**shown, "findings": findings}
    secrets, now = console.settings.template_secrets(), time.time()
    findings += render_findings(hook, event, values, secrets, console.now())
    try:
        request = render_request(hook, event, delivery_id="preview", secrets=secrets, now=now)
        # What the history would keep: the hook's own secrets by place, and anything its
        # templates derive from `[secrets]` (a `| reverse`, a `[:-1]`) masked.
        kept = record_request(hook, event, request, delivery_id="preview", secrets=secrets, now=now)
    except (RenderError, ValueError):  # ValueError: a URL the client's parser refuses
        return {
            **shown,
            "findings": findings,
            "source": f"The request cannot be made for {source}: see the message at the field.",
        }
    return {
        **shown,
        "findings": findings,
        "curl": attempt_curl(kept),
        "source": f"{source}: {event.type}, subject {event.subject or '(none)'}",
    }


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
    if not values["body_rows"]:  # shown at once when "Fields, one per row" is chosen
        values["body_rows"].append(Row())
    spec, errors_read = spec_of(values)
    # Compiled (for the preview) with the secrets the form shows as [redacted] put back.
    full = restore_secrets(spec, console.parts.live.kept_secrets(name)) if name else spec
    hook, errors_compiled = compile_spec(full) if not errors_read else (None, [])
    errors += errors_read + errors_compiled
    sample = ctx.form.get("sample", "") if ctx.request.method == "POST" else ""
    preview = await preview_of(console, hook, values, spec, sample)
    stopping = blocking(preview["findings"])
    if (
        action in ("save", "save_anyway")
        and not errors
        and (not stopping or action == "save_anyway")
    ):
        problem = await changes.save_hook(
            console,
            spec,
            name,
            (full, hook) if hook is not None else None,
            accept_findings=action == "save_anyway",
        )
        if problem is None:
            return ctx.redirect(
                hook_address(spec["name"]),
                f"Hook {spec['name']!r} is saved; it takes effect for the next event.",
            )
        shown_errors = (
            errors_by_field(problem.errors, values)
            if isinstance(problem, InvalidError)
            else {"name": problem}
        )
        # Diagnostics' errors (relayhook.diagnostics, the same as `relayhook check`) stop
        # Save too; the person may save anyway, as with the form's own findings.
        return await render_form(
            ctx,
            console,
            name,
            values,
            shown_errors,
            preview,
            save_anyway=isinstance(problem, FindingsError),
        )
    shown = (
        errors_by_field(errors, values)
        if action in ("save", "preview", "dry_run", "what_would_change")
        else {}
    )
    if action == "save" and not errors:
        for finding in stopping:
            shown.setdefault(finding.field, finding.message)
    would_change = None
    if action == "what_would_change" and hook is not None:
        would_change = await what_would_change(console, hook)
    trial = None
    if action == "dry_run" and hook is not None:
        trial = (
            await console.parts.operations.dry_run(hook, values["when"] or None, DRY_RUN_EVENTS)
        ).summary()
    checks: list[Diagnosis] = []
    if action == "save" and stopping and not errors:
        # The form's own words stopped Save; what the diagnostics of `relayhook check` and the
        # API find in the same hook is shown beside them (relayhook.manage asks them).
        with contextlib.suppress(InvalidError):
            checks = await console.parts.manager.proposed_findings(spec, name)
    return await render_form(
        ctx,
        console,
        name,
        values,
        shown,
        preview,
        sample=sample,
        trial=trial,
        save_anyway=action == "save" and bool(stopping) and not errors,
        would_change=would_change,
        checks=checks,
    )


async def stored_values(console: Console, name: str, known: set[str]) -> dict[str, Any]:
    """The hook as written, each secret shown as [redacted] (saved back unchanged, it keeps
    its value)."""
    try:
        return values_from_spec(console.parts.manager.written(name), known)
    except NotFoundError as exc:
        raise NotFound(f"There is no hook named {name!r}.") from exc


async def render_form(
    ctx: Ctx,
    console: Console,
    name: str | None,
    values: dict[str, Any],
    errors: dict[str, str],
    preview: dict[str, Any],
    *,
    sample: str = "",
    trial: str | None = None,
    save_anyway: bool = False,
    would_change: dict[str, Any] | None = None,
    checks: list[Diagnosis] | None = None,
) -> Response:
    samples = [(s.name, f"sample {s.name}") for s in await console.parts.store.list_samples()]
    return ctx.render(
        "hook_form.html",
        422 if errors else 200,
        title=f"Edit hook {name}" if name else "New hook",
        editing=name,
        values=values,
        errors=errors,
        preview=preview,
        event_groups=event_choices(console),
        relays=sorted(r.name for r in console.parts.live.relays.values()),
        presets=preset_tiles(),
        method_options=[(m, m) for m in METHODS],
        trial=trial,
        sample=sample,
        save_anyway=save_anyway,
        findings=preview["findings"],
        would_change=would_change,
        checks=checks or [],
        sample_options=[("", "the newest matching event"), *samples],
    )


async def live_preview(console: Console, ctx: Ctx) -> Response:
    """What the script shows beside the form as it changes: JSON {curl, source, errors}."""
    known = {t for group in event_choices(console) for t in group["types"]}
    values = values_of(ctx.form, known)
    spec, errors = spec_of(values)
    name = ctx.form.get("editing") or None
    if name is not None and name in console.parts.live.hooks:  # its [redacted] secrets back
        spec = restore_secrets(spec, console.parts.live.kept_secrets(name))
    hook, compiled = compile_spec(spec) if not errors else (None, [])
    preview = await preview_of(console, hook, values, spec, ctx.form.get("sample", ""))
    return JSONResponse(
        {
            **preview,
            "errors": errors_by_field(errors + compiled, values),
            "fields": [{"path": p, "value": v, "depth": d} for p, v, d in preview["fields"]],
            "findings": [
                {"level": f.level, "field": f.field, "message": f.message, "nearest": f.nearest}
                for f in preview["findings"]
            ],
        }
    )


ROUTES = [
    ("/hooks/new", hook_form, ["GET", "POST"]),
    ("/hooks/preview", live_preview, ["POST"]),
    ("/hooks/{name}/edit", hook_form, ["GET", "POST"]),
]
