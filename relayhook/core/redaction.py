"""Which values of a hook are secrets, and how they are kept out of every stored or shown copy.

A value typed into a hook that is not a template of event data is a secret: a header value, a
query parameter (in `params` or in the URL), the URL's password and a literal signing secret.
(`Bearer {{ secrets.crm }}` holds no secret itself: it names one kept in the settings.) Headers
that never carry credentials (Content-Type, Accept, ...) are not secrets.

    secrets = secret_values(raw)       # {"headers": {"Authorization": "Bearer x"}, "url": ...}
    stored  = strip_secrets(raw)       # the same hook, "[redacted]" at each of those places
    raw     = restore_secrets(stored, secrets)
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote_plus, urlsplit, urlunsplit

REDACTED = "[redacted]"
# Netmera-style `{event.subject}` in a URL (relayhook.core.hooks.expand_placeholders expands it).
PLACEHOLDER = re.compile(r"(?<!\{)\{\s*([A-Za-z_][\w.]*)\s*\}(?!\})")
PLAIN_HEADERS = frozenset(
    {
        "accept",
        "accept-language",
        "cache-control",
        "content-language",
        "content-type",
        "user-agent",
    }
)


def is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _is_literal(value: object) -> bool:
    return isinstance(value, str) and bool(value) and not is_template(value)


def netloc_without_password(parts: SplitResult) -> str:
    """The URL's netloc with [redacted] for its password, if it has one."""
    if parts.password is None:
        return parts.netloc
    user, _, host = parts.netloc.rpartition("@")
    return f"{user.partition(':')[0]}:{REDACTED}@{host}"


_STAND_IN = "redacted-0b5e1c"  # urlsplit reads `[redacted]` in a netloc as an IPv6 host


def split_url(url: str) -> SplitResult:
    """urlsplit, also for a URL shown with its password redacted (`user:[redacted]@host`)."""
    if REDACTED not in url:
        return urlsplit(url)
    parts = urlsplit(url.replace(REDACTED, _STAND_IN))
    return parts._replace(
        **{name: getattr(parts, name).replace(_STAND_IN, REDACTED) for name in parts._fields}
    )


MIN_BASE64_BYTES = 6  # a shorter aligned run would be a few common characters


def base64_forms(secret: str) -> set[str]:
    """The runs of base64 text that always appear where `secret` is base64-encoded inside a
    longer text (an SMTP AUTH PLAIN `\0user\0password`, a Basic credential `user:password`):
    for each of the three alignments the secret can start at, the base64 of its bytes that
    fill whole 3-byte groups, standard and URL-safe. Empty for secrets too short to tell."""
    data = secret.encode("utf-8")
    forms: set[str] = set()
    for skip in range(3):
        run = data[skip:][: (len(data) - skip) // 3 * 3]
        if len(run) >= MIN_BASE64_BYTES:
            encoded = base64.b64encode(run).decode("ascii")
            forms.update((encoded, encoded.replace("+", "-").replace("/", "_")))
    return forms


def redacted_url(url: str) -> str:
    """The URL with its password and every literal query value replaced by [redacted]; the
    rest (templates included) exactly as written."""
    parts = split_url(url)
    fields = []
    for field in parts.query.split("&") if parts.query else []:
        name, equals, value = field.partition("=")
        if equals and _is_literal_query_value(unquote_plus(value)):
            field = f"{name}={REDACTED}"
        fields.append(field)
    return urlunsplit(parts._replace(netloc=netloc_without_password(parts), query="&".join(fields)))


def _is_literal_query_value(value: str) -> bool:
    """Literal, and not a Netmera-style `{event.subject}` placeholder (event data)."""
    return _is_literal(value) and not PLACEHOLDER.search(value)


def _url_is_secret(url: object) -> bool:
    # A templated URL may still hold a literal token or password beside its templates.
    return isinstance(url, str) and redacted_url(url) != url


def secret_values(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The secrets of a hook as written, as a partial spec (only the places that hold one)."""
    found: dict[str, Any] = {}
    for table in ("headers", "params"):
        values = raw.get(table)
        if not isinstance(values, Mapping):
            continue
        secret = {
            name: value
            for name, value in values.items()
            if _is_literal(value) and not (table == "headers" and name.lower() in PLAIN_HEADERS)
        }
        if secret:
            found[table] = secret
    if _url_is_secret(raw.get("url")):
        found["url"] = raw["url"]
    if _is_literal(raw.get("signing_secret")):
        found["signing_secret"] = raw["signing_secret"]
    return found


def strip_secrets(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The hook with [redacted] in place of each secret: safe to store, log and show."""
    stripped = dict(raw)
    for key, value in secret_values(raw).items():
        if key == "url":
            stripped["url"] = redacted_url(value)
        elif isinstance(value, dict):
            stripped[key] = {**raw[key], **{name: REDACTED for name in value}}
        else:
            stripped[key] = REDACTED
    return stripped


def restore_secrets(raw: Mapping[str, Any], secrets: Mapping[str, Any]) -> dict[str, Any]:
    """Put kept secrets back where `raw` still shows them redacted (a hook read from the API or
    the console and saved again without retyping its secrets). Values typed anew win."""
    restored = dict(raw)
    for key, value in secrets.items():
        if key == "url":
            if raw.get("url") == redacted_url(value):
                restored["url"] = value
        elif isinstance(value, Mapping):
            table = raw.get(key)
            if isinstance(table, Mapping):
                restored[key] = {
                    name: value[name] if given == REDACTED and name in value else given
                    for name, given in table.items()
                }
        elif raw.get(key) == REDACTED:
            restored[key] = value
    return restored


def still_redacted(raw: Mapping[str, Any]) -> list[str]:
    """The keys that still hold [redacted] after restoring: a secret that is not known."""
    keys = [
        f"{table}.{name}"
        for table in ("headers", "params")
        for name, value in (raw.get(table) or {}).items()
        if value == REDACTED
    ]
    if isinstance(raw.get("url"), str) and REDACTED in raw["url"]:
        keys.append("url")
    if raw.get("signing_secret") == REDACTED:
        keys.append("signing_secret")
    return keys


@dataclass(frozen=True, slots=True)
class SecretPlaces:
    """Where a hook's secrets land in the requests it sends: header names (lower case), query
    parameter names, and the literal values themselves (for the URL's password and error
    texts). The history records `[redacted]` at each place."""

    headers: frozenset[str] = frozenset()
    params: frozenset[str] = frozenset()
    values: tuple[str, ...] = ()

    @classmethod
    def of(cls, merged: Mapping[str, Any]) -> SecretPlaces:
        found = secret_values(merged)
        headers = frozenset(name.lower() for name in found.get("headers", {}))
        params = set(found.get("params", {}))
        values = [*found.get("headers", {}).values(), *found.get("params", {}).values()]
        if "url" in found:
            parts = split_url(found["url"])
            literal = [
                (k, v) for k, v in parse_qsl(parts.query, True) if _is_literal_query_value(v)
            ]
            params.update(name for name, _ in literal)
            values += [value for _, value in literal]
            values += [parts.password] if parts.password else []
        if "signing_secret" in found:
            values.append(found["signing_secret"])
        return cls(headers, frozenset(params), tuple(sorted(set(values), key=len, reverse=True)))
