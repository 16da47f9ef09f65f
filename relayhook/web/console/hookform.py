"""The hook form: a `[[hooks]]` table as fields people fill in, and back.

Header and parameter rows are Netmera's: Key / Value source (Fixed value or Event field) /
Value, with a "secret" box per header. An Event field `data.score` is the template
`{{ event.data.score }}`; a fixed value is sent as typed. Errors come back as SpecError key
paths (`headers.Authorization`, `retry.schedule`) and are shown at their field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from relayhook.core.hooks import Hook, load_preset, validate_hook
from relayhook.core.redaction import REDACTED
from relayhook.errors import InvalidError, SpecError
from relayhook.web.console.pages import Form

MAX_ROWS = 50
ROW_KINDS = {"header": "header", "param": "param", "body": "body_rows"}  # kind -> values key
SPEC_KEY = {"header": "headers", "param": "params", "body": "body"}
EVENT_FIELD = re.compile(r"^\{\{\s*event\.([A-Za-z_]\w*(?:\.\w+)*)\s*\}\}$")
FIELD_PATH = re.compile(r"^[A-Za-z_]\w*(?:\.\w+)*$")
METHODS = ("POST", "GET", "PUT", "PATCH", "DELETE")
BODY_FORMATS = ("json", "form", "text")


@dataclass
class Row:
    key: str = ""
    source: str = "fixed"  # or "event"
    value: str = ""
    secret: bool = False

    def template(self) -> str:
        if self.source == "event":
            return "{{ event." + self.value.strip().removeprefix("event.") + " }}"
        return self.value


def rows_of(form: Form, kind: str) -> list[Row]:
    rows = []
    for i in range(MAX_ROWS):
        if not form.has(f"{kind}_key_{i}"):
            break
        rows.append(
            Row(
                form.get(f"{kind}_key_{i}").strip(),
                form.get(f"{kind}_source_{i}", "fixed"),
                form.get(f"{kind}_value_{i}"),
                form.get(f"{kind}_secret_{i}") == "on",
            )
        )
    return rows


def rows_from(mapping: dict[str, Any]) -> list[Row]:
    """Rows for a table of templates; a value kept secret (shown `[redacted]`) stays masked."""
    rows = []
    for key, value in mapping.items():
        text = str(value)
        match = EVENT_FIELD.match(text)
        rows.append(
            Row(key, "event", match.group(1))
            if match
            else Row(key, "fixed", text, text == REDACTED)
        )
    return rows


def blank_values() -> dict[str, Any]:
    return {
        "name": "",
        "description": "",
        "events": [],
        "patterns": "",
        "relays": [],
        "when": "",
        "preset": "",
        "method": "POST",
        "url": "",
        "header": [],
        "param": [],
        "body_rows": [],
        "body_mode": "default",
        "body": "",
        "body_format": "json",
        "timeout": "",
        "retry": "",
        "rate_limit": "",
        "concurrency": "",
        "ordered": False,
        "signing_secret": "",
        "active": True,
    }


def values_of(form: Form, known_events: set[str]) -> dict[str, Any]:
    """What the form holds, as typed (so that it can be shown again with its errors)."""
    checked = form.getlist("events")
    texts = (
        "name",
        "description",
        "patterns",
        "when",
        "preset",
        "method",
        "url",
        "body_mode",
        "body",
        "body_format",
        "timeout",
        "retry",
        "rate_limit",
        "concurrency",
        "signing_secret",
    )
    values: dict[str, Any] = {key: form.get(key) for key in texts}
    values.update(
        events=[e for e in checked if e in known_events],
        relays=form.getlist("relays"),
        ordered=form.get("ordered") == "on",
        active=form.get("active") == "on",
    )
    extra = [e for e in checked if e not in known_events]
    if extra:
        values["patterns"] = "\n".join(filter(None, [values["patterns"], *extra]))
    for kind, key in ROW_KINDS.items():
        values[key] = rows_of(form, kind)
    return values


def values_from_spec(spec: dict[str, Any], known_events: set[str]) -> dict[str, Any]:
    """The form's values for a stored hook (as written: its preset not merged in)."""
    values = blank_values()
    events = [str(e) for e in spec.get("events", [])]
    body = spec.get("body")
    rate = spec.get("rate_limit") or {}
    values.update(
        name=spec.get("name", ""),
        description=spec.get("description", ""),
        events=[e for e in events if e in known_events],
        patterns="\n".join(e for e in events if e not in known_events),
        relays=list(spec.get("relays", [])),
        when=spec.get("when") or "",
        preset=spec.get("preset") or "",
        method=spec.get("method") or "POST",
        url=spec.get("url") or "",
        header=rows_from(spec.get("headers", {})),
        param=rows_from(spec.get("params", {})),
        body_mode="default" if body is None else "rows" if isinstance(body, dict) else "template",
        body=body if isinstance(body, str) else "",
        body_format=spec.get("body_format") or "json",
        timeout=_text(spec.get("timeout")),
        rate_limit=_text(rate.get("per_second")),
        retry=", ".join(_text(s) for s in (spec.get("retry") or {}).get("schedule", [])),
        concurrency=_text(spec.get("concurrency")),
        ordered=bool(spec.get("ordered")),
        signing_secret=spec.get("signing_secret") or "",
        active=spec.get("active", True),
    )
    values["body_rows"] = rows_from(body) if isinstance(body, dict) else []
    return values


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def apply_preset(values: dict[str, Any]) -> dict[str, Any]:
    """Fill the fields the chosen preset sets (Use preset). SpecError for an unknown one."""
    preset = load_preset(values["preset"]).get("hook", {})
    filled = dict(values)
    if "method" in preset:
        filled["method"] = preset["method"]
    if "body_format" in preset:
        filled["body_format"] = preset["body_format"]
    # A preset's template body stays the preset's ("The preset's body"): a person is not
    # handed its Jinja to keep. A body of fields becomes rows to change.
    if (
        isinstance(preset.get("body"), str)
        and filled["body_mode"] == "template"
        and not filled["body"].strip()
    ):
        filled["body_mode"] = "default"
    if isinstance(preset.get("body"), dict):
        filled.update(body_mode="rows", body_rows=rows_from(preset["body"]))
    if "headers" in preset:
        have = {row.key.lower() for row in filled["header"]}
        filled["header"] = [
            *filled["header"],
            *[row for row in rows_from(preset["headers"]) if row.key.lower() not in have],
        ]
    rate = (preset.get("rate_limit") or {}).get("per_second")
    if rate is not None and not filled["rate_limit"]:
        filled["rate_limit"] = _text(rate)
    return filled


