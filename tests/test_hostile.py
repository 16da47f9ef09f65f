"""Hostile input through real sockets: a corpus of bodies no provider should send, fed to every
shipped connector on a running `relayhook serve`, with a real SQLite file.

The rule under test: never a 5xx while the store works, and every request answered anything but
2xx is kept (as `rejected`, byte for byte, with the error it was answered). 401, 404 and 405 keep
nothing by design (README: "What happens to a request"); the corpus authenticates every request,
so none of those may appear, except in the one test that leaves the credentials out.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import RelayConfig, RelayhookProcess, clean_env, http_client, render_config

from relayhook.core.auth import credentials_for
from relayhook.core.connectors import (
    SHIPPED_DIR,
    Connector,
    load_connectors,
)

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "admin-token-hostile-0123456789"
MAX_BODY_BYTES = 1_048_576
CONNECTORS = load_connectors([SHIPPED_DIR])
SHIPPED = sorted(path.stem for path in SHIPPED_DIR.glob("*.toml"))
RELAYS = {
    cid: RelayConfig(
        f"hostile-{cid}", cid, f"tok-hostile-{cid}-000000001", f"secret-{cid}-0123456789"
    )
    for cid in SHIPPED
}
REFUSED = RelayConfig("refused-by-the-store", "generic", "tok-refused-by-the-store-01")

HUGE_INT = "9" * 5000  # past int()'s 4300 digits: a 500 that lost the whole batch
HOSTILE_STRINGS = {
    "lone high surrogate": '"\\ud800"',
    "lone low surrogate": '"\\udfff"',
    "surrogate pair": '"\\ud83d\\ude00"',
    "escaped NUL": '"a\\u0000b"',
    "C1 control and U+2028": '"\\u0085\\u2028"',
}
HOSTILE_NUMBERS = {
    "huge integer": HUGE_INT,
    "huge negative integer": "-" + HUGE_INT,
    "NaN": "NaN",
    "Infinity": "Infinity",
    "1e999": "1e999",
    "-0": "-0",
    "long fraction": "0." + "1" * 5000,
}


def example_of(connector: Connector) -> Any:
    body = connector.example_body()
    return json.loads(body) if body else dict(connector.spec.example_query)


def leaf_count(document: Any, kind: type | tuple[type, ...]) -> int:
    if isinstance(document, dict):
        return sum(leaf_count(item, kind) for item in document.values())
    if isinstance(document, list):
        return sum(leaf_count(item, kind) for item in document)
    return int(isinstance(document, kind) and not isinstance(document, bool))


def with_leaf(
    document: Any, kind: type | tuple[type, ...], token: str, only: int | None = None
) -> bytes:
    """`document` as JSON text with its string (or number) leaves, or only the `only`-th,
    replaced by a raw JSON token: what json.dumps cannot write (lone surrogates, huge integers)
    written as such."""
    marker = "@@LEAF@@"
    seen = 0

    def replace(value: Any) -> Any:
        nonlocal seen
        if isinstance(value, dict):
            return {key: replace(item) for key, item in value.items()}
        if isinstance(value, list):
            return [replace(item) for item in value]
        if isinstance(value, kind) and not isinstance(value, bool):
            seen += 1
            if only is None or seen - 1 == only:
                return marker
        return value

    return json.dumps(replace(document)).replace(f'"{marker}"', token).encode()


NUMBER = (int, float)


def corpus(connector: Connector) -> Iterator[tuple[str, bytes, str]]:
    """(case name, body, content type)."""
    example = example_of(connector)
    text = json.dumps(example).encode()
    for kind, tokens in ((str, HOSTILE_STRINGS), (NUMBER, HOSTILE_NUMBERS)):
        what = "string" if kind is str else "number"
        for name, token in tokens.items():
            yield f"every {what} a {name}", with_leaf(example, kind, token), "application/json"
            for index in range(leaf_count(example, kind)):
                body = with_leaf(example, kind, token, index)
                yield f"{what} {index} a {name}", body, "application/json"
    yield "the example", text, "application/json"
    yield "empty", b"", "application/json"
    yield "whitespace", b" \r\n\t ", "application/json"
    yield "a BOM, then the example", b"\xef\xbb\xbf" + text, "application/json"
    yield "a BOM alone", b"\xef\xbb\xbf", "application/json"
    yield (
        "UTF-16 with its BOM",
        "\ufeff".encode("utf-16-le") + text.decode().encode("utf-16-le"),
        "application/json",
    )
    yield "truncated", text[: len(text) // 2], "application/json"
    yield "bad UTF-8 in a string", text.replace(b'"', b'"\xff\xfe', 2), "application/json"
    yield "an encoded surrogate (CESU)", b'{"a": "\xed\xa0\x80"}', "application/json"
    yield "a raw NUL byte", b'{"a": "x\x00y"}', "application/json"
    yield "raw control characters", b'{"a": "\x01\x1b[31m"}', "application/json"
    yield "nested 100000 deep", b"[" * 100_000 + b"]" * 100_000, "application/json"
    yield "objects nested 900 deep", b'{"a":' * 900 + b"1" + b"}" * 900, "application/json"
    yield "arrays nested 990 deep", b"[" * 990 + b"]" * 990, "application/json"
    yield "a bare string", b'"hello"', "application/json"
    yield "a bare huge integer", HUGE_INT.encode(), "application/json"
    yield "null", b"null", "application/json"
    yield "an empty object", b"{}", "application/json"
    yield "an empty array", b"[]", "application/json"
    yield "duplicate keys", b'{"event": "a", "event": "b"}', "application/json"
    yield "100000 array items", b"[" + b",".join([b"{}"] * 100_000) + b"]", "application/json"
    yield "a 500 KB key", b'{"' + b"k" * 500_000 + b'": 1}', "application/json"
    yield "typographic quotes", "{\u201cevent\u201d: \u201cx\u201d}".encode(), "application/json"
    yield "JavaScript, not JSON", b"{event: 'x', n: undefined}", "application/json"
    yield "Latin-1 text", '{"name": "Jos\u00e9"}'.encode("latin-1"), "application/json"
    yield (
        "form with bad percent-escapes",
        b"a=%ff%fe&b=%ED%A0%80&c=%00&d=%",
        "application/x-www-form-urlencoded",
    )
    yield "form that is binary", bytes(range(256)), "application/x-www-form-urlencoded"
    yield "binary as JSON", bytes(range(256)), "application/json"
    yield "larger than max_body_bytes", b"[" + b" " * MAX_BODY_BYTES + b"]", "application/json"


def credentials(connector: Connector, secret: str, body: bytes) -> dict[str, str]:
    return credentials_for(connector.spec.auth, secret, body, now=time.time())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayhookProcess]:
    config = render_config(
        relays=[*RELAYS.values(), REFUSED],
        admin_token=ADMIN_TOKEN,
        limits={"max_body_bytes": MAX_BODY_BYTES},
    )
    with RelayhookProcess(tmp_path_factory.mktemp("hostile"), config) as process:
        yield process


def stored_request(db: Path, request_id: str) -> tuple[str, bytes, str | None, int] | None:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        row = conn.execute(
            "SELECT status, body, error, truncated FROM requests WHERE id = ?", (request_id,)
        ).fetchone()
    return None if row is None else (row[0], bytes(row[1]), row[2], row[3])


def count_requests(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        count: int = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        return count


def check_kept(
    server: RelayhookProcess, client: httpx.Client, case: str, response: httpx.Response, body: bytes
) -> str:
    """Assert the rule for one answered request; returns a one-line summary."""
    status = response.status_code
    assert status < 500, f"{case}: {status} {response.text[:300]}"
    assert status not in (401, 404, 405), f"{case}: {status} {response.text[:300]}"
    answer = response.json()
    if status == 413 and "request_id" not in answer:
        # A signed relay cannot check a signature over a body it did not read whole: nothing
        # unauthenticated is kept, as with a 401 (README, "What happens to a request").
        assert answer == {"error": f"body is larger than the limit of {MAX_BODY_BYTES} bytes"}
        return f"{status} {answer['error'][:80]}"
    stored = stored_request(server.db_path, answer["request_id"])
    assert stored is not None, f"{case}: {status}, but request {answer['request_id']} not kept"
    kept_status, kept_body, error, truncated = stored
    if status == 413:
        assert truncated and kept_body == body[:MAX_BODY_BYTES], case
    else:
        assert kept_body == body, f"{case}: the body was not kept byte for byte"
    if 200 <= status < 300:
        assert kept_status == "accepted", case
        events = client.get(
            "/api/events",
            params={"request": answer["request_id"]},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert events.status_code == 200, f"{case}: its events cannot be read: {events.text}"
        assert len(events.json()["items"]) == answer["accepted"], case
    else:
        assert kept_status == "rejected" and error == answer["error"], f"{case}: {stored}"
    return f"{status} {answer.get('error', '')[:80]}"


@pytest.mark.parametrize("connector_id", SHIPPED)
def test_hostile_bodies_are_never_a_5xx_and_every_refusal_is_kept(
    server: RelayhookProcess, connector_id: str
) -> None:
    connector = CONNECTORS[connector_id]
    relay = RELAYS[connector_id]
    method = "POST" if "POST" in connector.spec.accept.methods else connector.spec.accept.methods[0]
    outcomes: dict[str, str] = {}
    with http_client(base_url=server.url, timeout=30.0) as client:
        for case, body, content_type in corpus(connector):
            headers = {"Content-Type": content_type, **credentials(connector, relay.secret, body)}
            response = client.request(method, f"/in/{relay.token}", content=body, headers=headers)
            outcomes[case] = check_kept(server, client, case, response, body)
    # The server survived it all and still takes the example.
    assert outcomes["the example"].startswith("200"), outcomes["the example"]
    print(json.dumps(outcomes, indent=1))


@pytest.mark.parametrize("connector_id", ["netmera", "gamify", "generic"])
def test_hostile_query_strings_are_never_a_5xx_and_every_refusal_is_kept(
    server: RelayhookProcess, connector_id: str
) -> None:
    connector = CONNECTORS[connector_id]
    relay = RELAYS[connector_id]
    queries = {
        "bad UTF-8": "trigger=push_click&event=x&user=%ff%fe",
        "an encoded surrogate": "trigger=push_click&event=x&user=%ED%A0%80",
        "NUL": "trigger=push_click&event=x%00&user=%00",
        "a huge integer": f"trigger=push_click&event=x&user={HUGE_INT}&time={HUGE_INT}",
        "a bad time": "trigger=push_click&event=x&time=NaN",
        "a lone surrogate escape": "trigger=push_click&event=%5Cud800&user=%5Cud800",
    }
    with http_client(base_url=server.url, timeout=30.0) as client:
        for case, query in queries.items():
            headers = credentials(connector, relay.secret, b"")
            url = f"{server.url}/in/{relay.token}?{query}"
            response = client.send(httpx.Request("GET", httpx.URL(url), headers=headers))
            check_kept(server, client, case, response, b"")


@pytest.mark.parametrize(
    "connector_id", [c for c in SHIPPED if CONNECTORS[c].spec.auth.scheme != "none"]
)
def test_hostile_bodies_without_credentials_keep_nothing(
    server: RelayhookProcess, connector_id: str
) -> None:
    relay = RELAYS[connector_id]
    with http_client(base_url=server.url) as client:
        before = count_requests(server.db_path)
        for case, body, content_type in list(corpus(CONNECTORS[connector_id]))[:12]:
            response = client.post(
                f"/in/{relay.token}", content=body, headers={"Content-Type": content_type}
            )
            assert response.status_code == 401, f"{case}: {response.status_code}"
        assert count_requests(server.db_path) == before


# --- the cases of issue 7, one by one -----------------------------------------------------------


def gmetri_batch(value: str, rows: int = 500) -> bytes:
    """A GMetri variables batch whose row 250 carries `value` (a raw JSON token)."""
    row = '{"identifier": "user%d@x.com", "variables": {"score": %s}}'
    items = ",".join(row % (n, value if n == 250 else "75") for n in range(rows))
    return (
        b'{"type": "variables", "data": {"orgSlug": "o", "depSlug": "d", "rows": [%s]}}'
        % items.encode()
    )


def events_of(client: httpx.Client, request_id: str) -> list[dict[str, Any]]:
    response = client.get(
        "/api/events",
        params={"request": request_id, "limit": 1000},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def post_gmetri(client: httpx.Client, body: bytes) -> httpx.Response:
    relay = RELAYS["gmetri"]
    return client.post(
        f"/in/{relay.token}",
        content=body,
        headers={"Authorization": f"Basic {relay.secret}", "Content-Type": "application/json"},
    )


def test_a_batch_with_a_5000_digit_integer_is_stored_whole_with_every_digit(
    server: RelayhookProcess,
) -> None:
    # Was: 500 Internal Server Error, nothing kept, the 500-row batch lost.
    with http_client(base_url=server.url) as client:
        response = post_gmetri(client, gmetri_batch(HUGE_INT))
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 500
        events = events_of(client, response.json()["request_id"])
    row = next(e for e in events if e["subject"] == "user250@x.com")
    assert row["data"]["score"] == HUGE_INT  # its digits, as text: none lost


def test_a_batch_with_a_lone_surrogate_is_stored_whole(server: RelayhookProcess) -> None:
    # Was: 503 "send it again", nothing kept (GMetri never sends again).
    with http_client(base_url=server.url) as client:
        response = post_gmetri(client, gmetri_batch('"\\ud800 and \\ud83d\\ude00"'))
        assert response.status_code == 200, response.text
        request_id = response.json()["request_id"]
        events = events_of(client, request_id)
    row = next(e for e in events if e["subject"] == "user250@x.com")
    # A lone surrogate is not text: U+FFFD in the event, as any UTF-8 decoder does; the pair
    # is a real character and stays one. The raw body keeps the original escape.
    assert row["data"]["score"] == "\ufffd and \U0001f600"
    stored = stored_request(server.db_path, request_id)
    assert stored is not None and b'"\\ud800 and ' in stored[1]


def test_events_the_store_refuses_leave_the_request_kept_as_rejected_and_remappable(
    server: RelayhookProcess, tmp_path: Path
) -> None:
    body = b'{"order": "o-1"}'
    # Another program's trigger makes every insert of this relay's events fail inside the
    # store: the events cannot be stored, the raw request still can.
    trigger = (
        "CREATE TRIGGER refuse_events BEFORE INSERT ON events WHEN NEW.relay = "
        f"'{REFUSED.name}' BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
    )
    with contextlib.closing(sqlite3.connect(server.db_path, timeout=10)) as conn:
        conn.execute(trigger)
        conn.commit()
    try:
        with http_client(base_url=server.url) as client:
            response = client.post(
                f"/in/{REFUSED.token}", content=body, headers={"Content-Type": "application/json"}
            )
    finally:
        with contextlib.closing(sqlite3.connect(server.db_path, timeout=10)) as conn:
            conn.execute("DROP TRIGGER refuse_events")
            conn.commit()

    assert response.status_code == 400, response.text
    answer = response.json()
    assert "its events could not be stored" in answer["error"]
    assert "refused by a trigger" in answer["error"]
    stored = stored_request(server.db_path, answer["request_id"])
    assert stored is not None and stored[:3] == ("rejected", body, answer["error"])

    remap = subprocess.run(
        [
            sys.executable,
            "-m",
            "relayhook.cli",
            "--config",
            str(server.config_path),
            "remap",
            "--relay",
            REFUSED.name,
        ],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert remap.returncode == 0, remap.stdout + remap.stderr
    stored = stored_request(server.db_path, answer["request_id"])
    assert stored is not None and stored[0] == "accepted"
