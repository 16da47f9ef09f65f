"""Issue 20: people with roles, API keys with scopes, the audit log, in process on both engines.

Through the ASGI app over a real SQLite file or the real PostgreSQL: invites and their one-time
links, the roles enforced in the API and the console (no button, and a forged form post refused),
a disabled person's session refused by another app on the same database (another process's view)
within a second, API keys revoked at once, and every action in the audit log with its actor and
without a secret. Through real servers and a browser: test_people_e2e.py.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi import BEARER, TOKEN, client_of, csrf_of, in_process, post_form, sign_in
from conftest import ENGINES, run
from servers import render_config

from relayhook.people import CHECK_SECONDS
from relayhook.web.app import RelayhookApp

PASSWORDS = {
    "viewer": "viewer password 1",
    "operator": "operator password 2",
    "editor": "editor password 3",
}


@pytest.fixture(params=ENGINES)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'relayhook.db'}"
    return str(request.getfixturevalue("postgres_url"))


def config(storage_url: str, spool: str = "relayhook.spool") -> str:
    return render_config(
        relays=[],
        admin_token=TOKEN,
        storage_url=storage_url,
        delivery={"allow_private_destinations": True},
        spool={"path": spool},
    )


async def setup_config(client: httpx.AsyncClient) -> str:
    """A relay and a hook made by the admin token; the relay's secret (the canary)."""
    relay = await client.post(
        "/api/relays", json={"name": "vr", "connector": "gmetri"}, headers=BEARER
    )
    assert relay.status_code == 201, relay.text
    hook = await client.post(
        "/api/hooks",
        json={"name": "crm", "events": ["gmetri.*"], "url": "http://127.0.0.1:9/crm"},
        headers=BEARER,
    )
    assert hook.status_code == 201, hook.text
    secret: str = relay.json()["secret"]
    return secret


async def invite(admin: httpx.AsyncClient, name: str, role: str) -> str:
    """The admin invites someone in the console; the one-time link shown to the admin."""
    page = await post_form(
        admin,
        "/settings/people",
        {"name": name, "email": f"{name.lower()}@example.com", "role": role},
        page="/settings/people",
    )
    assert page.status_code == 200, page.text[:2000]
    link = re.search(r'id="one-time-link" type="text" value="([^"]+)"', page.text)
    assert link, page.text[:3000]
    return link.group(1)


async def person(
    app: RelayhookApp, admin: httpx.AsyncClient, name: str, role: str
) -> httpx.AsyncClient:
    """Someone invited, who chose a password through the link and signed in."""
    link = await invite(admin, name, role)
    path = "/" + link.split("/", 3)[3]
    browser = client_of(app)
    page = await browser.get(path)
    assert page.status_code == 200 and "Choose a password" in page.text
    chosen = await browser.post(
        path,
        data={
            "csrf": csrf_of(page.text),
            "new_password": PASSWORDS[role],
            "new_password_again": PASSWORDS[role],
        },
    )
    assert chosen.status_code == 303 and chosen.headers["location"] == "/signin"
    again = await browser.get(path)
    assert again.status_code == 404  # once
    signin = await browser.get("/signin")
    answer = await browser.post(
        "/signin",
        data={
            "csrf": csrf_of(signin.text),
            "login": f"{name.lower()}@example.com",
            "password": PASSWORDS[role],
        },
    )
    assert answer.status_code == 303, answer.text[:1000]
    return browser


async def audit_lines(app: RelayhookApp) -> list[Any]:
    lines: list[Any] = await app.state.relayhook.store.list_audit(limit=500)
    return lines


