"""Golden tests: a stored request through a shipped connector gives exactly these events.

Every expected event is written out whole (all CloudEvents attributes), so a change in any
connector or in the mapping shows up here as a diff. `received_at` and `new_id` are injected:
the tests are deterministic.
"""

from __future__ import annotations

import functools
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from relayhook.core.auth import verify_example
from relayhook.core.connectors import SHIPPED_DIR, Connector, load_connectors
from relayhook.core.events import keyed_event_id
from relayhook.core.mapping import InboundRequest, MappingError, map_inbound, map_request

EXAMPLES = SHIPPED_DIR / "examples"
PRINTED = Path(__file__).parent / "fixtures" / "seeds"
SEED_DOCS = Path(__file__).resolve().parents[2] / "shared" / "seeds"

RELAY = "golden"
RECEIVED_AT = datetime(2024, 6, 1, 8, 30, tzinfo=UTC)
RECEIVED = "2024-06-01T08:30:00.000Z"
JSON = (("content-type", "application/json"),)
FORM = (("content-type", "application/x-www-form-urlencoded"),)
GMETRI_SOURCE = "gmetri/gmetri/gmetridemo"
SESSION_UUID = "41509791-3de8-5bb9-b4fc-a9753da95aad"


@functools.cache
def shipped() -> dict[str, Connector]:
    return load_connectors([SHIPPED_DIR])


def map_events(
    connector: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    query: str = "",
    headers: tuple[tuple[str, str], ...] = JSON,
) -> list[dict[str, Any]]:
    """The events of one request, in CloudEvents JSON form; unkeyed ids are evt-1, evt-2, ..."""
    counter = itertools.count(1)
    events = map_request(
        shipped()[connector],
        InboundRequest(method, query, headers, body),
        relay=RELAY,
        received_at=RECEIVED_AT,
        new_id=lambda: f"evt-{next(counter)}",
    )
    return [event.to_cloudevent() for event in events]


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def event(
    id: str, source: str, type: str, subject: str | None, time: str, data: Any
) -> dict[str, Any]:
    """One expected event with every attribute; `subject` is left out when there is none."""
    out: dict[str, Any] = {
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": type,
        "subject": subject,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
        "relay": RELAY,
    }
    if subject is None:
        del out["subject"]
    return out


SESSION_ITEM_CREATE = {
    "uuid": SESSION_UUID,
    "action": "create",
    "location": "Kamen Test",
    "stations": 1,
    "customerid": 7685,
}
SESSION_ITEM_DELETE = {**SESSION_ITEM_CREATE, "action": "delete"}
CREATE_ID = keyed_event_id(RELAY, f"{SESSION_UUID}:create")
DELETE_ID = keyed_event_id(RELAY, f"{SESSION_UUID}:delete")
GAMIFY_EXAMPLE = json.loads(example("gamify.json"))
STRIPE_INVOICE = json.loads(example("stripe-invoice-paid.json"))

