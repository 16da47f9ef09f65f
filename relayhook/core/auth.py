"""Authenticating a provider's request against its relay's secret. Pure; constant-time compares;
the clock is an argument.

    reason = check_credentials(connector.spec.auth, relay.secret, headers, body,
                               query=raw_query, method="POST", now=time.time())
    if reason is not None: answer 401 with challenge(auth)
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relayhook.core.connectors import (
    Auth,
    BasicAuth,
    HeaderAuth,
    HmacAuth,
    NoAuth,
    StandardWebhooksAuth,
)
from relayhook.core.mapping import parse_pairs
from relayhook.core.regex import compile_regex
from relayhook.core.templating import RenderError, Template, compile_template


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _check_basic(secret: str, headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value is None:
        return "missing Authorization header (expected Basic credentials)"
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return f"Authorization scheme is {scheme!r}, expected Basic"
    credentials = credentials.strip()
    matches = _equal(credentials, secret)
    if ":" in secret:  # a `user:password` secret may arrive base64-encoded, as RFC 7617 says
        matches |= _equal(credentials, base64.b64encode(secret.encode("utf-8")).decode("ascii"))
    return None if matches else "wrong credentials"


def _check_header(auth: HeaderAuth, secret: str, headers: Mapping[str, str]) -> str | None:
    value = headers.get(auth.header.lower())
    if value is None:
        return f"missing {auth.header} header"
    return None if _equal(value, auth.prefix + secret) else f"wrong {auth.header} header"


# --- hmac ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Signing:
    """An `hmac` scheme's pattern and templates, compiled once per scheme."""

    pattern: Any  # an RE2 pattern (core/regex.py): linear time on a provider's header
    content: Template | None
    timestamp: Template | None


def _signing(auth: HmacAuth) -> _Signing:
    return _compiled_signing(auth.pattern, auth.content, auth.timestamp)


@functools.lru_cache(maxsize=256)
def _compiled_signing(pattern: str | None, content: str | None, timestamp: str | None) -> _Signing:
    # Load already compiled these to report mistakes with their line; this is the cached copy.
    return _Signing(
        compile_regex(pattern, "auth.pattern") if pattern is not None else None,
        compile_template(content, "auth.content") if content is not None else None,
        compile_template(timestamp, "auth.timestamp") if timestamp else None,
    )


def signing_key(auth: HmacAuth, secret: str) -> bytes:
    """The HMAC key of a relay's secret. ValueError for a `whsec` secret that is not base64."""
    if auth.secret_format == "text":
        return secret.encode("utf-8")
    text = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("a Standard Webhooks secret is whsec_ followed by base64") from exc
    if not key:
        raise ValueError("a Standard Webhooks secret may not be empty")
    return key


def secret_problem(auth: Auth, secret: str) -> str | None:
    """Why a relay's secret cannot serve its connector's scheme (checked when config loads)."""
    hmac_auth = as_hmac(auth)
    if hmac_auth is None or not secret:
        return None
    try:
        signing_key(hmac_auth, secret)
    except ValueError as exc:
        return str(exc)
    return None


def as_hmac(auth: Auth) -> HmacAuth | None:
    """The `hmac` form of a signature scheme, None for the others."""
    if isinstance(auth, StandardWebhooksAuth):
        return auth.as_hmac()
    return auth if isinstance(auth, HmacAuth) else None


def _scope(headers: Mapping[str, str], body: bytes, query: str, method: str) -> dict[str, Any]:
    # surrogateescape: a body that is not UTF-8 still signs byte for byte.
    return {
        "body": body.decode("utf-8", "surrogateescape"),
        "headers": dict(headers),
        "query": parse_pairs(query),
        "method": method,
    }


def signed_content(
    auth: HmacAuth, headers: Mapping[str, str], body: bytes, query: str = "", method: str = "POST"
) -> bytes:
    """The bytes a request's signature covers. RenderError when a value it needs is missing."""
    signing = _signing(auth)
    if signing.content is None:
        return body
    scope = _scope(headers, body, query, method)
    if signing.timestamp is not None:
        scope["timestamp"] = str(signing.timestamp.render(scope)).strip()
    return str(signing.content.render(scope)).encode("utf-8", "surrogateescape")