def test_roles_in_the_api_and_the_console(tmp_path: Path, storage_url: str) -> None:
    async def main() -> None:
        async with in_process(tmp_path, config(storage_url)) as (app, admin):
            secret = await setup_config(admin)
            assert (await sign_in(admin)).status_code == 303
            viewer = await person(app, admin, "Vera", "viewer")
            operator = await person(app, admin, "Otto", "operator")
            editor = await person(app, admin, "Edda", "editor")

            # a viewer reads, sees no Replay, Edit or Reveal, and a forged post is refused
            hook_page = await viewer.get("/hooks/crm")
            assert hook_page.status_code == 200
            assert "Send test event" not in hook_page.text and ">Edit<" not in hook_page.text
            assert "Make inactive" not in hook_page.text and "Delete hook" not in hook_page.text
            relay_page = await viewer.get("/relays/vr")
            assert "Reveal secret" not in relay_page.text and secret not in relay_page.text
            token = csrf_of(hook_page.text)
            forged = await viewer.post("/hooks/crm/replay", data={"csrf": token, "status": "dead"})
            assert forged.status_code == 403 and "operator" in forged.text
            reveal = await viewer.post(
                "/relays/vr/secret", data={"csrf": token, "action": "reveal"}
            )
            assert reveal.status_code == 403 and secret not in reveal.text
            assert (await viewer.get("/settings/people")).status_code == 403

            # an operator replays and switches, but cannot edit or reveal
            shown = (await operator.get("/hooks/crm")).text
            assert "Send test event" in shown and "Make inactive" in shown
            assert ">Edit<" not in shown
            asked = await post_form(
                operator, "/hooks/crm/replay", {"status": "dead"}, page="/hooks/crm"
            )
            assert asked.status_code == 200, asked.text[:500]  # nothing to replay: a question
            switched = await post_form(
                operator, "/hooks/crm/active", {"active": "off"}, page="/hooks/crm"
            )
            assert switched.status_code == 303
            assert (await operator.get("/hooks/crm/edit")).status_code == 403
            reveal = await post_form(
                operator, "/relays/vr/secret", {"action": "reveal"}, page="/relays/vr"
            )
            assert reveal.status_code == 403

            # an editor reveals the secret
            reveal = await post_form(
                editor, "/relays/vr/secret", {"action": "reveal"}, page="/relays/vr"
            )
            assert reveal.status_code == 200 and secret in reveal.text

            # a person sees their own sessions; an admin everyone's, and revokes one
            own = await viewer.get("/settings/sessions")
            assert "Everyone's sessions" not in own.text and "Otto" not in own.text
            everyone = await admin.get("/settings/sessions")
            assert "Revoke the session of Otto" in everyone.text
            store = app.state.relayhook.store
            otto = await store.find_account("otto@example.com")
            [otto_id] = [s.id for s in await store.list_sessions(otto.id, time.time())]
            forged = await post_form(
                viewer, f"/settings/sessions/{otto_id}/revoke", {}, page="/settings/sessions"
            )
            assert forged.status_code == 303 and (await operator.get("/hooks")).status_code == 200
            revoked = await post_form(
                admin, f"/settings/sessions/{otto_id}/revoke", {}, page="/settings/sessions"
            )
            assert revoked.status_code == 303
            assert (await operator.get("/hooks")).status_code == 303

            # the audit log: who did what, and never the secret
            lines = await audit_lines(app)
            text = repr(lines)
            assert secret not in text
            by_action = {(e.action, e.actor_name) for e in lines}
            assert ("relays.secret.reveal", "Edda") in by_action
            assert ("hooks.active", "Otto") in by_action
            assert ("hooks.replay", "Otto") not in by_action  # only asked: nothing was done
            assert ("signin.success", "Vera") in by_action
            assert ("people.create", "admin") in by_action
            assert ("relays.create", "[admin] token") in by_action
            welcomes = [e for e in lines if e.action == "welcome"]
            assert len(welcomes) == 3 and all(e.target == "" for e in welcomes)
            assert "/welcome/" not in text.replace("'route': 'POST /welcome/{token}'", "")
            refused = [e for e in lines if e.actor_name == "Vera" and e.action == "hooks.replay"]
            assert not refused  # refused before it ran: not an action taken
            relay_page = await admin.get("/relays/vr")
            assert "Changed by Edda" not in relay_page.text  # a reveal changes nothing
            assert "Changed by [admin] token" in relay_page.text
            switch = next(e for e in lines if e.action == "hooks.active")
            assert switch.detail["before"]["active"] and not switch.detail["after"]["active"]
            assert "Changed by Otto" in (await viewer.get("/hooks/crm")).text

    run(main())


def test_sign_in_failures_and_throttling_are_audited(tmp_path: Path, storage_url: str) -> None:
    async def main() -> None:
        async with in_process(tmp_path, config(storage_url)) as (app, client):
            for _ in range(6):
                page = await client.get("/signin")
                await client.post(
                    "/signin",
                    data={
                        "csrf": csrf_of(page.text),
                        "login": "nobody@example.com",
                        "password": "a wrong password",
                    },
                )
            actions = [e.action for e in (await audit_lines(app))]
            assert "signin.failure" in actions and "signin.throttled" in actions
            assert "a wrong password" not in repr(await audit_lines(app))

    run(main())