GOLDEN = [
    pytest.param(
        "gmetri",
        {"body": example("gmetri-variables.json")},
        [
            event(
                "evt-1",
                GMETRI_SOURCE,
                "gmetri.variables.changed",
                "amit@gmetri.com",
                RECEIVED,
                {"score": 100, "quizCompleted": True},
            ),
            event(
                "evt-2",
                GMETRI_SOURCE,
                "gmetri.variables.changed",
                "mitul@gmetri.com",
                RECEIVED,
                {"score": 75, "quizCompleted": False},
            ),
        ],
        id="gmetri variables: one event per row, data = the variables map",
    ),
    pytest.param(
        "gmetri",
        {"body": example("gmetri-rules.json")},
        [
            event(
                "evt-1",
                GMETRI_SOURCE,
                "gmetri.rule.triggered",
                "amit@gmetri.com",
                "1970-01-01T00:02:03.456Z",
                {"cid": 1, "cname": "Rule A", "scene_name": "scene 1", "timestamp": 123456},
            ),
            event(
                "evt-2",
                GMETRI_SOURCE,
                "gmetri.rule.triggered",
                "mitul@gmetri.com",
                "1970-01-01T00:02:03.457Z",
                {"cid": 1, "cname": "Rule A", "scene_name": "scene 2", "timestamp": 123457},
            ),
            event(
                "evt-3",
                GMETRI_SOURCE,
                "gmetri.rule.triggered",
                "mitul@gmetri.com",
                "1970-01-01T00:02:03.458Z",
                {"cid": 2, "cname": "Rule C", "scene_name": "scene 2", "timestamp": 123458},
            ),
            event(
                "evt-4",
                GMETRI_SOURCE,
                "gmetri.rule.triggered",
                "amit@gmetri.com",
                "1970-01-01T00:03:54.561Z",
                {"cid": 10, "cname": "Rule G", "scene_name": "scene 4", "timestamp": 234561},
            ),
        ],
        id="gmetri rules: one event per rule of each row, time from epoch ms",
    ),
    pytest.param(
        "gmetri",
        {"body": example("gmetri-session.json")},
        [
            event(
                "evt-1",
                GMETRI_SOURCE,
                "gmetri.session.created",
                "amit@gmetri.com",
                RECEIVED,
                {
                    "uuid": "12134-dffgs-2345-vfsd",
                    "browser": "CHROME",
                    "platform": "ANDROID",
                    "device_id": "123",
                    "created_at": 123455,
                    "modified_at": 123455,
                },
            ),
            event(
                "evt-2",
                GMETRI_SOURCE,
                "gmetri.session.created",
                "mitul@gmetri.com",
                RECEIVED,
                {
                    "uuid": "12134-dffgs-2345-vfsd",
                    "browser": "CHROME",
                    "platform": "ANDROID",
                    "device_id": "123",
                    "created_at": 123455,
                    "modified_at": 123455,
                },
            ),
            event(
                "evt-3",
                GMETRI_SOURCE,
                "gmetri.session.created",
                "amit@gmetri.com",
                RECEIVED,
                {
                    "uuid": "12134-3214-2345-vfsd",
                    "browser": "CHROME 1",
                    "platform": "IOS",
                    "device_id": "456",
                    "created_at": 123456,
                    "modified_at": 123456,
                },
            ),
        ],
        id="gmetri session: one event per row, data = the session",
    ),
    pytest.param(
        "synthesisvr",
        {"body": example("synthesisvr-create.json")},
        [
            event(
                CREATE_ID,
                f"synthesisvr/{RELAY}",
                "synthesisvr.session.created",
                "7685",
                RECEIVED,
                SESSION_ITEM_CREATE,
            ),
        ],
        id="synthesisvr create: keyed id, subject = customerid as text",
    ),
    pytest.param(
        "synthesisvr",
        {"body": example("synthesisvr-delete.json")},
        [
            event(
                DELETE_ID,
                f"synthesisvr/{RELAY}",
                "synthesisvr.session.deleted",
                "7685",
                RECEIVED,
                SESSION_ITEM_DELETE,
            ),
        ],
        id="synthesisvr delete: keyed id",
    ),
    pytest.param(
        "synthesisvr",
        {"body": json.dumps([SESSION_ITEM_CREATE, SESSION_ITEM_CREATE]).encode()},
        [
            event(
                CREATE_ID,
                f"synthesisvr/{RELAY}",
                "synthesisvr.session.created",
                "7685",
                RECEIVED,
                SESSION_ITEM_CREATE,
            ),
            event(
                CREATE_ID,
                f"synthesisvr/{RELAY}",
                "synthesisvr.session.created",
                "7685",
                RECEIVED,
                SESSION_ITEM_CREATE,
            ),
        ],
        id="synthesisvr same item twice: same id twice (one event once stored)",
    ),
    pytest.param(
        "synthesisvr",
        {"body": json.dumps([SESSION_ITEM_CREATE, SESSION_ITEM_DELETE]).encode()},
        [
            event(
                CREATE_ID,
                f"synthesisvr/{RELAY}",
                "synthesisvr.session.created",
                "7685",
                RECEIVED,
                SESSION_ITEM_CREATE,
            ),
            event(
                DELETE_ID,
                f"synthesisvr/{RELAY}",
                "synthesisvr.session.deleted",
                "7685",
                RECEIVED,
                SESSION_ITEM_DELETE,
            ),
        ],
        id="synthesisvr create and delete in one array: two events",
    ),
    pytest.param(
        "netmera",
        {"method": "GET", "query": "trigger=push_click&user=u-1&campaign=spring", "headers": ()},
        [
            event(
                "evt-1",
                f"netmera/{RELAY}",
                "netmera.push.clicked",
                "u-1",
                RECEIVED,
                {"trigger": "push_click", "user": "u-1", "campaign": "spring"},
            ),
        ],
        id="netmera push click",
    ),
    pytest.param(
        "netmera",
        {"method": "GET", "query": "trigger=message_log&user=u-2&msg=m-9", "headers": ()},
        [
            event(
                "evt-1",
                f"netmera/{RELAY}",
                "netmera.message.logged",
                "u-2",
                RECEIVED,
                {"trigger": "message_log", "user": "u-2", "msg": "m-9"},
            ),
        ],
        id="netmera message log",
    ),
    pytest.param(
        "netmera",
        {"method": "GET", "query": "trigger=geofence&user=u-3&time=1714600000000", "headers": ()},
        [
            event(
                "evt-1",
                f"netmera/{RELAY}",
                "netmera.geofence.triggered",
                "u-3",
                "2024-05-01T21:46:40.000Z",
                {"trigger": "geofence", "user": "u-3", "time": "1714600000000"},
            ),
        ],
        id="netmera geofence with an epoch-ms time",
    ),
    pytest.param(
        "gamify",
        {"body": example("gamify.json")},
        [
            event(
                "evt-1",
                f"gamify/{RELAY}",
                "gamify.level.completed",
                "p-1001",
                "2024-05-01T12:00:00.000Z",
                GAMIFY_EXAMPLE,
            ),
        ],
        id="gamify example: level completed",
    ),
    pytest.param(
        "gamify",
        {"body": b'{"event": "opt-in submit", "player": {"id": "p-7", "email": "e@x.io"}}'},
        [
            event(
                "evt-1",
                f"gamify/{RELAY}",
                "gamify.optin.submitted",
                "p-7",
                RECEIVED,
                {"event": "opt-in submit", "player": {"id": "p-7", "email": "e@x.io"}},
            ),
        ],
        id="gamify opt-in submit",
    ),
    pytest.param(
        "gamify",
        {"body": b'{"event": "high score", "player_id": "p-8", "data": {"score": 9000}}'},
        [
            event(
                "evt-1",
                f"gamify/{RELAY}",
                "gamify.highscore.achieved",
                "p-8",
                RECEIVED,
                {"event": "high score", "player_id": "p-8", "data": {"score": 9000}},
            ),
        ],
        id="gamify high score",
    ),
    pytest.param(
        "gamify",
        {"method": "GET", "query": "event=level_completed&player_id=p-2&level=4", "headers": ()},
        [
            event(
                "evt-1",
                f"gamify/{RELAY}",
                "gamify.level.completed",
                "p-2",
                RECEIVED,
                {"event": "level_completed", "player_id": "p-2", "level": "4"},
            ),
        ],
        id="gamify GET with query parameters",
    ),
    pytest.param(
        "gamify",
        {"body": b'{"player": {"id": "p-1"}, "score": 5}'},
        [
            event(
                "evt-1",
                f"gamify/{RELAY}",
                "gamify.event.received",
                None,
                RECEIVED,
                {"player": {"id": "p-1"}, "score": 5},
            ),
        ],
        id="gamify without an event name: the whole body kept",
    ),
    pytest.param(
        "generic",
        {"body": b'{"order": {"id": "o-17", "total": 42.5}}'},
        [
            event(
                "evt-1",
                f"generic/{RELAY}",
                "generic.webhook.received",
                None,
                RECEIVED,
                {"order": {"id": "o-17", "total": 42.5}},
            ),
        ],
        id="generic JSON object",
    ),
    pytest.param(
        "generic",
        {"body": b'[1, {"b": 2}]'},
        [
            event(
                "evt-1",
                f"generic/{RELAY}",
                "generic.webhook.received",
                None,
                RECEIVED,
                [1, {"b": 2}],
            ),
        ],
        id="generic JSON array: one event",
    ),
    pytest.param(
        "generic",
        {"body": b"a=1&b=2&b=3", "headers": FORM},
        [
            event(
                "evt-1",
                f"generic/{RELAY}",
                "generic.webhook.received",
                None,
                RECEIVED,
                {"a": "1", "b": ["2", "3"]},
            ),
        ],
        id="generic form: a repeated name becomes a list",
    ),
    pytest.param(
        "generic",
        {"method": "GET", "query": "type=shop.order.paid&subject=o-1&total=3", "headers": ()},
        [
            event(
                "evt-1",
                f"generic/{RELAY}",
                "shop.order.paid",
                "o-1",
                RECEIVED,
                {"type": "shop.order.paid", "subject": "o-1", "total": "3"},
            ),
        ],
        id="generic query-only GET, type and subject from the query",
    ),
    pytest.param(
        "generic",
        {"body": b'{"a": 1}', "headers": (*JSON, ("idempotency-key", "k-1"))},
        [
            event(
                keyed_event_id(RELAY, "k-1"),
                f"generic/{RELAY}",
                "generic.webhook.received",
                None,
                RECEIVED,
                {"a": 1},
            ),
        ],
        id="generic Idempotency-Key header: keyed id",
    ),
    pytest.param(
        "generic",
        {"body": b'{"a": 1}', "headers": (*JSON, ("webhook-id", "w-1"))},
        [
            event(
                keyed_event_id(RELAY, "w-1"),
                f"generic/{RELAY}",
                "generic.webhook.received",
                None,
                RECEIVED,
                {"a": 1},
            ),
        ],
        id="generic webhook-id header: keyed id",
    ),
    pytest.param(
        "stripe",
        {"body": example("stripe-invoice-paid.json")},
        [
            event(
                keyed_event_id(RELAY, "evt_1QRsT2LkdIwHu7ixABCDEF12"),
                "stripe/test",
                "stripe.invoice.paid",
                "cus_RKm8Q2pT7ab4Zc",
                "2024-12-01T10:46:40.000Z",
                STRIPE_INVOICE["data"]["object"],
            ),
        ],
        id="stripe invoice.paid: type from the payload, created | epoch_s, keyed by event id",
    ),
    pytest.param(
        "stripe",
        {"body": example("stripe-subscription-created.json")},
        [
            event(
                keyed_event_id(RELAY, "evt_1QRsU8LkdIwHu7ixGHIJKL34"),
                "stripe/test",
                "stripe.customer.subscription.created",
                "cus_RKm8Q2pT7ab4Zc",
                "2024-12-01T10:48:43.000Z",
                json.loads(example("stripe-subscription-created.json"))["data"]["object"],
            ),
        ],
        id="stripe customer.subscription.created",
    ),
    pytest.param(
        "slack",
        {"body": example("slack-message.json")},
        [
            event(
                keyed_event_id(RELAY, "Ev08MFMKH6"),
                "slack/T061EG9R6",
                "slack.message",
                "U2147483697",
                "2024-12-01T10:46:40.000Z",
                json.loads(example("slack-message.json"))["event"],
            ),
        ],
        id="slack message: event_ts, a text with a fraction, read as epoch seconds",
    ),
    pytest.param(
        "slack",
        {"body": example("slack-app-mention.json")},
        [
            event(
                keyed_event_id(RELAY, "Ev0LAN670R"),
                "slack/T061EG9R6",
                "slack.app_mention",
                "U061F7AUR",
                "2024-12-01T10:48:20.000Z",
                json.loads(example("slack-app-mention.json"))["event"],
            ),
        ],
        id="slack app_mention",
    ),
    pytest.param(
        "typeform",
        {"body": example("typeform.json")},
        [
            event(
                keyed_event_id(RELAY, "01JE0TYPEFORM0EXAMPLE00001"),
                "typeform/lT4Z3j",
                "typeform.form_response.submitted",
                "a3a12ec67a1365927098a606107fac15",
                "2024-12-01T10:46:40.000Z",
                {
                    "form": "lT4Z3j",
                    "title": "Book a demo",
                    "hidden": {"utm_source": "newsletter"},
                    "answers": {
                        "name": "Ada Lovelace",
                        "email": "ada@example.com",
                        "plan": {"label": "Pro"},
                        "team_size": 12,
                        "news": True,
                    },
                },
            ),
        ],
        id="typeform answers, a list, become one object keyed by each question's ref",
    ),
]