def _number(
    text: str, key: str, kind: type[float] | type[int], errors: list[SpecError]
) -> float | int | None:
    if not text.strip():
        return None
    try:
        return kind(text.strip())
    except ValueError:
        errors.append(
            SpecError(
                (key,), f"must be a {'whole ' if kind is int else ''}number, got {text.strip()!r}"
            )
        )
        return None


def spec_of(values: dict[str, Any]) -> tuple[dict[str, Any], list[SpecError]]:
    """The `[[hooks]]` table the form describes, and what cannot even be read as one."""
    errors: list[SpecError] = []
    patterns = [p.strip() for p in re.split(r"[\n,]", values["patterns"]) if p.strip()]
    spec: dict[str, Any] = {
        "name": values["name"].strip(),
        "active": values["active"],
        "events": [*values["events"], *patterns],
    }
    if values["relays"]:
        spec["relays"] = list(values["relays"])
    for key in ("description", "when", "preset", "url", "signing_secret"):
        if values[key].strip():
            spec[key] = values[key].strip()
    spec["method"] = values["method"] if values["method"] in METHODS else "POST"
    if values["body_format"] in BODY_FORMATS and (
        values["body_format"] != "json" or values["body_mode"] != "default"
    ):
        spec["body_format"] = values["body_format"]
    for kind in ("header", "param"):
        rows = [row for row in values[kind] if row.key or row.value]
        for row in rows:
            if row.source == "event" and not FIELD_PATH.match(
                row.value.strip().removeprefix("event.")
            ):
                errors.append(
                    SpecError(
                        (SPEC_KEY[kind], row.key),
                        "an event field is a path such as subject or data.score",
                    )
                )
        if rows:
            spec[SPEC_KEY[kind]] = {row.key: row.template() for row in rows}
    if values["body_mode"] == "template" and values["body"].strip():
        spec["body"] = values["body"].strip()
    elif values["body_mode"] == "rows":
        spec["body"] = {row.key: row.template() for row in values["body_rows"] if row.key}
    kinds: tuple[tuple[str, type[float] | type[int]], ...] = (
        ("timeout", float),
        ("concurrency", int),
    )
    for name, number_type in kinds:
        number = _number(values[name], name, number_type, errors)
        if number is not None:
            spec[name] = number
    rate = _number(values["rate_limit"], "rate_limit", float, errors)
    if rate is not None:
        spec["rate_limit"] = {"per_second": rate}
    if values["retry"].strip():
        try:
            spec["retry"] = {
                "schedule": [float(s) for s in re.split(r"[,\s]+", values["retry"].strip())]
            }
        except ValueError:
            errors.append(
                SpecError(("retry", "schedule"), "seconds separated by commas, such as 0, 5, 300")
            )
    if values["ordered"]:
        spec["ordered"] = True
    return spec, errors


