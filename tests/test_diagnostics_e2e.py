"""Through real sockets: `relayhook serve` refuses what `check` refuses (same message), starts
with a warning logged once, and `relayhook sign` prints a request the running relay accepts."""

from __future__ import annotations

import io
import shlex
from pathlib import Path

import httpx
import pytest
from servers import RelayhookProcess, ServerStartError

from relayhook.cli import main, signing

CONFIG = """\
[delivery]
allow_private_destinations = true

[[relays]]
name = "pay"
connector = "stripe"
token = "pay-token-0123456789"
secret = "whsec_relayhookE2eSecret0123456789"
"""


def test_serve_stops_on_an_error_with_checks_message(tmp_path: Path) -> None:
    hook = (
        '[[hooks]]\nname = "h"\nevents = ["stripe.invoice.paid"]\nurl = "http://127.0.0.1:9/"'
        "\nretry = { schedule = [0, 5000, 300000, 1800000] }\n"
    )
    config = CONFIG + "\n" + hook
    server = RelayhookProcess(tmp_path, config)
    with pytest.raises(ServerStartError) as refused:
        server.start()
    out = io.StringIO()
    assert main(["check", str(tmp_path / "relayhook.toml")], out=out) == 1
    message = out.getvalue().strip()
    assert message == (
        f"{tmp_path / 'relayhook.toml'}:hooks[0].retry.schedule:14: retry.schedule waits "
        "1800000 s at once and 24 days in all; it is in seconds, each wait at "
        "most 604800 s (7 days): milliseconds? [0, 5, 300, 1800]"
    )
    assert message in str(refused.value)
    assert "Not starting: 1 error(s) in the configuration" in str(refused.value)


def test_serve_starts_with_a_warning_logged_once(tmp_path: Path) -> None:
    hook = '[[hooks]]\nname = "h"\nevents = ["stripe.invoice.payed"]\nurl = "http://127.0.0.1:9/"\n'
    with RelayhookProcess(tmp_path, CONFIG + "\n" + hook) as server:
        log = server.log()
    said = [line for line in log.splitlines() if "stripe.invoice.payed" in line]
    assert len(said) == 1, log
    assert " WARNING " in said[0]
    assert said[0].endswith(
        "warning: event pattern 'stripe.invoice.payed' matches none of the "
        "event types the examples produce or the store has seen (0 events):"
        " a typo? the hook fires only if such a type ever comes; nearest: "
        "stripe.invoice.paid"
    )


def test_sign_prints_a_curl_the_relay_accepts(tmp_path: Path) -> None:
    public = '\n[server]\npublic_url = "http://127.0.0.1"\n'
    with RelayhookProcess(tmp_path, CONFIG + public) as server:
        out = io.StringIO()
        assert (
            main(
                [
                    "--config",
                    str(tmp_path / "relayhook.toml"),
                    "sign",
                    "pay",
                    "--example",
                    "subscription created",
                    "--secret",
                    "whsec_relayhookE2eSecret0123456789",
                ],
                out=out,
            )
            == 0
        )
        words = shlex.split(out.getvalue().replace("\\\n", " "))
        assert words[:3] == ["curl", "-X", "POST"]
        url = words[3].replace("http://127.0.0.1", server.url)
        headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
        body = words[words.index("--data-binary") + 1].encode()
        answer = httpx.post(url, headers=headers, content=body, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 1
        wrong = httpx.post(
            url,
            headers={
                **headers,
                "Stripe-Signature": headers["Stripe-Signature"].replace("v1=", "v1=0"),
            },
            content=body,
            timeout=10,
        )
        assert wrong.status_code == 401


def test_sign_uses_the_injected_time() -> None:
    out = io.StringIO()
    signing_now = signing.now
    try:
        signing.now = lambda: 1733050000.0  # type: ignore[assignment]
        assert (
            main(
                [
                    "sign",
                    "stripe",
                    "--example",
                    "invoice paid",
                    "--secret",
                    "whsec_relayhookExampleSecret0123456789",
                ],
                out=out,
            )
            == 0
        )
    finally:
        signing.now = signing_now  # type: ignore[assignment]
    text = out.getvalue()
    # The same signature the example carries (made as Stripe documents it, at that time).
    assert "-H 'Stripe-Signature: t=1733050000,v1=" in text
    assert text.count("ignature") == 1
    example = (Path(__file__).parents[1] / "connectors" / "stripe.toml").read_text()
    v1 = text.split("t=1733050000,v1=")[1].split("'")[0]
    assert f"v1={v1}," in example
