"""Hooks: user-defined outbound requests, in the config (`[[hooks]]`), merged over a preset.

    [[hooks]]
    name   = "Quiz results to Zapier"
    events = ["gmetri.variables.changed"]
    when   = "{{ event.data.quizCompleted }}"
    preset = "zapier"
    url    = "https://hooks.zapier.com/hooks/catch/123/abc/"
    params = { user = "{{ event.subject }}" }

Every value is a template (sandboxed, compiled here, at load). In scope: `event` (the CloudEvent:
id, source, type, subject, time, data, relay, ...), `relay` (its name), `hook` (name,
description) and `secrets` (`[secrets]` in the config or RELAYHOOK_SECRETS__NAME).
"""

from __future__ import annotations

import base64
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from relayhook._shipped import shipped_dir
from relayhook.core.redaction import PLACEHOLDER, SecretPlaces, strip_secrets
from relayhook.core.retry import DEFAULT_SCHEDULE
from relayhook.core.ssrf import check_url_text
from relayhook.core.templating import (
    Template,
    TemplateError,
    compile_json_text,
    compile_template,
    is_single_expression,
)
from relayhook.core.tomlpos import format_path
from relayhook.core.values import CompiledValue, compile_value
from relayhook.errors import HookError, InvalidError, SpecError, field_message

PRESETS_DIR = shipped_dir("presets")

HookMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
BodyFormat = Literal["json", "form", "text"]
FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_SCOPE = "Variables in scope: event, relay, hook, secrets."


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySpec(Spec):
    schedule: list[float] = Field(
        default=list(DEFAULT_SCHEDULE),
        min_length=1,
        description="One entry per attempt: the first attempt goes as soon as the event is "
        "stored (write 0), entry n is the wait in seconds before attempt n+1. After the last "
        "attempt fails, the delivery is dead. Default: Standard Webhooks' schedule "
        "(0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h).",
        examples=[[0, 1, 5]],
    )
    jitter: float = Field(
        default=0.1, ge=0, le=1, description="Each wait varies by up to this fraction."
    )

    @model_validator(mode="after")
    def _non_negative(self) -> RetrySpec:
        if any(delay < 0 for delay in self.schedule):
            raise ValueError("retry.schedule holds seconds to wait; none may be negative")
        return self


class RateLimitSpec(Spec):
    per_second: float | None = Field(
        default=None, gt=0, description="Requests per second, evenly paced.", examples=[25]
    )
    burst: int = Field(
        default=1, ge=1, description="Requests that may go at once before pacing applies."
    )
    requests: int | None = Field(
        default=None, ge=1, description="At most this many requests per `window`."
    )
    window: float | None = Field(default=None, gt=0, description="The window, in seconds.")

    @model_validator(mode="after")
    def _window_pair(self) -> RateLimitSpec:
        if (self.requests is None) != (self.window is None):
            raise ValueError("rate_limit.requests and rate_limit.window go together")
        return self


