"""Signatures as data (unit, with an injected clock): the `hmac` scheme over a templated content,
several signatures found by a pattern, timestamps within a tolerance; `standard-webhooks`
checked against the reference `standardwebhooks` package and its published test vectors."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from relayhook.core.auth import challenge, check_credentials, sign
from relayhook.core.connectors import HmacAuth, StandardWebhooksAuth, load_connector
from relayhook.errors import ConnectorError

SIGNED = Path(__file__).parent / "fixtures" / "signed"
NOW = 1_714_564_800.0
SECRET = "whsec-brightpay-7c1e5b3f9a"
BODY = b'{"id": "pay_81", "status": "succeeded"}'


def hexmac(secret: str, content: bytes) -> str:
    return hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()


# --- a timestamp in its own header, a version prefix (brightpay.toml) ------------------------


def brightpay() -> HmacAuth:
    auth = load_connector(SIGNED / "brightpay.toml").spec.auth
    assert isinstance(auth, HmacAuth)
    return auth


def brightpay_headers(timestamp: float, secret: str = SECRET, body: bytes = BODY) -> dict[str, str]:
    ts = str(int(timestamp))
    return {
        "x-brightpay-timestamp": ts,
        "x-brightpay-signature": "v0=" + hexmac(secret, f"v0:{ts}:".encode() + body),
    }


def test_timestamp_and_body_signed_together() -> None:
    assert check_credentials(brightpay(), SECRET, brightpay_headers(NOW), BODY, now=NOW) is None
    assert (
        sign(brightpay(), SECRET, BODY, brightpay_headers(NOW))
        == (brightpay_headers(NOW)["x-brightpay-signature"])
    )


@pytest.mark.parametrize(
    ("signed_at", "verdict"),
    [
        (NOW - 300, None),
        (NOW + 300, None),
        (
            NOW - 301,
            "timestamp 1714564499 is 301 s from now, more than the tolerance of 300 s "
            "(a replayed or delayed request)",
        ),
        (
            NOW + 3600,
            "timestamp 1714568400 is 3600 s from now, more than the tolerance of 300 s "
            "(a replayed or delayed request)",
        ),
    ],
    ids=["5 min old", "5 min ahead", "a replay: 5 min 1 s old", "an hour ahead"],
)
def test_the_timestamp_must_be_within_the_tolerance(signed_at: float, verdict: str | None) -> None:
    headers = brightpay_headers(signed_at)  # correctly signed, whatever its age
    assert check_credentials(brightpay(), SECRET, headers, BODY, now=NOW) == verdict


def test_a_changed_timestamp_breaks_the_signature() -> None:
    headers = brightpay_headers(NOW - 3600)
    headers["x-brightpay-timestamp"] = str(int(NOW))  # a replay, made to look fresh
    assert check_credentials(brightpay(), SECRET, headers, BODY, now=NOW) == (
        "wrong signature in X-Brightpay-Signature"
    )


@pytest.mark.parametrize(
    ("change", "verdict"),
    [
        (
            {"x-brightpay-timestamp": None},
            "no timestamp: 'dict object' has no attribute 'x-brightpay-timestamp'",
        ),
        ({"x-brightpay-timestamp": "yesterday"}, "timestamp 'yesterday' is not epoch seconds"),
        ({"x-brightpay-signature": None}, "missing X-Brightpay-Signature signature header"),
        ({"x-brightpay-signature": "v0=zz"}, "wrong signature in X-Brightpay-Signature"),
    ],
)
def test_what_is_missing_or_malformed_is_named(change: dict[str, str | None], verdict: str) -> None:
    headers: dict[str, str] = brightpay_headers(NOW)
    for name, value in change.items():
        headers.pop(name)
        if value is not None:
            headers[name] = value
    assert check_credentials(brightpay(), SECRET, headers, BODY, now=NOW) == verdict


def test_a_body_that_is_not_utf8_is_signed_byte_for_byte() -> None:
    body = b"\xff\xfe{binary}"
    headers = brightpay_headers(NOW, body=body)
    assert check_credentials(brightpay(), SECRET, headers, body, now=NOW) is None
    assert check_credentials(brightpay(), SECRET, headers, body + b" ", now=NOW) is not None


# --- several signatures in one header (paystream.toml) ---------------------------------------


def paystream() -> HmacAuth:
    auth = load_connector(SIGNED / "paystream.toml").spec.auth
    assert isinstance(auth, HmacAuth)
    return auth


def paystream_header(timestamp: float, *secrets: str) -> dict[str, str]:
    ts = str(int(timestamp))
    v1 = ",".join("v1=" + hexmac(s, f"{ts}.".encode() + BODY) for s in secrets)
    return {"paystream-signature": f"t={ts},{v1}"}


@pytest.mark.parametrize(
    "secrets",
    [
        ("ps-new-secret-123",),
        ("ps-old-secret-456", "ps-new-secret-123"),
        ("ps-new-secret-123", "ps-old-secret-456"),
    ],
    ids=["one signature", "rotation, ours second", "rotation, ours first"],
)
def test_any_of_several_signatures_matches(secrets: tuple[str, ...]) -> None:
    headers = paystream_header(NOW, *secrets)
    assert check_credentials(paystream(), "ps-new-secret-123", headers, BODY, now=NOW) is None


def test_none_of_several_signatures_matching_is_refused() -> None:
    headers = paystream_header(NOW, "ps-old-secret-456", "someone-else")
    assert check_credentials(paystream(), "ps-new-secret-123", headers, BODY, now=NOW) == (
        "wrong signature in Paystream-Signature"
    )


def test_a_stale_paystream_request_is_refused() -> None:
    headers = paystream_header(NOW - 900, "ps-new-secret-123")
    verdict = check_credentials(paystream(), "ps-new-secret-123", headers, BODY, now=NOW)
    assert verdict is not None and verdict.startswith("timestamp 1714563900 is 900 s from now")


def test_a_header_without_a_timestamp_is_refused() -> None:
    headers = {"paystream-signature": "v1=" + hexmac("ps-new-secret-123", b"." + BODY)}
    assert check_credentials(paystream(), "ps-new-secret-123", headers, BODY, now=NOW) == (
        "timestamp '' is not epoch seconds"
    )


# --- the plain scheme is unchanged ---------------------------------------------------------


def test_the_plain_body_scheme_still_works() -> None:
    auth = HmacAuth(scheme="hmac", header="X-Acme-Signature", prefix="sha256=")
    value = "sha256=" + hexmac("k", BODY)
    assert (
        check_credentials(
            auth, "k", {"x-acme-signature": value.upper().replace("SHA256=", "sha256=")}, BODY
        )
        is None
    )
    assert check_credentials(auth, "k", {"x-acme-signature": value[:-1]}, BODY) is not None
    assert check_credentials(auth, "k", {"x-acme-signature": value[7:]}, BODY) is not None


# --- standard-webhooks -----------------------------------------------------------------------

SWH = StandardWebhooksAuth(scheme="standard-webhooks")
# The published vector of the reference library's tests (standard-webhooks, libraries/python).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_PAYLOAD = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def vector_headers(signature: str = VECTOR_SIGNATURE) -> dict[str, str]:
    return {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": signature,
    }


def test_the_reference_vector_verifies() -> None:
    reference = Webhook(VECTOR_SECRET).sign(
        VECTOR_ID, datetime.fromtimestamp(VECTOR_TIMESTAMP, UTC), VECTOR_PAYLOAD.decode()
    )
    assert reference == VECTOR_SIGNATURE  # the reference library agrees with its own vector
    for secret in (VECTOR_SECRET, VECTOR_SECRET.removeprefix("whsec_")):
        assert (
            check_credentials(SWH, secret, vector_headers(), VECTOR_PAYLOAD, now=VECTOR_TIMESTAMP)
            is None
        )


@pytest.mark.parametrize(
    ("headers", "verdict"),
    [
        (
            vector_headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="),
            "wrong signature in webhook-signature",
        ),
        (
            {k: v for k, v in vector_headers().items() if k != "webhook-id"},
            "cannot make the signed content: 'dict object' has no attribute 'webhook-id'",
        ),
        (
            {k: v for k, v in vector_headers().items() if k != "webhook-timestamp"},
            "no timestamp: 'dict object' has no attribute 'webhook-timestamp'",
        ),
        (
            {**vector_headers(), "webhook-timestamp": "hello"},
            "timestamp 'hello' is not epoch seconds",
        ),
        (
            {k: v for k, v in vector_headers().items() if k != "webhook-signature"},
            "missing webhook-signature signature header",
        ),
        (
            vector_headers(
                " ".join(
                    [
                        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
                        "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
                        VECTOR_SIGNATURE,
                        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
                    ]
                )
            ),
            None,
        ),
        (vector_headers("v2," + VECTOR_SIGNATURE[3:]), "wrong signature in webhook-signature"),
    ],
    ids=[
        "invalid signature",
        "missing id",
        "missing timestamp",
        "invalid timestamp",
        "missing signature",
        "several signatures, one valid",
        "only a v2 signature",
    ],
)
def test_the_reference_cases(headers: dict[str, str], verdict: str | None) -> None:
    assert (
        check_credentials(SWH, VECTOR_SECRET, headers, VECTOR_PAYLOAD, now=VECTOR_TIMESTAMP)
        == verdict
    )


@pytest.mark.parametrize(("offset", "ok"), [(-300, True), (300, True), (-301, False), (301, False)])
def test_the_reference_tolerance_of_five_minutes(offset: int, ok: bool) -> None:
    verdict = check_credentials(
        SWH, VECTOR_SECRET, vector_headers(), VECTOR_PAYLOAD, now=VECTOR_TIMESTAMP - offset
    )
    assert (verdict is None) is ok


def test_what_the_reference_signs_verifies_here() -> None:
    secret = "whsec_" + base64.b64encode(b"another key of thirty-two bytes!").decode()
    moment = datetime(2024, 5, 1, 12, tzinfo=UTC)
    body = '{"type": "contact.created", "name": "Zoë"}'
    signature = Webhook(secret).sign("msg_1", moment, body)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }
    assert check_credentials(SWH, secret, headers, body.encode(), now=moment.timestamp()) is None


def test_challenges_name_the_header() -> None:
    assert challenge(SWH) == (
        'Signature realm="relayhook", header="webhook-signature", algorithm="sha256"'
    )


def test_a_bad_pattern_or_template_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    text = (SIGNED / "paystream.toml").read_text().replace('"v1=([0-9a-f]+)"', '"v1=([0-9a-f]+"')
    path.write_text(text)
    with pytest.raises(ConnectorError) as caught:
        load_connector(path.rename(tmp_path / "paystream.toml"))
    assert caught.value.key == "auth.pattern" and caught.value.line == 10
    assert caught.value.message.startswith("not a regular expression: missing ), unterminated")
