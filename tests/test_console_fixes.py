"""Console and API findings of issue 17, in process: an httpx ASGI client over `create_app` and a
real SQLite file. A delivery whose attempt failed at render, a hook with URL credentials, names
that shadow console routes or hold newlines, and names already stored that break the new rule."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from asgi import in_process, sign_in
from conftest import run

from relayhook.store.base import StoredHook
from relayhook.web.app import RelayhookApp

ADMIN = "admin-token-console-fixes"
PASSWORD = "a console password of some length"
RELAY_TOKEN = "tok-console-fixes-000001"


def answer_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="ok")


@contextlib.asynccontextmanager
async def console(
    tmp_path: Path,
    hooks: str = "",
    extra: str = "",
    handler: Callable[[httpx.Request], httpx.Response] = answer_ok,
) -> AsyncIterator[tuple[httpx.AsyncClient, RelayhookApp]]:
    """A signed-in console client and its app (SQLite file in `tmp_path`, outbound requests
    answered by `handler`)."""
    config = (
        f'[storage]\nurl = "sqlite:///{tmp_path / "relayhook.db"}"\n'
        f'[admin]\ntoken = "{ADMIN}"\n[delivery]\npoll_interval = 0.05\n'
        f'[[relays]]\nname = "door"\nconnector = "generic"\n'
        f'token = "{RELAY_TOKEN}"\n' + hooks + extra
    )
    async with in_process(
        tmp_path, config, password=PASSWORD, transport=httpx.MockTransport(handler)
    ) as (app, client):
        signed = await sign_in(client, PASSWORD)
        assert signed.status_code == 303, signed.text
        yield client, app


def api(client: httpx.AsyncClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


async def make_hook(client: httpx.AsyncClient, **spec: Any) -> None:
    made = await client.post("/api/hooks", headers=api(client), json={"events": ["*"], **spec})
    assert made.status_code in (200, 201), made.text


async def attempted(client: httpx.AsyncClient) -> Any:
    """The first delivery with an attempt, once there is one."""

    async def found() -> Any:
        items = (await client.get("/api/deliveries", headers=api(client))).json()["items"]
        return [d for d in items if d["attempts"]] if items else None

    return (await wait_for(found))[0]


async def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await condition()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, "gave up waiting"
        await asyncio.sleep(0.02)


def test_a_delivery_whose_attempt_failed_at_render_shows_its_page(tmp_path: Path) -> None:
    run(a_delivery_whose_attempt_failed_at_render_shows_its_page(tmp_path))


async def a_delivery_whose_attempt_failed_at_render_shows_its_page(tmp_path: Path) -> None:
    hooks = (
        '[[hooks]]\nname = "needs-a-field"\nevents = ["*"]\n'
        'url = "https://93.184.215.14/x"\nbody = "{{ event.data.missing.deeper }}"\n'
    )
    async with console(tmp_path, hooks) as (client, app):
        assert (await client.post(f"/in/{RELAY_TOKEN}", json={"a": 1})).status_code == 200

        delivery = await attempted(client)
        page = await client.get(f"/deliveries/{delivery['id']}")
        assert page.status_code == 200, page.text
        assert "missing" in page.text  # the render error, in the attempt's words
        assert "Nothing was sent" in page.text


def test_the_edit_page_of_a_hook_with_url_credentials_opens(tmp_path: Path) -> None:
    run(the_edit_page_of_a_hook_with_url_credentials_opens(tmp_path))


async def the_edit_page_of_a_hook_with_url_credentials_opens(tmp_path: Path) -> None:
    async with console(tmp_path) as (client, app):
        await make_hook(
            client, name="with-credentials", url="https://user:pa55word@93.184.215.14/catch"
        )
        page = await client.get("/hooks/with-credentials/edit")
        assert page.status_code == 200, page.text
        assert "pa55word" not in page.text


CRM = "SuperSecretToken42"


def test_the_preview_and_the_history_mask_a_transformed_secret(tmp_path: Path) -> None:
    run(the_preview_and_the_history_mask_a_transformed_secret(tmp_path))


async def the_preview_and_the_history_mask_a_transformed_secret(tmp_path: Path) -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, text="ok")

    async with console(tmp_path, extra=f'[secrets]\ncrm = "{CRM}"\n', handler=record) as (
        client,
        app,
    ):
        await make_hook(
            client,
            name="crm",
            url="https://93.184.215.14/catch",
            headers={
                "X-Key": "{{ secrets.crm | reverse }}",
                "X-Low": "{{ secrets.crm | lower }}",
            },
            body="{{ {'cut': secrets.crm[:-1], 'who': event.subject | default('')} }}",
        )
        assert (
            await client.post(f"/in/{RELAY_TOKEN}?subject=u-1", json={"a": 1})
        ).status_code == 200

        delivery = await attempted(client)
        assert sent and sent[0].headers["x-key"] == CRM[::-1]  # the receiver gets the real one
        shown = [
            (await client.get(f"/api/deliveries/{delivery['id']}", headers=api(client))).text,
            (await client.get(f"/deliveries/{delivery['id']}")).text,
            (await client.get("/hooks/crm/edit")).text,
        ]
        for text in shown:
            for form in (CRM, CRM[::-1], CRM.lower(), CRM[:-1]):
                assert form not in text
        assert "[redacted]" in shown[0] and "u-1" in shown[0]
        assert "x-key: [redacted]" in shown[2]  # the preview, masked as the history is


# --- names ----------------------------------------------------------------------------------


def test_names_that_shadow_console_pages_or_hold_line_breaks_are_refused(tmp_path: Path) -> None:
    run(names_that_shadow_console_pages_or_hold_line_breaks_are_refused(tmp_path))


async def names_that_shadow_console_pages_or_hold_line_breaks_are_refused(tmp_path: Path) -> None:
    async with console(tmp_path) as (client, app):
        for name, words in [
            ("new", "taken by a console page (/hooks/new)"),
            ("Preview", "taken by a console page (/hooks/preview)"),
            ("two\nlines", "line break"),
            ("tab\tinside", "line break or a control character"),
            (" padded", "starting with a letter or digit"),
            ("a/b", "letters, digits and spaces"),
        ]:
            answer = await client.post(
                "/api/hooks",
                headers=api(client),
                json={"name": name, "events": ["*"], "url": "https://93.184.215.14/x"},
            )
            assert answer.status_code == 422, (name, answer.text)
            assert words in answer.text, (name, answer.text)
        await make_hook(client, name="Quiz results to Zapier (v2)", url="https://93.184.215.14/x")
        answer = await client.post(
            "/api/relays", headers=api(client), json={"name": "new", "connector": "generic"}
        )
        assert answer.status_code == 422 and "taken by a console page" in answer.text
        form = await client.get("/hooks/new")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        page = await client.post(
            "/hooks/new",
            data={
                "csrf": csrf.group(1),
                "action": "save",
                "name": "new",
                "events": "*",
                "url": "https://93.184.215.14/x",
                "method": "POST",
            },
        )
        assert "taken by a console page" in page.text


def test_hooks_stored_before_the_rule_can_still_be_shown_edited_and_deleted(
    tmp_path: Path,
) -> None:
    run(hooks_stored_before_the_rule_can_still_be_shown_edited_and_deleted(tmp_path))


async def hooks_stored_before_the_rule_can_still_be_shown_edited_and_deleted(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as (client, app):
        parts = app.state.relayhook
        for name in ("new", "two\nlines"):
            spec = {"name": name, "events": ["*"], "url": "https://93.184.215.14/x"}
            assert await parts.store.put_hook(StoredHook(name, "api", spec, None, 0.0), create=True)
        await parts.live.refresh(parts.store)
        listing = (await client.get("/hooks")).text
        assert 'href="/hooks/new/view"' in listing and 'href="/hooks/two%0Alines"' in listing
        for path in ("/hooks/new/view", "/hooks/two%0Alines"):
            page = await client.get(path)
            assert page.status_code == 200 and "93.184.215.14" in page.text, path
        for path in ("/hooks/new/edit", "/hooks/two%0Alines/edit"):
            assert (await client.get(path)).status_code == 200, path
        edited = await client.put(
            "/api/hooks/new",
            headers=api(client),
            json={"name": "new", "events": ["*"], "url": "https://93.184.215.14/y"},
        )
        assert edited.status_code == 200, edited.text
        for name in ("new", "two%0Alines"):
            page = await client.get(f"/hooks/{name}/edit")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf is not None
            gone = await client.post(f"/hooks/{name}/delete", data={"csrf": csrf.group(1)})
            assert gone.status_code == 303, gone.text
        assert parts.live.hooks.keys() == set()