class HookSpec(Spec):
    """One hook as written in the config; unset fields come from its preset, then defaults."""

    name: str = Field(pattern=r"^[^/\s][^/]*$", max_length=200, description="A unique name.")
    description: str = Field(default="", description="What the hook is for.")
    active: bool = Field(default=True, description="Inactive hooks keep their deliveries paused.")
    events: list[str] = Field(
        min_length=1,
        description="Event type patterns: `gmetri.rule.triggered`, `gmetri.rule.*`, `*`.",
        examples=[["gmetri.rule.*", "synthesisvr.session.created"]],
    )
    relays: list[str] = Field(default=[], description="Only events of these relays (empty: all).")
    when: str | None = Field(
        default=None,
        description="A condition, one {{ expression }}: false skips the delivery. " + _SCOPE,
        examples=["{{ event.data.quizCompleted }}"],
    )
    preset: str | None = Field(default=None, description="A preset in presets/.")
    method: HookMethod | None = Field(default=None, description="Default POST.")
    url: str | None = Field(
        default=None,
        description="The target URL, a template; `{name}` is shorthand for `{{ name }}` "
        "URL-encoded (Netmera style). " + _SCOPE,
        examples=[
            "https://hooks.zapier.com/hooks/catch/123/abc/",
            "https://crm.example.com/contacts/{event.subject}",
        ],
    )
    headers: dict[str, str] = Field(default={}, description="Header templates. " + _SCOPE)
    params: dict[str, str] = Field(default={}, description="Query parameter templates. " + _SCOPE)
    body: Any = Field(
        default=None,
        description="The body: a table of templates (sent as JSON or form), or one template. "
        "Default: the whole event as JSON. None for GET. " + _SCOPE,
        examples=[{"email": "{{ event.subject }}", "score": "{{ event.data.score }}"}],
    )
    body_format: BodyFormat | None = Field(
        default=None,
        description="json (default), form (application/x-www-form-urlencoded) or text.",
    )
    timeout: float | None = Field(default=None, gt=0, le=300, description="Seconds; default 10.")
    retry: RetrySpec | None = Field(default=None, description="The retry schedule.")
    rate_limit: RateLimitSpec | None = Field(default=None, description="Pacing of requests.")
    concurrency: int | None = Field(default=None, ge=1, le=256, description="Default 4.")
    ordered: bool | None = Field(
        default=None,
        description="Deliver one subject's events one at a time, in order (default false).",
    )
    signing_secret: str | None = Field(
        default=None,
        description="Standard Webhooks signing: `whsec_...` or a template such as "
        "`{{ secrets.zapier_signing }}`; adds webhook-timestamp and webhook-signature.",
    )
    traceparent: bool | None = Field(
        default=None,
        description="When [tracing] is on, send a W3C `traceparent` header so the "
        "destination's trace continues Relayhook's (default true; false: no header).",
    )


@dataclass(frozen=True, slots=True)
class Hook:
    """A hook merged over its preset and compiled."""

    spec: HookSpec
    method: HookMethod
    url: Template
    headers: dict[str, Template]
    params: dict[str, Template]
    body: CompiledValue | Template | None  # Template: JSON text; CompiledValue: data or text
    body_format: BodyFormat
    when: Template | None
    timeout: float
    retry: RetrySpec
    rate_limit: RateLimitSpec | None
    concurrency: int
    ordered: bool
    signing_secret: Template | None
    patterns: tuple[re.Pattern[str], ...] = field(repr=False)
    secret_places: SecretPlaces = field(default=SecretPlaces(), repr=False)
    # The parts of its request whose templates name `secrets` ("url", "body", "header:NAME"):
    # what record_request renders again with stand-ins. A name, not a proof: a safe guess.
    secret_reads: frozenset[str] = frozenset()
    traceparent: bool = True  # when tracing is on: send `traceparent` to the destination

    @property
    def reads_secrets(self) -> bool:
        return bool(self.secret_reads)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def active(self) -> bool:
        return self.spec.active

    def stored_spec(self) -> dict[str, Any]:
        """The hook as written, for the store and the API: `[redacted]` in place of every
        secret value (relayhook.core.redaction); `{{ secrets.name }}` references are kept."""
        return strip_secrets(self.spec.model_dump(exclude_defaults=True))

    def matches(self, event_type: str, relay: str) -> bool:
        if self.spec.relays and relay not in self.spec.relays:
            return False
        return any(pattern.fullmatch(event_type) for pattern in self.patterns)


def expand_placeholders(url: str) -> str:
    """Netmera-style `{event.subject}` -> `{{ event.subject | path_segment }}` (one encoded
    path segment, whatever the value holds); `{{ }}` is left as written."""
    return PLACEHOLDER.sub(lambda m: "{{ (" + m.group(1) + ") | path_segment }}", url)


def pattern_regex(text: str) -> re.Pattern[str]:
    """The regex of a hook's event pattern."""
    # `*` matches within and across dots: `gmetri.*` takes every GMetri event.
    return re.compile(".*".join(re.escape(part) for part in text.split("*")))


def load_preset(name: str, presets_dir: Path = PRESETS_DIR) -> dict[str, Any]:
    """A preset file: `[hook]` (the defaults) and `requires` (keys the hook must set)."""
    path = presets_dir / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in presets_dir.glob("*.toml")))
        raise SpecError(("preset",), f"no preset {name!r} (known: {known})")
    return tomllib.loads(path.read_text(encoding="utf-8"))


