"""A signed-in client crawls the whole console after a run that leaves every delivery status
(delivered, will retry, gave up, filtered out, paused, cancelled), render and destination
errors, rejected and refused requests and a hostile corpus behind: it follows every link and
submits every GET form. No page answers 5xx, and no page shows raw exception text outside
"Details". Through real sockets to a real `relayhook serve` and a real receiver.
"""

from __future__ import annotations

import html as html_module
import re
from collections import deque
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
import pytest
from receiver import Receiver, Reply
from servers import (
    RelayConfig,
    RelayhookProcess,
    http_client,
    render_config,
    render_tables,
    wait_until,
)
from test_hostile import CONNECTORS, corpus

pytestmark = pytest.mark.slow

ADMIN = "admin-token-crawl-0123456789"
GENERIC = RelayConfig("plain", "generic", "tok-crawl-generic-0000001")
GMETRI = RelayConfig("gm", "gmetri", "tok-crawl-gmetri-00000001", "secret-gmetri-0123456789")
GAMIFY = RelayConfig("gf", "gamify", "tok-crawl-gamify-00000001", "secret-gamify-0123456789")
MAX_PAGES = 400
HOSTILE_CASES = 40
RAW = re.compile(
    r"Traceback|StrictUndefined|Undefined|object'? has no attribute|NoneType|"
    r"KeyError|TypeError|ValueError|RuntimeError|Exception\b|pydantic|"
    r"String should match|List should have|required key is missing"
)


