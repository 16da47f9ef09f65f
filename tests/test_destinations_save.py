"""Issue 17, item 6: every name form refused when a hook is saved, with the reason, through the
API, the console (in process, over a real SQLite file) and the config file; and at send time.

One function (`relayhook.delivery.destinations.check_destination`) answers all of them. The
resolver is a stub: no test here asks a real DNS server anything, and nothing connects out.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from asgi import BEARER, TOKEN, in_process, post_form, sign_in
from conftest import run
from servers import render_config, render_hooks, render_tables

from relayhook.assembly import check_destinations, destination_policy, load_hooks
from relayhook.core.ssrf import DestinationRefused
from relayhook.delivery.http import make_http_transport
from relayhook.settings import load_settings


class StubResolver:
    """Answers from a table; a name not in it fails the test (never real DNS)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(self, host: str, port: int) -> list[str]:
        if host not in self.answers:
            raise AssertionError(f"the stub resolver has no answer for {host!r}")
        return self.answers[host]


RESOLVER = StubResolver(
    {"mixed.example": ["93.184.215.14", "127.0.0.2"], "public.example": ["93.184.215.14"]}
)

# (host as written in http://HOST/x, words the reason holds). The config under test allows
# 127.0.0.1/32 (as the red team's did): allow_cidrs admits that address, never a name.
NAME_FORMS = [
    pytest.param("localhost.", "localhost. is a loopback name", id="localhost."),
    pytest.param("api.localhost", "api.localhost is a loopback name", id="api.localhost"),
    pytest.param("x.localhost.", "x.localhost. is a loopback name", id="x.localhost."),
    pytest.param(
        "metadata.google.internal",
        "metadata.google.internal is a cloud metadata name",
        id="metadata.google.internal",
    ),
    pytest.param(
        "metadata.google.internal.",
        "metadata.google.internal. is a cloud metadata name",
        id="metadata.google.internal.",
    ),
    pytest.param("metadata", "metadata is a cloud metadata name", id="metadata"),
    pytest.param(
        "mixed.example",
        "mixed.example resolves to a refused address: 127.0.0.2 is a loopback address",
        id="one public and one loopback record",
    ),
    pytest.param(
        "127.0.0.1:8645\\@127.0.0.5:8646",
        "the URL parsers disagree on where it "
        "leads (urllib reads 127.0.0.5:8646; yarl cannot read it",
        id="backslash-at",
    ),
    pytest.param(
        "xn--localhost-",
        "xn--localhost- reads as localhost, which is a loopback name",
        id="xn--localhost-",
    ),
]


def url_of(host: str) -> str:
    return f"http://{host}/x"


def config(hooks: str = "") -> str:
    return (
        render_config(relays=[], admin_token=TOKEN)
        + render_tables(delivery={"allow_cidrs": ["127.0.0.1/32"]})
        + hooks
    )


@pytest.mark.parametrize(("host", "words"), NAME_FORMS)
def test_the_api_refuses_every_name_form_at_save(tmp_path: Path, host: str, words: str) -> None:
    async def main() -> None:
        async with in_process(tmp_path, config(), resolver=RESOLVER) as (_, client):
            answer = await client.post(
                "/api/hooks",
                headers=BEARER,
                json={"name": "h", "events": ["*"], "url": url_of(host)},
            )
            assert answer.status_code == 422, answer.text
            [error] = answer.json()["errors"]
            assert error["field"] == "url"
            assert error["message"].startswith("destination refused: "), error
            assert words in error["message"], error
            assert (await client.get("/api/hooks/h", headers=BEARER)).status_code == 404
            # the control: a public name and the allowed address are saved
            for url in ("http://public.example/x", "http://127.0.0.1:9/x"):
                saved = await client.post(
                    "/api/hooks",
                    headers=BEARER,
                    json={"name": f"ok {url[7:13]}", "events": ["*"], "url": url},
                )
                assert saved.status_code == 201, saved.text

    run(main())


@pytest.mark.parametrize(("host", "words"), NAME_FORMS)
def test_the_console_refuses_every_name_form_at_save(tmp_path: Path, host: str, words: str) -> None:
    async def main() -> None:
        async with in_process(tmp_path, config(), resolver=RESOLVER) as (_, client):
            assert (await sign_in(client)).status_code == 303
            page = await post_form(
                client,
                "/hooks/new",
                {
                    "action": "save",
                    "name": "h",
                    "patterns": "*",
                    "method": "POST",
                    "url": url_of(host),
                    "body_mode": "default",
                },
                page="/hooks/new",
            )
            assert page.status_code == 422, page.text[:500]
            assert "There is a problem" in page.text
            text = page.text.replace("&#39;", "'").replace("&amp;", "&")
            assert words.replace("\\", "\\\\") in text or words in text, text[:3000]
            assert "Traceback" not in page.text
            assert (await client.get("/api/hooks/h", headers=BEARER)).status_code == 404

    run(main())


def test_the_config_file_refuses_every_name_form(tmp_path: Path) -> None:
    hooks = render_hooks(
        [
            {"name": f"to {index}", "events": ["*"], "url": url_of(host)}
            for index, (host, _) in enumerate(p.values for p in NAME_FORMS)
        ]
    )
    path = tmp_path / "relayhook.toml"
    path.write_text(config(hooks), encoding="utf-8")
    settings = load_settings(path)
    refusals = run(check_destinations(load_hooks(settings), destination_policy(settings), RESOLVER))
    for index, param in enumerate(NAME_FORMS):
        host, words = param.values
        assert words in refusals[f"to {index}"], (host, refusals.get(f"to {index}"))


@pytest.mark.parametrize(
    ("host", "words"), [p for p in NAME_FORMS if p.id != "one public and one loopback record"]
)
def test_send_time_refuses_them_as_a_destination_not_an_internal_error(
    host: str, words: str
) -> None:
    """What was accepted before reached the sender; `\\@` and `xn--localhost-` ended as class
    `internal` with a traceback. Now the sender refuses them with the same reason."""
    settings = load_settings(None, delivery={"allow_cidrs": ["127.0.0.1/32"]})

    async def main() -> None:
        sender = make_http_transport(destination_policy(settings), resolver=RESOLVER)
        try:  # the dispatcher's face: the rendered URL text as is
            with pytest.raises(httpx.ConnectError) as caught:
                await sender.send("POST", url_of(host), [], b"{}", timeout=2.0, limit=1000)
        finally:
            await sender.aclose()
        cause = caught.value.__cause__
        assert isinstance(cause, DestinationRefused), repr(caught.value)
        assert words in cause.reason

    run(main())
