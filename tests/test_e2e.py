"""End to end through real sockets: `relayhook serve` as a subprocess on 127.0.0.1, a real SQLite
file, httpx (and one raw socket) as the provider, the JSON API to read back what was stored.

Most tests share one server (module scope); each uses its own relay, so their counts do not mix.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import re
import signal
import socket
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import (
    HOST,
    RelayConfig,
    RelayhookProcess,
    StartServer,
    clean_env,
    http_client,
    render_config,
)

from relayhook.core.connectors import SHIPPED_DIR

pytestmark = pytest.mark.slow

EXAMPLES = SHIPPED_DIR / "examples"
ADMIN_TOKEN = "admin-token-e2e-0123456789"
MAX_BODY_BYTES = 4096

GMETRI = RelayConfig(
    "gmetri-main", "gmetri", "tok-gmetri-main-0000001", "gm-secret-9f8e7d6c5b4a3210"
)
GMETRI_LOCKED = RelayConfig(
    "gmetri-locked", "gmetri", "tok-gmetri-locked-00001", "locked-secret-0123456789ab"
)
GMETRI_USERPW = RelayConfig(
    "gmetri-userpw", "gmetri", "tok-gmetri-userpw-00001", "relay-user:pa55-w0rd-0123456789"
)
ARCADE = RelayConfig("arcade", "synthesisvr", "tok-synthesis-arcade-001")
ARCADE_MISC = RelayConfig("arcade-misc", "synthesisvr", "tok-synthesis-misc-00001")
RELAYS = [GMETRI, GMETRI_LOCKED, GMETRI_USERPW, ARCADE, ARCADE_MISC]

# The GMetri variables example exactly as the provider's page prints it (000_c2b68246809c881e.txt):
# JavaScript object syntax, not JSON. GMetri may well send what its own docs show.
GMETRI_VARIABLES_AS_PRINTED = b"""\
{
  type: "variables",
  data: {
    orgSlug: "gmetri",
    depSlug: "gmetridemo",
    rows: [{
      identifier: "amit@gmetri.com",
      variables: {
        score: 100,
        quizCompleted: true,
      }
    }, {
      identifier: "mitul@gmetri.com",
      variables: {
        score: 75,
        quizCompleted: false,
      }
    }]
  }
}"""

# SynthesisVR's create example as its page prints it (002_4f12302c520b0e09.txt): typographic quotes.
SYNTHESIS_CREATE_AS_PRINTED = (
    "[{\u201cuuid\u201d: \u201c41509791-3de8-5bb9-b4fc-a9753da95aad\u201d, \u201caction\u201d:"
    " \u201ccreate\u201d, \u201clocation\u201d: \u201cKamen Test\u201d, \u201cstations\u201d: 1,"
    " \u201ccustomerid\u201d: 7685}]"
).encode()


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def basic(credentials: str) -> dict[str, str]:
    """GMetri's header: `Basic ` and the string typed in its form, as is (not base64)."""
    return {"Authorization": f"Basic {credentials}", "Content-Type": "application/json"}


def relay_path(relay: RelayConfig) -> str:
    return f"/in/{relay.token}"


def synthesis_item(action: str, item_uuid: str, customerid: int = 7685) -> bytes:
    item = {
        "uuid": item_uuid,
        "action": action,
        "location": "Kamen Test",
        "stations": 1,
        "customerid": customerid,
    }
    return json.dumps([item]).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayhookProcess]:
    config = render_config(
        relays=RELAYS, admin_token=ADMIN_TOKEN, limits={"max_body_bytes": MAX_BODY_BYTES}
    )
    with RelayhookProcess(tmp_path_factory.mktemp("e2e"), config) as process:
        yield process


@pytest.fixture
def client(server: RelayhookProcess) -> Iterator[httpx.Client]:
    with http_client(base_url=server.url) as c:
        yield c


def api(client: httpx.Client, path: str, token: str = ADMIN_TOKEN, **params: Any) -> Any:
    response = client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


def find(items: list[dict[str, Any]], id: str) -> dict[str, Any]:
    matches = [item for item in items if item["id"] == id]
    assert len(matches) == 1, f"{id} not in {[item['id'] for item in items]}"
    return matches[0]


# --- ingress: authentication -------------------------------------------------------------------


