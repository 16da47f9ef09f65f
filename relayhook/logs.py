"""Log lines: text for people or JSON for machines, with every known secret taken out.

    redact = Redactor.from_settings(settings, relays, hooks)
    configure_logging(level="info", fmt="json", redact=redact)
    redact.follow(live)          # then also the relays and hooks made at run time

The redactor knows the values the configuration holds as secrets (relay secrets and tokens,
`[secrets]`, the admin token, hooks' fixed header and parameter values, URL passwords, signing
secrets) and replaces them, in every form a line may show them (as is, URL-encoded, JSON-escaped,
base64-encoded inside a longer base64 text), in the whole formatted line, traceback included.
It is the last line of defence: log calls name hooks and deliveries, not URLs or headers, in
the first place. uvicorn's loggers and Python's warnings go through the same handler.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TextIO

from relayhook.core.hooks import Hook
from relayhook.core.outbound import secret_forms
from relayhook.core.redaction import REDACTED, base64_forms
from relayhook.relays import Relay
from relayhook.settings import Settings

if TYPE_CHECKING:
    from relayhook.live import LiveConfig

# Structured fields a log call may pass as `extra=`; the JSON format writes them as keys.
FIELDS = (
    "relay",
    "hook",
    "delivery",
    "request_id",
    "attempt",
    "status",
    "error_class",
    "next_try",
    "reason",
    "location",
    "trace_id",
)
MIN_SECRET = 4  # shorter values would redact ordinary words (as outbound's history does)


class Redactor:
    """Replaces known secret values in text: `redact("token=abc123...")`. Knows the config's
    secrets from the start and, once it `follow`s the live configuration, those of relays and
    hooks created at run time (rebuilt when the live configuration's version moves)."""

    def __init__(self, replacements: Mapping[str, str]) -> None:
        self._fixed = dict(replacements)
        self._live: LiveConfig | None = None
        self._version: int | None = None
        self._compile(self._fixed)

    def follow(self, live: LiveConfig) -> None:
        self._live = live

    def __call__(self, text: str) -> str:
        live = self._live
        if live is not None and live.version != self._version:
            self._version = live.version
            self._compile(
                {**self._fixed, **config_secrets(live.relays.values(), live.hooks.values())}
            )
        if self._pattern is None:
            return text
        text = self._pattern.sub(lambda match: self._forms[match.group()], text)
        return self._base64.sub(REDACTED, text) if self._base64 is not None else text

    def _compile(self, replacements: Mapping[str, str]) -> None:
        forms: dict[str, str] = {}
        encoded: set[str] = set()
        for secret, replacement in replacements.items():
            if len(secret) >= MIN_SECRET:
                forms.update(dict.fromkeys(secret_forms(secret), replacement))
                encoded.update(base64_forms(secret))
        # Longest first, so a secret that holds another is replaced whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._forms = forms
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        # A base64 run of a secret, with the base64 characters around it (the secret's own
        # first and last bytes, mixed with its neighbours'): an SMTP server that echoes
        # `AUTH PLAIN <base64>` puts the password in a WARNING line that way.
        runs = "|".join(map(re.escape, sorted(encoded, key=len, reverse=True)))
        self._base64 = (
            re.compile(f"[A-Za-z0-9+/_-]{{0,4}}(?:{runs})[A-Za-z0-9+/_=-]{{0,4}}") if runs else None
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, relays: Iterable[Relay] = (), hooks: Iterable[Hook] = ()
    ) -> Redactor:
        """`[secrets]`, the admin token, the SMTP password, and the secrets of `relays` and
        `hooks`."""
        values = dict.fromkeys(settings.secrets.values(), REDACTED)
        values[settings.admin.token] = REDACTED
        values.update(dict.fromkeys(settings.sealing_keys(), REDACTED))
        values[settings.alerts.email.password.get_secret_value()] = REDACTED
        return cls({**values, **config_secrets(relays, hooks)})


def config_secrets(relays: Iterable[Relay], hooks: Iterable[Hook]) -> dict[str, str]:
    """What to write over each secret value of these relays and hooks: a relay's token (the
    secret path of its URL) becomes `[relay NAME]`, every other secret `[redacted]`."""
    values: dict[str, str] = {}
    for relay in relays:
        values[relay.secret] = REDACTED
        values[relay.token] = f"[relay {relay.name}]"
    for hook in hooks:
        values.update(dict.fromkeys(hook.secret_places.values, REDACTED))
    values.pop("", None)
    return values


class TextFormatter(logging.Formatter):
    """`2024-05-01 12:00:00,123 WARNING relayhook.delivery: hook 'x': ...`, redacted."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        trace_id = getattr(record, "trace_id", None)  # [tracing] on: the span's trace
        if trace_id is not None:
            text = f"{text} trace_id={trace_id}"
        return self._redact(text)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the FIELDS a call gave, and the
    exception, each redacted."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        redact = self._redact
        moment = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact(record.exc_text)
        return json.dumps(line, ensure_ascii=False, default=str)


LogFormat = Literal["text", "json"]


def configure_logging(
    *, level: str, fmt: LogFormat, redact: Callable[[str], str], stream: TextIO | None = None
) -> logging.Handler:
    """One handler on the root logger, for Relayhook's, uvicorn's and every library's lines
    (uvicorn is then started with `log_config=None`, so it keeps this); returns it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else TextFormatter(redact))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.captureWarnings(True)
    return handler
