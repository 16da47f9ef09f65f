"""Issue 20 through real sockets: `relayhook serve` subprocesses on 127.0.0.1, and headless
Chromium (Debian's /usr/bin/chromium) finding elements by role and label.

- in a browser: the admin invites a viewer and an operator; the viewer sees no Reveal, no
  switch and no test send, and a forged form post is refused; the operator switches a hook
  off but cannot edit it; the audit log page shows who did what, and never the relay's secret;
- two web processes on one database (SQLite, PostgreSQL): a disabled person's open session,
  and a revoked API key, are refused by the other process within a second.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi import csrf_of
from servers import RelayhookProcess, StartServer, http_client, render_config, render_tables

pytestmark = pytest.mark.slow
TOKEN = "people-e2e-admin-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def console_password(server: RelayhookProcess) -> str:
    found = re.search(r"Console password \(shown once[^)]*\): (\S+)", server.log())
    assert found, server.log()
    return found.group(1)


def sign_in(client: httpx.Client, base: str, password: str, login: str = "") -> None:
    page = client.get(base + "/signin")
    answer = client.post(
        base + "/signin", data={"csrf": csrf_of(page.text), "login": login, "password": password}
    )
    assert answer.status_code == 303, answer.text[:500]


def invite_and_join(
    admin: httpx.Client, base: str, name: str, role: str, password: str
) -> httpx.Client:
    page = admin.get(base + "/settings/people")
    shown = admin.post(
        base + "/settings/people",
        data={
            "csrf": csrf_of(page.text),
            "name": name,
            "email": f"{name.lower()}@example.com",
            "role": role,
        },
    )
    link = re.search(r'id="one-time-link" type="text" value="([^"]+)"', shown.text)
    assert link, shown.text[:2000]
    path = "/" + link.group(1).split("/", 3)[3]
    person = http_client()
    page = person.get(base + path)
    person.post(
        base + path,
        data={"csrf": csrf_of(page.text), "new_password": password, "new_password_again": password},
    )
    sign_in(person, base, password, f"{name.lower()}@example.com")
    return person


def refused_within(client: httpx.Client, url: str, refused: set[int], limit: float) -> float:
    started = time.monotonic()
    while client.get(url).status_code not in refused:
        took = time.monotonic() - started
        assert took < limit, f"{url} still answered after {took:.2f} s"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_a_disabled_person_and_a_revoked_key_stop_in_another_process(
    tmp_path: Path, start_server: StartServer, request: pytest.FixtureRequest, engine: str
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'shared.db'}"
        if engine == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    config = render_config(
        relays=[], admin_token=TOKEN, storage_url=url, spool={"path": "relayhook.spool"}
    )  # each its own, beside its config
    first = start_server(tmp_path / "one", config, extra_args=["--role", "web"])
    second = start_server(tmp_path / "two", config, extra_args=["--role", "web"])
    with http_client() as admin:
        sign_in(admin, first.url, console_password(first))
        vera = invite_and_join(admin, first.url, "Vera", "viewer", "vera's password 1")
        with http_client(cookies=dict(vera.cookies)) as elsewhere:
            assert elsewhere.get(second.url + "/hooks").status_code == 200
            people = admin.get(first.url + "/api/people", headers=BEARER).json()["people"]
            vera_id = next(p["id"] for p in people if p["name"] == "Vera")
            page = admin.get(first.url + "/settings/people")
            disabled = admin.post(
                first.url + f"/settings/people/{vera_id}/disable", data={"csrf": csrf_of(page.text)}
            )
            assert disabled.status_code == 303
            refused_within(elsewhere, second.url + "/hooks", {303}, 1.0)
        vera.close()

        key = admin.post(
            first.url + "/api/keys", json={"name": "CI", "role": "editor"}, headers=BEARER
        ).json()
        with http_client(headers={"Authorization": f"Bearer {key['token']}"}) as ci:
            assert ci.get(second.url + "/api/hooks").status_code == 200
            assert (
                admin.delete(first.url + f"/api/keys/{key['id']}", headers=BEARER).status_code
                == 204
            )
            assert ci.get(first.url + "/api/hooks").status_code == 401  # this process: at once
            refused_within(ci, second.url + "/api/hooks", {401}, 1.0)
        audit = admin.get(first.url + "/api/audit?limit=100", headers=BEARER).json()["audit"]
        seen = {(a["action"], a["actor_name"]) for a in audit}
        assert ("people.disable", "admin") in seen and ("keys.delete", "[admin] token") in seen
        assert ("signin.success", "Vera") in seen
        assert key["token"] not in str(audit)


sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (scripts/test installs it)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        yield chromium
        chromium.close()


def browser_sign_in(page: Any, base: str, login: str, password: str) -> None:
    page.goto(base + "/signin")
    if login:
        page.get_by_label("E-mail").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    sync_api.expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def test_roles_in_a_browser(tmp_path: Path, start_server: StartServer, browser: Any) -> None:
    expect = sync_api.expect
    config = render_config(relays=[], admin_token=TOKEN) + render_tables(
        delivery={"allow_private_destinations": True}
    )
    server = start_server(tmp_path, config)
    base = server.url
    with http_client(headers=BEARER) as api:
        secret = api.post(base + "/api/relays", json={"name": "vr", "connector": "gmetri"}).json()[
            "secret"
        ]
        assert (
            api.post(
                base + "/api/hooks",
                json={"name": "crm", "events": ["gmetri.*"], "url": "http://127.0.0.1:9/crm"},
            ).status_code
            == 201
        )

    admin = browser.new_context().new_page()
    admin.set_default_timeout(20_000)
    browser_sign_in(admin, base, "", console_password(server))
    links = {}
    for name, role in (("Vera", "viewer"), ("Otto", "operator")):
        admin.goto(base + "/settings/people")
        admin.get_by_label("Name").fill(name)
        admin.get_by_label("E-mail").fill(f"{name.lower()}@example.com")
        admin.get_by_label("Role", exact=True).select_option(role)
        admin.get_by_role("button", name="Invite").click()
        link = admin.get_by_label("One-time link (valid for a day)")
        expect(link).to_be_visible()
        links[name] = link.input_value()

    people = {}
    for name, password in (("Vera", "vera's password 1"), ("Otto", "otto's password 2")):
        page = browser.new_context().new_page()
        page.set_default_timeout(20_000)
        page.goto(links[name])
        page.get_by_label("New password", exact=True).fill(password)
        page.get_by_label("New password again").fill(password)
        page.get_by_role("button", name="Set password").click()
        expect(page.get_by_role("heading", name="Sign in to Relayhook")).to_be_visible()
        browser_sign_in(page, base, f"{name.lower()}@example.com", password)
        people[name] = page

    vera, otto = people["Vera"], people["Otto"]
    vera.goto(base + "/relays/vr")
    expect(vera.get_by_role("heading", name="Relay vr")).to_be_visible()
    expect(vera.get_by_role("button", name="Reveal secret")).to_have_count(0)
    vera.goto(base + "/hooks/crm")
    expect(vera.get_by_role("heading", name="Hook crm")).to_be_visible()
    expect(vera.get_by_role("button", name="Send test event")).to_have_count(0)
    expect(vera.get_by_role("button", name=re.compile("Make inactive"))).to_have_count(0)
    csrf = csrf_of(vera.content())
    forged = vera.request.post(
        base + "/relays/vr/secret", form={"csrf": csrf, "action": "reveal"}, max_redirects=0
    )
    assert forged.status == 403 and secret not in forged.text()
    forged = vera.request.post(
        base + "/hooks/crm/active", form={"csrf": csrf, "active": "off"}, max_redirects=0
    )
    assert forged.status == 403

    otto.goto(base + "/hooks/crm")
    otto.get_by_role("button", name="Make inactive: crm").click()
    expect(otto.get_by_role("button", name="Make active: crm")).to_be_visible()
    expect(otto.get_by_role("link", name="Edit")).to_have_count(0)
    otto.goto(base + "/hooks/crm/edit")
    expect(otto.get_by_role("heading", name="Not allowed")).to_be_visible()

    admin.goto(base + "/relays/vr")
    admin.get_by_role("button", name="Reveal secret").click()
    expect(admin.get_by_label("Secret")).to_have_value(secret)
    admin.goto(base + "/hooks/crm")
    expect(admin.get_by_text(re.compile("Changed by Otto"))).to_be_visible()
    admin.goto(base + "/audit")
    expect(admin.get_by_role("heading", name="Audit log")).to_be_visible()
    rows = admin.get_by_role("row")
    expect(rows.filter(has_text="Otto").filter(has_text="hooks.active")).to_have_count(1)
    expect(rows.filter(has_text="admin").filter(has_text="relays.secret.reveal")).to_have_count(1)
    expect(rows.filter(has_text="Vera").filter(has_text="signin.success")).to_have_count(1)
    assert secret not in admin.content()
    admin.get_by_label("Who").fill("Otto")
    admin.get_by_role("button", name="Filter").click()
    expect(rows.filter(has_text="Vera")).to_have_count(0)