def sign(
    auth: HmacAuth,
    secret: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    query: str = "",
    method: str = "POST",
) -> str:
    """One signature as the header carries it without `pattern` (`prefix` + the digest); for
    tests and docs. With `content`, `headers` must hold what it reads."""
    content = signed_content(auth, headers or {}, body, query, method)
    digest = hmac.new(signing_key(auth, secret), content, auth.algorithm).digest()
    encoded = digest.hex() if auth.encoding == "hex" else base64.b64encode(digest).decode()
    return auth.prefix + encoded


def _candidates(auth: HmacAuth, value: str) -> list[bytes]:
    """The signatures a header's value holds, decoded; ones that do not decode are dropped."""
    pattern = _signing(auth).pattern
    if pattern is None:
        text = value.strip()
        prefix = auth.prefix.lower() if auth.encoding == "hex" else auth.prefix
        found = (
            [text[len(prefix) :]]
            if (text.lower() if auth.encoding == "hex" else text).startswith(prefix)
            else []
        )
    else:
        found = [m.group(1) if pattern.groups else m.group(0) for m in pattern.finditer(value)]
    decoded: list[bytes] = []
    for text in found[:32]:  # a rotation sends two or three; a flood is not checked whole
        try:
            decoded.append(
                bytes.fromhex(text.strip())
                if auth.encoding == "hex"
                else base64.b64decode(text.strip(), validate=True)
            )
        except (ValueError, binascii.Error):
            continue
    return decoded


def _check_timestamp(auth: HmacAuth, scope: dict[str, Any], now: float) -> str | None:
    template = _signing(auth).timestamp
    assert template is not None
    try:
        value = template.render(scope)
    except RenderError as exc:
        return f"no timestamp: {exc.message}"
    text = "" if value is None else str(value).strip()
    try:
        moment = float(text)
    except ValueError:
        return f"timestamp {text[:40]!r} is not epoch seconds"
    if not math.isfinite(moment):
        return f"timestamp {text[:40]!r} is not epoch seconds"
    if abs(now - moment) > auth.tolerance:
        return (
            f"timestamp {text} is {abs(now - moment):.0f} s from now, more than the "
            f"tolerance of {auth.tolerance} s (a replayed or delayed request)"
        )
    scope["timestamp"] = text
    return None


def _check_hmac(
    auth: HmacAuth,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    query: str,
    method: str,
    now: float | None,
) -> str | None:
    value = headers.get(auth.header.lower())
    if value is None:
        return f"missing {auth.header} signature header"
    signing = _signing(auth)
    scope = _scope(headers, body, query, method) if signing.content or signing.timestamp else {}
    if signing.timestamp is not None:
        if now is None:
            raise ValueError("checking a timestamp needs `now`")
        if reason := _check_timestamp(auth, scope, now):
            return reason
    try:
        key = signing_key(auth, secret)
        content = (
            body
            if signing.content is None
            else str(signing.content.render(scope)).encode("utf-8", "surrogateescape")
        )
    except ValueError as exc:
        return str(exc)
    except RenderError as exc:
        return f"cannot make the signed content: {exc.message}"
    expected = hmac.new(key, content, auth.algorithm).digest()
    matched = False
    for candidate in _candidates(auth, value):
        matched |= hmac.compare_digest(candidate, expected)  # no early exit: same time for all
    return None if matched else f"wrong signature in {auth.header}"


# --- signing as the provider does (`relayhook sign`, `check`) -------------------------------


def dummy_secret(auth: Auth, text: str) -> str:
    """A secret of the scheme's format made from `text` (for signing examples offline)."""
    hmac_auth = as_hmac(auth)
    if hmac_auth is not None and hmac_auth.secret_format == "whsec":
        return "whsec_" + base64.b64encode(text.encode("utf-8")).decode("ascii")
    return text


def _sign_templates(auth: Auth, hmac_auth: HmacAuth) -> dict[str, str]:
    if isinstance(auth, StandardWebhooksAuth):
        return {
            "webhook-id": "msg_relayhook_sign",
            "webhook-timestamp": "{{ timestamp }}",
            "webhook-signature": "v1,{{ signature }}",
        }
    if hmac_auth.sign_headers is not None:
        return hmac_auth.sign_headers
    return {hmac_auth.header: hmac_auth.prefix.replace("{", "{{ '{' }}") + "{{ signature }}"}