def compile_spec(spec: dict[str, Any]) -> tuple[Hook | None, list[SpecError]]:
    """The hook compiled as the config loader and the API compile it, or its errors in
    `relayhook check`'s words."""
    try:
        return validate_hook(spec), []
    except InvalidError as exc:
        return None, exc.errors


def field_of(error: SpecError, values: dict[str, Any]) -> str:
    """The id of the form field a SpecError belongs to."""
    head = str(error.key[0]) if error.key else "name"
    if head in ("headers", "params") and len(error.key) > 1:
        kind = "header" if head == "headers" else "param"
        index = next((i for i, row in enumerate(values[kind]) if row.key == str(error.key[1])), 0)
        return f"{kind}_value_{index}"
    if head == "body" and values["body_mode"] == "rows":
        return "body_value_0"
    if head == "rate_limit":
        return "rate_limit"
    return {"events": "events", "retry": "retry", "when": "when"}.get(head, head)


PLAIN = {  # what the schema says -> what a person reads, by form field
    ("name", "required"): "Give the hook a name.",
    ("name", "pattern"): "A name may not start with a space and may not hold a '/'.",
    ("url", "required"): "Enter the address to send to, such as your Zapier catch hook's URL.",
    ("events", "required"): "Tick at least one event, or write a pattern.",
    ("events", "at least 1"): "Tick at least one event, or write a pattern.",
}
REFUSED = "destination refused: "


def plain(field: str, message: str) -> str:
    """The schema's words for a missing or malformed field, in words for a person."""
    if message.startswith(REFUSED):  # the reason stays; the config hint becomes Settings
        reason = re.sub(r"\s*\([^()]*\)$", "", message.removeprefix(REFUSED))
        return (
            f"Hooks may not send to this address: {reason}. If it is one of your own "
            "services, allow it in Settings, under Private destinations."
        )
    for (where, clue), said in PLAIN.items():
        if field == where and clue in message:
            return said
    return message


def errors_by_field(errors: list[SpecError], values: dict[str, Any]) -> dict[str, str]:
    by_field: dict[str, str] = {}
    for error in errors:
        field = field_of(error, values)
        by_field.setdefault(field, plain(field, error.message))
    return by_field
