"""Authenticating a provider's request against its relay's secret. Pure; constant-time compares.

    reason = check_credentials(connector.spec.auth, relay.secret, headers, body)
    if reason is not None: answer 401 with challenge(auth)
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping

from relayhook.connectors import Auth, BasicAuth, HeaderAuth, HmacAuth, NoAuth


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


def sign(auth: HmacAuth, secret: str, body: bytes) -> str:
    """The header value a correctly signed request carries (used by tests and `relayhook map`)."""
    digest = hmac.new(secret.encode("utf-8"), body, auth.algorithm).digest()
    encoded = digest.hex() if auth.encoding == "hex" else base64.b64encode(digest).decode()
    return auth.prefix + encoded


def _check_hmac(auth: HmacAuth, secret: str, headers: Mapping[str, str], body: bytes) -> str | None:
    value = headers.get(auth.header.lower())
    if value is None:
        return f"missing {auth.header} signature header"
    expected = sign(auth, secret, body)
    if auth.encoding == "hex":
        value, expected = value.lower(), expected.lower()
    return None if _equal(value.strip(), expected) else f"wrong signature in {auth.header}"


def needs_body(auth: Auth) -> bool:
    """Whether checking the credentials needs the body (so it is read first)."""
    return isinstance(auth, HmacAuth)


def check_credentials(
    auth: Auth, secret: str, headers: Mapping[str, str], body: bytes = b""
) -> str | None:
    """None if the request is authentic, else why not (for logs; the provider sees only 401)."""
    if isinstance(auth, BasicAuth):
        return _check_basic(secret, headers)
    if isinstance(auth, HeaderAuth):
        return _check_header(auth, secret, headers)
    if isinstance(auth, HmacAuth):
        return _check_hmac(auth, secret, headers, body)
    assert isinstance(auth, NoAuth)
    return None


def challenge(auth: Auth) -> str:
    """The `WWW-Authenticate` value of a 401."""
    if isinstance(auth, BasicAuth):
        return 'Basic realm="relayhook", charset="UTF-8"'
    if isinstance(auth, HeaderAuth):
        return f'Header realm="relayhook", header="{auth.header}"'
    if isinstance(auth, HmacAuth):
        return f'Signature realm="relayhook", header="{auth.header}", algorithm="{auth.algorithm}"'
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


def credentials_for(auth: Auth, secret: str, body: bytes) -> dict[str, str]:
    """The headers a provider sends to authenticate `body` (for the console's Send sample)."""
    if isinstance(auth, BasicAuth):
        return {"Authorization": f"Basic {secret}"}
    if isinstance(auth, HeaderAuth):
        return {auth.header: auth.prefix + secret}
    if isinstance(auth, HmacAuth):
        return {auth.header: sign(auth, secret, body)}
    return {}