def provider_headers(
    auth: Auth,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    query: str = "",
    method: str = "POST",
    now: float,
) -> dict[str, str]:
    """The headers the provider adds to authenticate this request, as `sign_headers` writes
    them. RenderError when the signed content needs a value the request lacks; ValueError for a
    secret the format refuses."""
    if isinstance(auth, BasicAuth):
        return {"Authorization": f"Basic {secret}"}
    if isinstance(auth, HeaderAuth):
        return {auth.header: auth.prefix + secret}
    hmac_auth = as_hmac(auth)
    if hmac_auth is None:
        return {}
    templates = {
        name: compile_template(text, f"auth.sign_headers.{name}")
        for name, text in _sign_templates(auth, hmac_auth).items()
    }
    timestamp = str(int(now))
    first = {
        name: str(t.render({"timestamp": timestamp, "signature": ""}))
        for name, t in templates.items()
    }
    merged = {**headers, **{name.lower(): value for name, value in first.items()}}
    content = signed_content(hmac_auth, merged, body, query, method)
    digest = hmac.new(signing_key(hmac_auth, secret), content, hmac_auth.algorithm).digest()
    encoded = digest.hex() if hmac_auth.encoding == "hex" else base64.b64encode(digest).decode()
    return {
        name: str(t.render({"timestamp": timestamp, "signature": encoded}))
        for name, t in templates.items()
    }


def signed_at(
    auth: Auth, headers: Mapping[str, str], body: bytes, query: str = "", method: str = "POST"
) -> float | None:
    """The request's signing time by the scheme's `timestamp` (None: none, or unreadable)."""
    hmac_auth = as_hmac(auth)
    template = _signing(hmac_auth).timestamp if hmac_auth is not None else None
    if template is None:
        return None
    try:
        return float(str(template.render(_scope(headers, body, query, method))).strip())
    except (RenderError, ValueError):
        return None


def verify_example(
    auth: Auth,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    query: str = "",
    method: str = "POST",
    now: float,
) -> str | None:
    """Why the relay would refuse this request signed with `secret` (None: it passes), at the
    request's own timestamp when the scheme has one, else at `now`."""
    at = signed_at(auth, headers, body, query, method)
    return check_credentials(
        auth, secret, headers, body, query=query, method=method, now=now if at is None else at
    )


# --- the scheme's entry points -------------------------------------------------------------


def needs_body(auth: Auth) -> bool:
    """Whether checking the credentials needs the body (so it is read first)."""
    return as_hmac(auth) is not None


def check_credentials(
    auth: Auth,
    secret: str,
    headers: Mapping[str, str],
    body: bytes = b"",
    *,
    query: str = "",
    method: str = "POST",
    now: float | None = None,
) -> str | None:
    """None if the request is authentic, else why not (for logs; the provider sees only 401).
    `now` (epoch seconds) is needed by schemes that check a timestamp."""
    if isinstance(auth, BasicAuth):
        return _check_basic(secret, headers)
    if isinstance(auth, HeaderAuth):
        return _check_header(auth, secret, headers)
    hmac_auth = as_hmac(auth)
    if hmac_auth is not None:
        return _check_hmac(hmac_auth, secret, headers, body, query, method, now)
    assert isinstance(auth, NoAuth)
    return None


def challenge(auth: Auth) -> str:
    """The `WWW-Authenticate` value of a 401."""
    if isinstance(auth, BasicAuth):
        return 'Basic realm="relayhook", charset="UTF-8"'
    if isinstance(auth, HeaderAuth):
        return f'Header realm="relayhook", header="{auth.header}"'
    hmac_auth = as_hmac(auth)
    if hmac_auth is not None:
        return (
            f'Signature realm="relayhook", header="{hmac_auth.header}", '
            f'algorithm="{hmac_auth.algorithm}"'
        )
    return 'Token realm="relayhook"'


def credential_headers(auth: Auth) -> frozenset[str]:
    """Header names (lower-cased) that carry the secret, redacted before anything is stored."""
    if isinstance(auth, BasicAuth):
        return frozenset({"authorization"})
    if isinstance(auth, HeaderAuth):
        return frozenset({auth.header.lower()})
    return frozenset()


def needs_secret(auth: Auth) -> bool:
    return not isinstance(auth, NoAuth)


def credentials_for(
    auth: Auth,
    secret: str,
    body: bytes,
    *,
    now: float = 0.0,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers a provider sends to authenticate `body` (for the console's Send sample),
    signed at `now` (epoch seconds) as `provider_headers` writes them."""
    return provider_headers(auth, secret, headers or {}, body, now=now)
