"""Log lines: text for people or JSON for machines, with every known secret taken out.

    redact = Redactor.from_settings(settings, hooks)
    configure_logging(level="info", fmt="json", redact=redact)

The redactor knows the values the configuration holds as secrets (relay secrets and tokens,
`[secrets]`, the admin token, hooks' fixed header and parameter values, URL passwords, signing
secrets) and replaces them, in every form a line may show them (as is, URL-encoded, JSON-escaped),
in the whole formatted line, traceback included. It is the last line of defence: log calls name
hooks and deliveries, not URLs or headers, in the first place. uvicorn's loggers and Python's
warnings go through the same handler.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO
from urllib.parse import parse_qsl, urlsplit

from relayhook.hooks import Hook
from relayhook.outbound import REDACTED, secret_forms

# Structured fields a log call may pass as `extra=`; the JSON format writes them as keys.
FIELDS = ("relay", "hook", "delivery", "request_id", "attempt", "status", "error_class",
          "next_try", "reason")
# Header values that are not secrets, whatever the hook: no need to hide `application/json`.
PLAIN_HEADERS = frozenset({"content-type", "accept", "accept-encoding", "accept-language",
                           "user-agent", "cache-control", "content-language"})
MIN_SECRET = 4  # shorter values would redact ordinary words (as outbound's history does)
MIN_FIXED_VALUE = 8  # a fixed header or parameter value: only what looks like a credential


class Redactor:
    """Replaces known secret values in text: `redact("token=abc123...")`."""

    def __init__(self, replacements: Mapping[str, str]) -> None:
        forms: dict[str, str] = {}
        for secret, replacement in replacements.items():
            if len(secret) >= MIN_SECRET:
                forms.update(dict.fromkeys(secret_forms(secret), replacement))
        self._forms = forms
        # Longest first, so a secret that holds another is replaced whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda match: self._forms[match.group()], text)

    @classmethod
    def from_settings(cls, settings: Any, hooks: Iterable[Hook] = ()) -> Redactor:
        """The secrets of `settings` (relayhook.settings.Settings) and of `hooks`."""
        values: dict[str, str] = {}
        for relay in settings.relays:
            values[relay.token] = f"[relay {relay.name}]"  # the secret path of a relay URL
            values[relay.secret] = REDACTED
        values.update(dict.fromkeys(settings.secrets.values(), REDACTED))
        values[settings.admin.token] = REDACTED
        for hook in hooks:
            values.update(dict.fromkeys(hook_secrets(hook), REDACTED))
        values.pop("", None)
        return cls(values)


def hook_secrets(hook: Hook) -> list[str]:
    """The fixed values of a hook that may be credentials: header and parameter values that
    are not templates, the URL's password and query values, a literal signing secret."""
    spec = hook.spec
    found = [value for name, value in spec.headers.items()
             if name.lower() not in PLAIN_HEADERS and _fixed(value)]
    found += [value for value in spec.params.values() if _fixed(value)]
    found = [value for value in found if len(value) >= MIN_FIXED_VALUE]
    parts = urlsplit(spec.url or "")
    if parts.password and _fixed(parts.password):  # not the user name: often a plain word
        found.append(parts.password)
    if spec.signing_secret and _fixed(spec.signing_secret):
        found.append(spec.signing_secret)
    # Also the query written into the URL itself: `?token=...`.
    found += [value for _, value in parse_qsl(parts.query)
              if _fixed(value) and len(value) >= MIN_FIXED_VALUE]
    return found


def _fixed(value: str) -> bool:
    return "{{" not in value and "{%" not in value


class TextFormatter(logging.Formatter):
    """`2024-05-01 12:00:00,123 WARNING relayhook.delivery: hook 'x': ...`, redacted."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


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


def configure_logging(*, level: str, fmt: LogFormat, redact: Callable[[str], str],
                      stream: TextIO | None = None) -> logging.Handler:
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