def test_slack_url_verification_is_answered_with_its_challenge() -> None:
    mapped = map_inbound(
        shipped()["slack"],
        InboundRequest("POST", "", JSON, example("slack-url-verification.json")),
        relay=RELAY,
        received_at=RECEIVED_AT,
        new_id=lambda: "evt-1",
    )
    assert mapped.events == []
    assert mapped.answer is not None
    assert mapped.answer.to_json() == {
        "status": 200,
        "headers": {"content-type": "application/json"},
        "body": '{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}',
    }


@pytest.mark.parametrize("connector", ["stripe", "slack", "typeform"])
def test_the_signed_example_verifies_and_one_changed_byte_does_not(connector: str) -> None:
    """Each signed example carries a signature made as the provider documents it."""
    found = shipped()[connector]
    spec = next(ex for ex in found.spec.examples if ex.secret is not None)
    request = next(ex for ex in found.examples() if ex.name == spec.name)
    assert spec.secret is not None
    headers = dict(request.headers)
    assert verify_example(found.spec.auth, spec.secret, headers, request.body, now=0) is None
    wrong = verify_example(found.spec.auth, spec.secret + "x", headers, request.body, now=0)
    assert wrong is not None and wrong.startswith("wrong signature in ")
    assert (
        verify_example(found.spec.auth, spec.secret, headers, request.body + b" ", now=0)
        is not None
    )