def merge_preset(raw: dict[str, Any], presets_dir: Path = PRESETS_DIR) -> dict[str, Any]:
    """The hook's own keys over its preset's; headers and params merge key by key."""
    if not raw.get("preset"):
        return dict(raw)
    preset = load_preset(str(raw["preset"]), presets_dir)
    missing = [key for key in preset.get("requires", []) if not raw.get(key)]
    if missing:
        raise SpecError(("preset",), f"preset {raw['preset']!r} needs {', '.join(missing)}")
    merged: dict[str, Any] = dict(preset.get("hook", {}))
    for key, value in raw.items():
        if key in ("headers", "params") and isinstance(value, dict):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    return merged


def _compile_body(spec: HookSpec, method: str, fmt: BodyFormat) -> CompiledValue | Template | None:
    if spec.body is None:
        return None if method in ("GET", "DELETE") else compile_value("{{ event }}", "body")
    if method == "GET":
        raise TemplateError("body", "a GET request has no body")
    if fmt == "json" and isinstance(spec.body, str) and not is_single_expression(spec.body):
        return compile_json_text(spec.body, "body")  # each {{ }} writes a JSON value
    if fmt == "form" and not isinstance(spec.body, dict):
        raise TemplateError("body", "a form body is a table of fields")
    return compile_value(spec.body, "body")


def compile_hook(spec: HookSpec) -> Hook:
    """Compile a merged hook spec. Raises TemplateError naming the key."""
    method = spec.method or "POST"
    fmt = spec.body_format or "json"
    if spec.url is None:
        raise TemplateError("url", "required key is missing (or a preset that sets it)")
    check_url_spec(expand_placeholders(spec.url), spec.headers)
    for name in spec.headers:
        if name.lower() in FORBIDDEN_HEADERS or not re.fullmatch(
            r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name
        ):
            raise TemplateError(f"headers.{name}", f"{name!r} cannot be set by a hook")
    if spec.when is not None and not is_single_expression(spec.when):
        raise TemplateError("when", "a condition is one {{ expression }}")
    secret = spec.signing_secret or ""
    if secret.startswith("whsec_") and "{" not in secret:
        try:
            decode_whsec(secret)
        except ValueError as exc:
            raise TemplateError("signing_secret", str(exc)) from exc
    return Hook(
        spec=spec,
        method=method,
        url=compile_template(expand_placeholders(spec.url), "url"),
        headers={k: compile_template(v, f"headers.{k}") for k, v in spec.headers.items()},
        params={k: compile_template(v, f"params.{k}") for k, v in spec.params.items()},
        body=_compile_body(spec, method, fmt),
        body_format=fmt,
        when=compile_template(spec.when, "when") if spec.when else None,
        timeout=spec.timeout or 10.0,
        retry=spec.retry or RetrySpec(),
        rate_limit=spec.rate_limit,
        concurrency=spec.concurrency or 4,
        ordered=bool(spec.ordered),
        signing_secret=(
            compile_template(spec.signing_secret, "signing_secret") if spec.signing_secret else None
        ),
        patterns=tuple(pattern_regex(p) for p in spec.events),
        secret_places=SecretPlaces.of(spec.model_dump()),
        secret_reads=_secret_reads(spec),
        traceparent=spec.traceparent is not False,
    )


def _secret_reads(spec: HookSpec) -> frozenset[str]:
    parts = {f"header:{name.lower()}": value for name, value in spec.headers.items()}
    parts["url"] = json.dumps([spec.url, spec.params])
    parts["body"] = json.dumps(spec.body)
    return frozenset(part for part, source in parts.items() if "secrets" in source)


_TEMPLATE_PART = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


def check_url_spec(url: str, headers: dict[str, str]) -> None:
    """Refuse, rather than alter, a URL whose written parts hold a space or a control
    character (inside `{{ }}` they are template syntax), and URL credentials beside an
    `Authorization` header (the client could send only one of them). Raises SpecError."""
    written = _TEMPLATE_PART.sub("x", url)
    unsafe = check_url_text(written)
    if unsafe is not None:
        raise SpecError(("url",), f"the URL {unsafe}")
    if has_userinfo(written) and any(name.lower() == "authorization" for name in headers):
        raise SpecError(("url",), AUTHORIZATION_TWICE)