def test_rules_with_basic_credentials_are_accepted_and_linked_to_their_events(
    client: httpx.Client, server: RelayhookProcess
) -> None:
    response = client.post(
        relay_path(GMETRI), content=example("gmetri-rules.json"), headers=basic(GMETRI.secret)
    )

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer == {"accepted": 4, "duplicates": 0, "request_id": answer["request_id"]}
    request_id = answer["request_id"]

    events = api(client, "/api/events", type="gmetri.rule.triggered", subject="mitul@gmetri.com")[
        "items"
    ]
    assert len(events) == 2
    assert {e["data"]["cname"] for e in events} == {"Rule A", "Rule C"}
    assert {e["source"] for e in events} == {"gmetri/gmetri/gmetridemo"}
    assert {e["request_id"] for e in events} == {request_id}

    requests = api(client, "/api/requests", relay=GMETRI.name)["items"]
    stored = find(requests, request_id)
    assert stored["status"] == "accepted" and stored["error"] is None
    assert len(stored["event_ids"]) == 4
    assert {e["id"] for e in events} <= set(stored["event_ids"])


def test_the_authorization_header_is_stored_redacted(
    client: httpx.Client, server: RelayhookProcess
) -> None:
    response = client.post(
        relay_path(GMETRI), content=example("gmetri-session.json"), headers=basic(GMETRI.secret)
    )
    assert response.status_code == 200, response.text
    request_id = response.json()["request_id"]

    listing = client.get(
        "/api/requests",
        params={"relay": GMETRI.name},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    stored = find(listing.json()["items"], request_id)
    assert ["authorization", "[redacted]"] in stored["headers"]
    assert GMETRI.secret not in listing.text
    files = [server.db_path, server.db_path.with_name(server.db_path.name + "-wal")]
    for path in files:
        if path.exists():
            assert GMETRI.secret.encode() not in path.read_bytes(), path


def test_wrong_or_missing_credentials_get_401_and_only_a_count_is_kept(
    client: httpx.Client,
) -> None:
    def failures() -> int:
        relays = api(client, "/api/relays")["items"]
        (relay,) = [r for r in relays if r["name"] == GMETRI_LOCKED.name]
        count: int = relay["auth_failures"]
        return count

    wrong = client.post(
        relay_path(GMETRI_LOCKED),
        content=example("gmetri-rules.json"),
        headers=basic("not-the-secret-0123456789"),
    )
    assert wrong.status_code == 401, wrong.text
    assert wrong.headers["WWW-Authenticate"].lower().startswith("basic")
    assert failures() == 1

    missing = client.post(
        relay_path(GMETRI_LOCKED),
        content=example("gmetri-rules.json"),
        headers={"Content-Type": "application/json"},
    )
    assert missing.status_code == 401, missing.text
    assert "WWW-Authenticate" in missing.headers
    assert failures() == 2

    assert api(client, "/api/requests", relay=GMETRI_LOCKED.name)["items"] == []
    assert api(client, "/api/events", relay=GMETRI_LOCKED.name)["items"] == []


def test_a_user_password_secret_also_matches_its_base64_encoding(client: httpx.Client) -> None:
    user, password = GMETRI_USERPW.secret.split(":", 1)
    body = example("gmetri-variables.json")
    encoded = client.post(
        relay_path(GMETRI_USERPW),
        content=body,
        auth=(user, password),
        headers={"Content-Type": "application/json"},
    )
    assert encoded.status_code == 200, encoded.text
    assert encoded.json()["accepted"] == 2
    sent = base64.b64encode(GMETRI_USERPW.secret.encode()).decode()
    assert encoded.request.headers["Authorization"] == f"Basic {sent}"

    as_typed = client.post(
        relay_path(GMETRI_USERPW), content=body, headers=basic(GMETRI_USERPW.secret)
    )
    assert as_typed.status_code == 200, as_typed.text

    wrong = client.post(relay_path(GMETRI_USERPW), content=body, auth=(user, "wrong-password"))
    assert wrong.status_code == 401, wrong.text


# --- ingress: SynthesisVR de-duplication ---------------------------------------------------------


def test_a_repeated_synthesisvr_item_is_one_event(client: httpx.Client) -> None:
    create = example("synthesisvr-create.json")
    first = client.post(relay_path(ARCADE), content=create)
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 1 and first.json()["duplicates"] == 0

    again = client.post(relay_path(ARCADE), content=create)
    assert again.status_code == 200, again.text
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 1

    events = api(client, "/api/events", relay=ARCADE.name)["items"]
    assert [e["type"] for e in events] == ["synthesisvr.session.created"]
    assert events[0]["request_id"] == first.json()["request_id"]

    delete = client.post(relay_path(ARCADE), content=example("synthesisvr-delete.json"))
    assert delete.status_code == 200, delete.text
    assert delete.json()["accepted"] == 1

    events = api(client, "/api/events", relay=ARCADE.name)["items"]
    assert sorted(e["type"] for e in events) == [
        "synthesisvr.session.created",
        "synthesisvr.session.deleted",
    ]
    requests = api(client, "/api/requests", relay=ARCADE.name)["items"]
    assert len(requests) == 3
    repeated = find(requests, again.json()["request_id"])
    assert repeated["event_ids"] == repeated["duplicate_ids"] == [events[-1]["id"]]


# --- ingress: what is refused --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relay", "body", "where"),
    [
        pytest.param(
            GMETRI,
            GMETRI_VARIABLES_AS_PRINTED,
            "line 2, column 3",
            id="GMetri variables seed (JavaScript object syntax)",
        ),
        pytest.param(
            ARCADE_MISC,
            SYNTHESIS_CREATE_AS_PRINTED,
            "line 1, column 3",
            id="SynthesisVR create seed (typographic quotes)",
        ),
    ],
)
def test_a_seed_body_as_printed_is_a_clear_400_and_is_kept(
    client: httpx.Client, relay: RelayConfig, body: bytes, where: str
) -> None:
    headers = basic(relay.secret) if relay.secret else {"Content-Type": "application/json"}
    response = client.post(relay_path(relay), content=body, headers=headers)

    assert response.status_code == 400, response.text
    answer = response.json()
    assert set(answer) == {"error", "request_id"}
    assert "not valid JSON" in answer["error"]
    assert where in answer["error"]

    rejected = api(client, "/api/requests", relay=relay.name, status="rejected")["items"]
    stored = find(rejected, answer["request_id"])
    assert stored["status"] == "rejected"
    assert stored["error"] == answer["error"]
    assert stored["body_encoding"] == "utf-8"
    assert stored["body"].encode("utf-8") == body
    assert stored["event_ids"] == []