def test_stripe_signature_hex_in_upper_case_passes() -> None:
    found = shipped()["stripe"]
    spec = found.spec.examples[0]
    request = found.examples()[1]
    header = dict(request.headers)["stripe-signature"]
    upper = {
        **dict(request.headers),
        "stripe-signature": header.upper().replace("T=", "t=").replace("V1=", "v1="),
    }
    assert spec.secret is not None
    assert verify_example(found.spec.auth, spec.secret, upper, request.body, now=0) is None


@pytest.mark.parametrize(("connector", "request_args", "expected"), GOLDEN)
def test_golden(connector: str, request_args: dict[str, Any], expected: list[Any]) -> None:
    assert map_events(connector, **request_args) == expected


def test_keyed_ids_are_stable_across_releases() -> None:
    # Stored ids de-duplicate repeats: the derivation must never change, or an item sent again
    # after an upgrade would become a second event.
    assert CREATE_ID == "45ed4801-7162-520b-a6b4-580c08842a55"
    assert keyed_event_id("other-relay", f"{SESSION_UUID}:create") != CREATE_ID


PRINTED_SEEDS = [
    pytest.param(
        "gmetri",
        "gmetri-variables.printed.txt",
        "000_c2b68246809c881e.txt",
        "line 2, column 3",
        id="gmetri variables as printed (unquoted keys)",
    ),
    pytest.param(
        "gmetri",
        "gmetri-rules.printed.txt",
        "000_c2b68246809c881e.txt",
        "line 2, column 3",
        id="gmetri rules as printed",
    ),
    pytest.param(
        "gmetri",
        "gmetri-session.printed.txt",
        "000_c2b68246809c881e.txt",
        "line 2, column 3",
        id="gmetri session as printed (unclosed quote, xyz, missing bracket)",
    ),
    pytest.param(
        "gmetri",
        "gmetri-session.001.printed.txt",
        "001_19cb1b8b79a4edb2.txt",
        "line 2, column 1",
        id="gmetri session, plain-text rendering",
    ),
    pytest.param(
        "synthesisvr",
        "synthesisvr-create.printed.txt",
        "002_4f12302c520b0e09.txt",
        "line 1, column 3",
        id="synthesisvr create as printed (typographic quotes)",
    ),
    pytest.param(
        "synthesisvr",
        "synthesisvr-delete.printed.txt",
        "002_4f12302c520b0e09.txt",
        "line 1, column 3",
        id="synthesisvr delete as printed (typographic quotes)",
    ),
]