AUTHORIZATION_TWICE = (
    "the URL holds credentials (user:password@) and the hook sets an Authorization header: "
    "a request carries one Authorization, so keep only one of them"
)


def has_userinfo(url: str) -> bool:
    """Whether `url` carries credentials (`https://user:password@host/`). Read as urlsplit
    reads the authority, without its checks: a URL shown with its password redacted
    (`user:[redacted]@host`) is not a bracketed IPv6 host to refuse here."""
    authority = url.partition("://")[2] if "://" in url else url
    return "@" in re.split(r"[/?#]", authority, maxsplit=1)[0]


def decode_whsec(secret: str) -> bytes:
    """The key of a Standard Webhooks `whsec_<base64>` secret (padding optional, as the
    reference libraries accept it). ValueError if it is not base64."""
    text = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError as exc:
        raise ValueError("a whsec_ secret is whsec_ and base64") from exc


def validate_hook(raw: dict[str, Any], presets_dir: Path = PRESETS_DIR) -> Hook:
    """One hook as written (a `[[hooks]]` table, or the same keys as JSON), merged over its
    preset and compiled. InvalidError lists what is wrong, each at its key path."""
    try:
        return compile_hook(HookSpec.model_validate(merge_preset(raw, presets_dir)))
    except SpecError as exc:
        raise InvalidError([exc]) from exc
    except ValidationError as exc:
        raise InvalidError(
            [SpecError(tuple(error["loc"]), field_message(error)) for error in exc.errors()]
        ) from exc
    except TemplateError as exc:
        # `headers.X.Custom` is the header `X.Custom`: split at the first dot only
        raise InvalidError([SpecError(tuple(exc.name.split(".", 1)), exc.message)]) from exc


# A name is a path segment of the console and a word in log lines: letters and digits (any
# script), spaces and a little punctuation; never a console page's own address.
HOOK_NAME = re.compile(r"[^\W_](?:[\w .,:()&+'-]{0,98}[\w.)'])?")
RESERVED_HOOK_NAMES = frozenset({"new", "preview"})  # /hooks/new, /hooks/preview
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def hook_name_problem(name: object) -> str | None:
    """Why `name` cannot be a new hook's name, or None. Names stored before this rule keep
    working; only new hooks (API, console, config file) must follow it."""
    if not isinstance(name, str) or not HOOK_NAME.fullmatch(name):
        shown = (
            f" ({name!r} has a line break or a control character)"
            if isinstance(name, str) and CONTROL.search(name)
            else ""
        )
        return (
            "a hook name is 1 to 100 letters, digits and spaces, with . , : ( ) & + ' _ -"
            f" inside, starting with a letter or digit{shown}"
        )
    if name.lower() in RESERVED_HOOK_NAMES:
        return (
            f"{name!r} is taken by a console page (/hooks/{name.lower()}): add a word, "
            f"such as '{name} hook'"
        )
    return None


def build_hooks(
    raw_hooks: list[dict[str, Any]],
    where: str = "(config)",
    presets_dir: Path = PRESETS_DIR,
    locate: Any = None,
) -> dict[str, Hook]:
    """Hooks by name from the config's `[[hooks]]` tables. Raises HookError with
    `file:hooks[i].key:line: message`; `locate(path) -> line` finds lines in the config."""
    hooks: dict[str, Hook] = {}

    def fail(index: int, key: tuple[str | int, ...], message: str) -> HookError:
        path = ("hooks", index, *key)
        line = locate(path) if locate is not None else 0
        return HookError(where, format_path(path), line, message)

    for index, raw in enumerate(raw_hooks):
        if CONTROL.search(str(raw.get("name", ""))) or str(raw.get("name", "")).lower() in (
            RESERVED_HOOK_NAMES
        ):
            # The config file is read at every start: only what breaks the console and the
            # logs is refused here (a hook named `new` has no page; a line break forges lines).
            raise fail(index, ("name",), hook_name_problem(raw["name"]) or "")
        try:
            hook = validate_hook(raw, presets_dir)
        except InvalidError as exc:
            first = exc.errors[0]
            raise fail(index, first.key, first.message) from exc
        if hook.name in hooks:
            raise fail(index, ("name",), f"two hooks are named {hook.name!r}")
        hooks[hook.name] = hook
    return hooks