class Page(HTMLParser):
    """The links and GET forms of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.forms: list[tuple[str, list[tuple[str, str]]]] = []
        self._form: tuple[str, list[tuple[str, str]]] | None = None
        self._select: str | None = None
        self._first_option: str | None = None
        self._chosen = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "form" and a.get("method", "get").lower() == "get":
            self._form = (a.get("action", ""), [])
        elif self._form is not None and tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind not in ("submit", "button"):
                self._form[1].append((a["name"], a.get("value", "")))
        elif self._form is not None and tag == "select":
            self._select, self._first_option, self._chosen = a.get("name"), None, False
        elif self._select is not None and tag == "option":
            if self._first_option is None:
                self._first_option = a.get("value", "")
            if "selected" in a and self._form is not None:
                self._form[1].append((self._select, a.get("value", "")))
                self._chosen = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select is not None and self._form is not None:
            if not self._chosen and self._first_option is not None:
                self._form[1].append((self._select, self._first_option))
            self._select = None
        elif tag == "form" and self._form is not None:
            self.forms.append(self._form)
            self._form = None


def visible_text(html: str) -> str:
    """The page without its "Details" (raw text is allowed there), scripts and attributes."""
    html = re.sub(r"<details\b.*?</details>", "", html, flags=re.S)
    html = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
    return html_module.unescape(re.sub(r"<[^>]*>", " ", html))


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[RelayhookProcess]:
    config = render_config(relays=[GENERIC, GMETRI, GAMIFY], admin_token=ADMIN) + render_tables(
        delivery={"allow_private_destinations": True, "poll_interval": 0.1}
    )
    with RelayhookProcess(tmp_path_factory.mktemp("crawl"), config) as process:
        yield process


def api(client: httpx.Client, method: str, path: str, body: Any = None) -> Any:
    response = client.request(method, path, json=body)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def produce_everything(server: RelayhookProcess, rx: Receiver) -> None:
    rx.script("/fail/", Reply(500))
    once = {"retry": {"schedule": [0], "jitter": 0}}
    hooks = [
        {"name": "delivered", "events": ["crawl.*"], "url": rx.url + "/ok/"},
        {
            "name": "will retry",
            "events": ["crawl.*"],
            "url": rx.url + "/fail/",
            "retry": {"schedule": [0, 3600], "jitter": 0},
        },
        {"name": "gives up", "events": ["crawl.*"], "url": rx.url + "/fail/", **once},
        {
            "name": "filters",
            "events": ["crawl.*"],
            "url": rx.url + "/ok/",
            "when": "{{ event.data.n > 100 }}",
        },
        {"name": "paused", "events": ["crawl.*"], "url": rx.url + "/ok/"},
        {"name": "to be deleted", "events": ["crawl.*"], "url": rx.url + "/ok/"},
        {
            "name": "render error",
            "events": ["crawl.*"],
            "url": rx.url + "/{event.data.nothere}",
            **once,
        },
        {
            "name": "body render error",
            "events": ["crawl.*"],
            "url": rx.url + "/ok/",
            "body": {"x": "{{ event.data.nothere.deeper }}"},
            **once,
        },
        {"name": "metadata", "events": ["crawl.*"], "url": "http://{event.data.host}/", **once},
        {
            "name": "opt-ins to pabbly",
            "events": ["gamify.optin.submitted"],
            "url": rx.url + "/pabbly/",
            "preset": "pabbly",
        },
        {
            "name": "rules to zapier",
            "events": ["gmetri.rule.triggered"],
            "url": rx.url + "/zap/",
            "preset": "zapier",
        },
    ]
    with http_client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        for hook in hooks:
            api(c, "POST", "/api/hooks?accept_findings=true", hook)  # broken on purpose
        api(c, "POST", "/api/hooks/paused/deactivate", {})
        api(c, "POST", "/api/hooks/to%20be%20deleted/deactivate", {})
    with http_client() as client:
        generic = f"{server.url}/in/{GENERIC.token}"
        for n in (1, 2):
            client.post(generic + "?type=crawl.thing", json={"n": n, "host": "169.254.169.254"})
        gm = f"{server.url}/in/{GMETRI.token}"
        rules = Path(__file__).parent.parent / "connectors" / "examples" / "gmetri-rules.json"
        client.post(
            gm, content=rules.read_bytes(), headers={"Authorization": f"Basic {GMETRI.secret}"}
        )
        client.post(
            gm,
            content=b'{"type": "rules", "data": {',
            headers={"Authorization": f"Basic {GMETRI.secret}"},
        )  # rejected: not JSON
        client.post(gm, content=b"{}", headers={"Authorization": "Basic wrong"})  # refused
        gf = f"{server.url}/in/{GAMIFY.token}"
        client.get(
            gf,
            params={"event": "Opt-in Submit"},  # no player: no subject
            headers={"X-Relay-Secret": GAMIFY.secret},
        )
        for _, body, content_type in list(corpus(CONNECTORS["generic"]))[:HOSTILE_CASES]:
            client.post(generic, content=body, headers={"Content-Type": content_type})
    with http_client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        wait_until(
            lambda: api(c, "GET", "/api/deliveries?status=dead")["items"],
            timeout=30,
            what="deliveries that gave up",
        )
        wait_until(
            lambda: api(c, "GET", "/api/deliveries?status=failed")["items"],
            timeout=30,
            what="a delivery that will retry",
        )
        api(c, "DELETE", "/api/hooks/to%20be%20deleted")  # its paused deliveries: cancelled
        statuses = {d["status"] for d in api(c, "GET", "/api/deliveries?limit=500")["items"]}
    # (a false condition filters an event out when it is routed: no delivery, an outcome)
    assert {"succeeded", "failed", "dead", "paused", "cancelled"} <= statuses


def fetch(client: httpx.Client, path: str) -> httpx.Response:
    """GET, once more on a fresh connection if the kept-alive one was closed under it."""
    try:
        return client.get(path)
    except httpx.TransportError:
        return client.get(path)


def signed_in(server: RelayhookProcess) -> httpx.Client:
    from test_console_browser import console_password

    client = http_client(base_url=server.url, follow_redirects=True)
    form = client.get("/signin").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    answer = client.post(
        "/signin", data={"csrf": csrf.group(1), "password": console_password(server)}
    )
    assert "Sign out" in answer.text
    return client


def test_every_link_and_get_form_of_the_console(
    server: RelayhookProcess, receiver: Receiver
) -> None:
    produce_everything(server, receiver)
    failures: list[str] = []
    seen: set[str] = set()
    queue: deque[str] = deque(["/"])
    client = signed_in(server)
    try:
        while queue and len(seen) < MAX_PAGES:
            path = queue.popleft()
            if path in seen:
                continue
            seen.add(path)
            try:
                answer = fetch(client, path)
            except httpx.TransportError as exc:
                failures.append(f"{path[:200]} ({len(path)} characters): {exc}")
                continue
            if answer.status_code >= 500:
                failures.append(f"{path}: {answer.status_code}")
                continue
            if "text/html" not in answer.headers.get("content-type", ""):
                continue
            raw = RAW.search(visible_text(answer.text))
            if raw:
                at = raw.start()
                failures.append(
                    f"{path}: raw text {visible_text(answer.text)[at - 80 : at + 80]!r}"
                )
            page = Page()
            page.feed(answer.text)
            targets = page.links + [
                (action or path.split("?")[0]) + "?" + urlencode(fields)
                for action, fields in page.forms
            ]
            for target in targets:
                url = urlsplit(urljoin(server.url + path, target))
                if url.netloc != urlsplit(server.url).netloc:
                    continue
                if url.path.startswith(("/static", "/in/", "/api", "/signout", "/favicon")):
                    continue
                local = url.path + (f"?{url.query}" if url.query else "")
                if local not in seen:
                    queue.append(local)
    finally:
        client.close()
    assert len(seen) > 40, sorted(seen)
    assert not failures, "\n".join(failures)
    print(f"crawled {len(seen)} console pages")