def test_an_unknown_token_is_404(client: httpx.Client) -> None:
    response = client.post("/in/no-such-relay-token-000", content=b"[]")
    assert response.status_code == 404, response.text


def test_a_method_the_connector_does_not_take_is_405_with_allow(client: httpx.Client) -> None:
    response = client.get(relay_path(GMETRI), headers=basic(GMETRI.secret))
    assert response.status_code == 405, response.text
    assert response.headers["Allow"] == "POST"


def chunks(body: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_chunked_body_within_the_limit_is_accepted(client: httpx.Client) -> None:
    body = synthesis_item("create", str(uuid.uuid4()))
    body += b" " * (MAX_BODY_BYTES - len(body))  # exactly the limit
    response = client.post(relay_path(ARCADE_MISC), content=chunks(body, 700))
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1


def test_a_chunked_body_over_the_limit_is_413(client: httpx.Client) -> None:
    item = json.loads(synthesis_item("create", str(uuid.uuid4())))[0]
    body = json.dumps([item] * 100).encode()
    assert len(body) > MAX_BODY_BYTES
    response = client.post(relay_path(GMETRI), content=chunks(body), headers=basic(GMETRI.secret))
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    answer = response.json()
    assert set(answer) == {"error", "request_id"}

    rejected = api(client, "/api/requests", relay=GMETRI.name, status="rejected")["items"]
    assert find(rejected, answer["request_id"])["error"] == answer["error"]


def raw_exchange(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send `request` as is over a fresh socket; everything the server answers until it closes."""
    received = b""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before the end
            sock.sendall(request)
        with contextlib.suppress(ConnectionResetError):
            for _ in range(1000):  # bounded; each recv waits at most `timeout`
                data = sock.recv(65536)
                if not data:
                    break
                received += data
    return received


def test_a_body_longer_than_its_small_content_length_is_never_accepted(
    server: RelayhookProcess,
) -> None:
    body = synthesis_item("create", str(uuid.uuid4())) * 50  # > MAX_BODY_BYTES
    assert len(body) > MAX_BODY_BYTES
    head = (
        f"POST {relay_path(ARCADE_MISC)} HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
    ).encode()

    answer = raw_exchange(server.port, head + body)

    statuses = [int(s) for s in re.findall(rb"^HTTP/1\.1 (\d{3}) ", answer, re.MULTILINE)]
    assert statuses, answer
    assert statuses[0] in (400, 413), answer
    assert 200 not in statuses, answer
    assert server.running


# --- relayhook remap ----------------------------------------------------------------------------

# uvicorn shuts down gracefully on SIGTERM, then re-raises the signal (exit status -15).
CLEAN_EXIT = (0, -signal.SIGTERM)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relayhook.cli", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


SIGNED_CONNECTOR = """\
id = "signed"
title = "A provider that signs its bodies"
auth = { scheme = "hmac", header = "X-Signature", prefix = "sha256=" }

[[events]]
type = "signed.thing.happened"
source = "signed/{{ relay }}"
data = "{{ body }}"
"""
SIGNED = RelayConfig("signed", "signed", "tok-signed-000000000001", "hmac-key-0123456789abcdef")


def test_an_hmac_relay_keeps_nothing_it_cannot_verify(
    tmp_path: Path, start_server: StartServer
) -> None:
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "signed.toml").write_text(SIGNED_CONNECTOR, encoding="utf-8")
    config = render_config(
        relays=[SIGNED, GMETRI],
        admin_token=ADMIN_TOKEN,
        connectors={"dirs": ["extra"]},
        limits={"max_body_bytes": MAX_BODY_BYTES},
    )
    server = start_server(tmp_path, config)
    body = b'{"thing": 1}'
    signature = "sha256=" + hmac.new(SIGNED.secret.encode(), body, "sha256").hexdigest()
    huge = b'{"pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    with http_client(base_url=server.url) as client:
        signed = client.post(relay_path(SIGNED), content=body, headers={"X-Signature": signature})
        unsigned = client.post(relay_path(SIGNED), content=body)
        tampered = client.post(
            relay_path(SIGNED), content=body + b" ", headers={"X-Signature": signature}
        )
        oversize = client.post(relay_path(SIGNED), content=chunks(huge))
        stored = api(client, "/api/requests", relay=SIGNED.name)["items"]
        # A GMetri body over the limit passed its Basic check first: it is kept, marked cut.
        cut = client.post(relay_path(GMETRI), content=chunks(huge), headers=basic(GMETRI.secret))
        kept = find(
            api(client, "/api/requests", relay=GMETRI.name)["items"], cut.json()["request_id"]
        )
    assert signed.status_code == 200, signed.text
    assert (unsigned.status_code, tampered.status_code) == (401, 401)
    assert oversize.status_code == 413 and "request_id" not in oversize.json()
    assert [r["id"] for r in stored] == [signed.json()["request_id"]]
    assert cut.status_code == 413 and kept["truncated"] is True
    assert len(kept["body"]) == MAX_BODY_BYTES

    assert server.stop() in CLEAN_EXIT, server.log()
    remap = run_cli("--config", str(server.config_path), "remap", cwd=tmp_path)
    assert "cut at the size limit" in remap.stdout  # never mapped as if it were whole
    assert "skipped 1 that cannot be mapped" in remap.stdout
    assert remap.returncode == 0  # a cut request is no mapping failure to retry


# --- relayhook serve with no config ------------------------------------------------------------


def test_serve_without_a_config_writes_one_and_prints_a_relay_per_connector(
    tmp_path: Path, start_server: StartServer
) -> None:
    server = start_server(tmp_path, None)

    written = tomllib.loads((tmp_path / "relayhook.toml").read_text(encoding="utf-8"))
    output = server.log()
    shipped = sorted(path.stem for path in SHIPPED_DIR.glob("*.toml"))
    assert sorted(relay["connector"] for relay in written["relays"]) == shipped
    for relay in written["relays"]:
        url = f"{server.url}/in/{relay['token']}"
        assert f"Relay URL: {url}" in output, output
    gmetri = [relay for relay in written["relays"] if relay["connector"] == "gmetri"][0]
    assert gmetri["secret"] in output, output  # what to paste in GMetri's Basic Auth field
    for connector_id in shipped:
        assert f"== relay {connector_id} (" in output, output

    block = output.split("== relay synthesisvr ", 1)[1]
    synthesis_url = re.search(r"Relay URL: (\S+)", block)
    assert synthesis_url is not None, output
    with http_client() as client:
        response = client.post(synthesis_url.group(1), content=example("synthesisvr-create.json"))
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert (tmp_path / "relayhook.db").is_file()