def test_a_disabled_person_is_refused_by_another_process(tmp_path: Path, storage_url: str) -> None:
    async def main() -> None:
        async with in_process(tmp_path, config(storage_url)) as (app, admin):
            assert (await sign_in(admin)).status_code == 303
            viewer = await person(app, admin, "Vera", "viewer")
            cookies = dict(viewer.cookies)
            (tmp_path / "two").mkdir()  # its own spool; the same database
            async with in_process(
                tmp_path / "two", config(storage_url, "two.spool"), password=None
            ) as (other, _):
                async with client_of(other, cookies=cookies) as elsewhere:
                    assert (await elsewhere.get("/hooks")).status_code == 200
                    people = (await admin.get("/api/people", headers=BEARER)).json()["people"]
                    vera = next(p for p in people if p["name"] == "Vera")
                    answer = await post_form(
                        admin, f"/settings/people/{vera['id']}/disable", {}, page="/settings/people"
                    )
                    assert answer.status_code == 303
                    started = time.monotonic()
                    while (await elsewhere.get("/hooks")).status_code == 200:
                        assert time.monotonic() - started < 1.0, "still signed in after 1 s"
                        await __import__("asyncio").sleep(CHECK_SECONDS / 5)
            assert (await viewer.get("/hooks")).status_code == 303  # this process at once
            signin = await viewer.get("/signin")
            again = await viewer.post(
                "/signin",
                data={
                    "csrf": csrf_of(signin.text),
                    "login": "vera@example.com",
                    "password": PASSWORDS["viewer"],
                },
            )
            assert again.status_code == 401
            assert any(
                e.action == "people.disable"
                and e.target == f"people:{vera['id']}"
                or e.action == "people.disable"
                for e in (await audit_lines(app))
            )

    run(main())


def test_api_keys_scopes_and_revocation(tmp_path: Path, storage_url: str) -> None:
    async def main() -> None:
        async with in_process(tmp_path, config(storage_url)) as (app, client):
            await setup_config(client)
            made = await client.post(
                "/api/keys", json={"name": "CI", "role": "viewer"}, headers=BEARER
            )
            assert made.status_code == 201
            key = made.json()
            viewer = {"Authorization": f"Bearer {key['token']}"}
            assert (await client.get("/api/hooks", headers=viewer)).status_code == 200
            replay = await client.post("/api/hooks/crm/replay", headers=viewer)
            assert replay.status_code == 403 and "operator" in replay.json()["error"]
            reveal = await client.post("/api/relays/vr/secret", headers=viewer)
            assert reveal.status_code == 403
            listed = (await client.get("/api/keys", headers=BEARER)).json()["keys"]
            assert listed[0]["last_used_at"] is not None and "token" not in listed[0]
            stored = await app.state.relayhook.store.list_keys()
            assert key["token"] not in repr(stored)

            op = (
                await client.post(
                    "/api/keys",
                    json={"name": "crm only", "role": "operator", "hooks": ["crm"]},
                    headers=BEARER,
                )
            ).json()
            scoped = {"Authorization": f"Bearer {op['token']}"}
            assert (await client.post("/api/hooks/crm/replay", headers=scoped)).status_code == 200
            assert (await client.get("/api/deliveries?hook=crm", headers=scoped)).status_code == 200
            assert (await client.get("/api/deliveries", headers=scoped)).status_code == 403
            assert (await client.post("/api/hooks/other/replay", headers=scoped)).status_code == 403

            assert (
                await client.delete(f"/api/keys/{key['id']}", headers=BEARER)
            ).status_code == 204
            assert (await client.get("/api/hooks", headers=viewer)).status_code == 401

            lines = await audit_lines(app)
            replayed = next(
                e for e in lines if e.action == "hooks.replay" and e.actor_name == "crm only"
            )
            assert replayed.detail["status"] == 200 and replayed.detail["replayed"] == 0
            assert replayed.target == "hook:crm" and replayed.address == "127.0.0.1"
            assert any(e.action == "keys.delete" and e.actor_name == "[admin] token" for e in lines)
            assert key["token"] not in repr(lines) and op["token"] not in repr(lines)
            audit = await client.get("/api/audit?action=keys", headers=BEARER)
            assert {a["action"] for a in audit.json()["audit"]} == {"keys.create", "keys.delete"}
            assert (await client.get("/api/audit", headers=scoped)).status_code == 403

    run(main())