@pytest.mark.parametrize(("connector", "fixture", "seed", "where"), PRINTED_SEEDS)
def test_printed_seed_body_is_a_clear_json_error(
    connector: str, fixture: str, seed: str, where: str
) -> None:
    with pytest.raises(MappingError) as caught:
        map_events(connector, (PRINTED / fixture).read_bytes())
    message = str(caught.value)
    assert "body is not valid JSON" in message
    assert where in message
    if connector == "synthesisvr":
        assert "typographic quotes" in message


@pytest.mark.parametrize(("connector", "fixture", "seed", "where"), PRINTED_SEEDS)
def test_printed_seed_body_is_verbatim_from_its_document(
    connector: str, fixture: str, seed: str, where: str
) -> None:
    if not (SEED_DOCS / seed).is_file():
        pytest.skip(f"the seed documents are not at {SEED_DOCS}")
    assert (PRINTED / fixture).read_bytes() in (SEED_DOCS / seed).read_bytes()


GMETRI_RULES_ROWS_NOT_A_LIST = (
    b'{"type": "rules", "data": {"orgSlug": "o", "depSlug": "d", "rows": {"identifier": "x"}}}'
)

BAD_INPUT = [
    pytest.param(
        "synthesisvr",
        {"body": b'{"uuid": "u", "action": "create"}'},
        ["'synthesisvr' takes a JSON array", "got a JSON object"],
        id="a JSON object to synthesisvr, which takes an array",
    ),
    pytest.param(
        "gmetri",
        {"body": b"42"},
        ["not an object or array"],
        id="a scalar JSON body",
    ),
    pytest.param(
        "generic",
        {"body": b'"just text"'},
        ["not an object or array"],
        id="a JSON string body",
    ),
    pytest.param(
        "gmetri",
        {"body": b'{"type": "rules", "data": "\xff\xfe"}'},
        ["not UTF-8", "byte 27"],
        id="invalid UTF-8",
    ),
    pytest.param(
        "gmetri",
        {"body": b'{"data": {"orgSlug": "o", "depSlug": "d", "rows": []}}'},
        ["events[0].when"],
        id="gmetri body without type names the rule's when",
    ),
    pytest.param(
        "gmetri",
        {"body": GMETRI_RULES_ROWS_NOT_A_LIST},
        ["events[1].for[0]", "expected a list"],
        id="gmetri rows that are not a list",
    ),
    pytest.param(
        "gmetri",
        {"body": b'{"type": "achievements", "data": {"rows": []}}'},
        ["no event rule applies", "variables changed", "rule triggered", "session created"],
        id="gmetri unknown type names the rules",
    ),
    pytest.param(
        "netmera",
        {"method": "GET", "query": "trigger=bogus&user=u-1", "headers": ()},
        [
            "no event rule applies",
            "push click (trigger=push_click)",
            "message log (trigger=message_log)",
            "geofence (trigger=geofence)",
        ],
        id="netmera unknown trigger names the rules",
    ),
    pytest.param(
        "generic",
        {"body": b"a=1"},
        ["body is not valid JSON"],
        id="a form body without its content type is read as JSON",
    ),
    pytest.param(
        "gmetri",
        {"body": b"type=rules", "headers": FORM},
        ["body is not valid JSON", "form-encoded, which connector 'gmetri' does not take"],
        id="a form body to a JSON-only connector says so",
    ),
]


@pytest.mark.parametrize(("connector", "request_args", "phrases"), BAD_INPUT)
def test_bad_input_is_a_mapping_error_saying_why(
    connector: str, request_args: dict[str, Any], phrases: list[str]
) -> None:
    with pytest.raises(MappingError) as caught:
        map_events(connector, **request_args)
    for phrase in phrases:
        assert phrase in str(caught.value)
