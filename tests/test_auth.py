"""Authenticating a provider's request: basic, header, hmac, none; what a 401 says; what is
redacted before storage."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from relayhook.core.auth import challenge, check_credentials, credential_headers
from relayhook.core.connectors import Auth, BasicAuth, HeaderAuth, HmacAuth, NoAuth

SECRET = "a-long-shared-secret-0123456789"
BODY = b'{"type": "rules", "data": {"rows": []}}'
BASIC = BasicAuth(scheme="basic")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("secret", "headers", "ok"),
    [
        pytest.param(
            SECRET, {"authorization": f"Basic {SECRET}"}, True, id="raw secret, as GMetri sends it"
        ),
        pytest.param(
            SECRET,
            {"authorization": f"basic  {SECRET} "},
            True,
            id="scheme in any case, extra spaces",
        ),
        pytest.param(
            "ada:pa55word",
            {"authorization": f"Basic {b64('ada:pa55word')}"},
            True,
            id="user:password secret, base64 as RFC 7617 sends it",
        ),
        pytest.param(
            "ada:pa55word",
            {"authorization": "Basic ada:pa55word"},
            True,
            id="user:password secret, raw",
        ),
        pytest.param(
            SECRET,
            {"authorization": f"Basic {b64(SECRET)}"},
            False,
            id="a secret without a colon does not match its base64",
        ),
        pytest.param(
            "ada:pa55word",
            {"authorization": f"Basic {b64('ada:wrong')}"},
            False,
            id="wrong password, base64",
        ),
        pytest.param(SECRET, {"authorization": "Basic not-the-secret"}, False, id="wrong"),
        pytest.param(SECRET, {"authorization": f"Basic {SECRET}x"}, False, id="secret prefix"),
        pytest.param(SECRET, {}, False, id="missing"),
        pytest.param(SECRET, {"authorization": f"Bearer {SECRET}"}, False, id="other scheme"),
        pytest.param(SECRET, {"authorization": SECRET}, False, id="no scheme"),
        pytest.param(SECRET, {"x-other": f"Basic {SECRET}"}, False, id="another header"),
    ],
)
def test_basic(secret: str, headers: dict[str, str], ok: bool) -> None:
    reason = check_credentials(BASIC, secret, headers)
    assert (reason is None) == ok
    if not ok:
        assert reason  # a reason for the logs


def test_basic_reasons_say_what_was_wrong() -> None:
    assert "missing" in str(check_credentials(BASIC, SECRET, {}))
    assert "Bearer" in str(check_credentials(BASIC, SECRET, {"authorization": "Bearer x"}))
    assert "wrong" in str(check_credentials(BASIC, SECRET, {"authorization": "Basic x"}))


TOKEN = HeaderAuth(scheme="header", header="X-Relay-Token")
BEARER = HeaderAuth(scheme="header", header="Authorization", prefix="Bearer ")


@pytest.mark.parametrize(
    ("auth", "headers", "ok"),
    [
        pytest.param(TOKEN, {"x-relay-token": SECRET}, True, id="named header"),
        pytest.param(TOKEN, {"x-relay-token": SECRET + " "}, False, id="trailing space"),
        pytest.param(TOKEN, {"x-relay-token": "wrong"}, False, id="wrong"),
        pytest.param(TOKEN, {}, False, id="missing"),
        pytest.param(TOKEN, {"x-other-token": SECRET}, False, id="another header"),
        pytest.param(BEARER, {"authorization": f"Bearer {SECRET}"}, True, id="with prefix"),
        pytest.param(BEARER, {"authorization": SECRET}, False, id="prefix missing"),
        pytest.param(BEARER, {"authorization": f"Basic {SECRET}"}, False, id="other prefix"),
    ],
)
def test_header(auth: HeaderAuth, headers: dict[str, str], ok: bool) -> None:
    assert (check_credentials(auth, SECRET, headers) is None) == ok


def signature(algorithm: str, encoding: str, body: bytes = BODY, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
@pytest.mark.parametrize("prefix", ["", "sha256="])
def test_hmac_accepts_a_correct_signature(algorithm: str, encoding: str, prefix: str) -> None:
    auth = HmacAuth.model_validate(
        {
            "scheme": "hmac",
            "header": "X-Signature",
            "algorithm": algorithm,
            "encoding": encoding,
            "prefix": prefix,
        }
    )
    headers = {"x-signature": prefix + signature(algorithm, encoding)}
    assert check_credentials(auth, SECRET, headers, BODY) is None
    assert check_credentials(auth, SECRET, headers, BODY + b" ") is not None  # tampered body
    assert check_credentials(auth, "another-secret", headers, BODY) is not None


HMAC = HmacAuth(scheme="hmac", header="X-Signature", prefix="sha256=")


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        pytest.param({"x-signature": "sha256=" + signature("sha256", "hex")}, True, id="right"),
        pytest.param(
            {"x-signature": "sha256=" + signature("sha256", "hex").upper()},
            True,
            id="hex in upper case",
        ),
        pytest.param({"x-signature": signature("sha256", "hex")}, False, id="prefix missing"),
        pytest.param(
            {"x-signature": "sha256=" + signature("sha1", "hex")}, False, id="other algorithm"
        ),
        pytest.param({"x-signature": "sha256=" + "0" * 64}, False, id="wrong signature"),
        pytest.param(
            {"x-signature": "sha256=" + signature("sha256", "hex", BODY + b"\n")},
            False,
            id="signature of another body",
        ),
        pytest.param({}, False, id="missing"),
    ],
)
def test_hmac(headers: dict[str, str], ok: bool) -> None:
    assert (check_credentials(HMAC, SECRET, headers, BODY) is None) == ok


def test_hmac_defaults_to_sha256_hex() -> None:
    auth = HmacAuth(scheme="hmac", header="X-Signature")
    headers = {"x-signature": signature("sha256", "hex")}
    assert check_credentials(auth, SECRET, headers, BODY) is None


def test_none_accepts_anything() -> None:
    assert check_credentials(NoAuth(scheme="none"), "", {}, b"") is None
    assert check_credentials(NoAuth(scheme="none"), SECRET, {"authorization": "x"}) is None


@pytest.mark.parametrize(
    ("auth", "headers"),
    [
        pytest.param(BASIC, {"authorization"}, id="basic"),
        pytest.param(TOKEN, {"x-relay-token"}, id="header, lower-cased"),
        pytest.param(BEARER, {"authorization"}, id="header with prefix"),
        pytest.param(HMAC, set(), id="hmac: a signature is no secret"),
        pytest.param(NoAuth(scheme="none"), set(), id="none"),
    ],
)
def test_credential_headers(auth: Auth, headers: set[str]) -> None:
    assert credential_headers(auth) == headers


@pytest.mark.parametrize(
    ("auth", "words"),
    [
        pytest.param(BASIC, ['Basic realm="relayhook"'], id="basic"),
        pytest.param(TOKEN, ['realm="relayhook"', "X-Relay-Token"], id="header"),
        pytest.param(HMAC, ['realm="relayhook"', "X-Signature", "sha256"], id="hmac"),
        pytest.param(NoAuth(scheme="none"), ['realm="relayhook"'], id="none"),
    ],
)
def test_challenge(auth: Auth, words: list[str]) -> None:
    value = challenge(auth)
    for word in words:
        assert word in value
    assert SECRET not in value
