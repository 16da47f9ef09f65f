"""Change a connector or a hook safely (issue 21, item 3), on every engine: 500 GMetri batches
are kept the way the ingress keeps them; a deliberately changed GMetri connector names exactly
the events it changes (the variables of one deployment dropped, the rules' scene names written
in capitals), the deliveries that would no longer be made and the bodies that would differ;
a changed hook names the deliveries it adds and drops. Nothing is written until `remap`."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from conftest import run

from relayhook.assembly import Parts, assemble
from relayhook.core.connectors import SHIPPED_DIR
from relayhook.core.diffing import diff_json, diff_text
from relayhook.core.events import format_time
from relayhook.diff import apply_connector, connector_from_text, diff_connector, diff_hook, hook_of
from relayhook.intake import Intake
from relayhook.settings import load_settings
from relayhook.store import RequestRecord, Store

BATCHES = 500
TOKEN = "tok-diff-00000000000000"
HOOKS = [
    {
        "name": "Variables to CRM",
        "events": ["gmetri.variables.changed"],
        "url": "https://crm.example.com/in",
        "body": {"who": "{{ event.subject }}"},
    },
    {
        "name": "Rules to Zapier",
        "events": ["gmetri.rule.*"],
        "url": "https://hooks.zapier.com/x",
        "body": {"scene": "{{ event.data.scene_name }}", "token": "{{ secrets.zap }}"},
    },
]


def batch(i: int) -> dict[str, Any]:
    """The i-th GMetri batch: variables, rules or sessions by turn; every fifth from the
    `beta` deployment; rule scenes in lower case on every other row."""
    kind = ("variables", "rules", "session")[i % 3]
    rows = []
    for r in range(2):
        row: dict[str, Any] = {"identifier": f"user{i}-{r}@example.com"}
        if kind == "variables":
            row["variables"] = {"score": i + r, "quizCompleted": r == 1}
        elif kind == "rules":
            scene = f"scene {r}" if (i + r) % 2 else f"SCENE {r}"
            row["rules"] = [
                {
                    "cid": i,
                    "cname": f"Rule {r}",
                    "scene_name": scene,
                    "timestamp": 1_700_000_000_000 + i,
                }
            ]
        else:
            row["session"] = {"uuid": f"s-{i}-{r}", "browser": "CHROME", "created_at": i}
        rows.append(row)
    return {
        "type": kind,
        "data": {"orgSlug": "acme", "depSlug": "beta" if i % 5 == 0 else "prod", "rows": rows},
    }


def changed_connector() -> str:
    text = (SHIPPED_DIR / "gmetri.toml").read_text(encoding="utf-8")
    text = text.replace(
        '''when = "{{ body.type == 'variables' }}"''',
        '''when = "{{ body.type == 'variables' and body.data.depSlug != 'beta' }}"''',
    )
    text = text.replace(
        'data = "{{ rule }}"',
        '''data = "{{ {'cid': rule.cid, 'cname': rule.cname, \
'scene_name': rule.scene_name | upper, 'timestamp': rule.timestamp} }}"''',
    )
    assert text.count("depSlug != 'beta'") == 1 and "| upper" in text
    return text


def expected() -> tuple[set[str], set[str]]:
    """(subjects of the variables events dropped, subjects of the rule events changed)."""
    dropped = {
        f"user{i}-{r}@example.com"
        for i in range(BATCHES)
        for r in range(2)
        if i % 3 == 0 and i % 5 == 0
    }
    changed = {
        f"user{i}-{r}@example.com"
        for i in range(BATCHES)
        for r in range(2)
        if i % 3 == 1 and (i + r) % 2
    }
    return dropped, changed


def gmetri_parts(tmp_path: Path, store: Store) -> Parts:
    config = tmp_path / "relayhook.toml"
    config.write_text(
        f'''
[secrets]
zap = "zap-secret-value-123"

[[relays]]
name = "gmetri-prod"
connector = "gmetri"
token = "{TOKEN}"
secret = "basic-auth-string"
'''
        + "".join(f"\n[[hooks]]\n{toml_hook(h)}" for h in HOOKS)
    )
    return assemble(load_settings(config), store=store)


def toml_hook(hook: dict[str, Any]) -> str:
    return "".join(
        f"{k} = {json.dumps(v) if not isinstance(v, dict) else inline(v)}\n"
        for k, v in hook.items()
    )


def inline(value: dict[str, str]) -> str:
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items()) + " }"


def keep_batches(parts: Parts) -> None:
    run(parts.live.refresh(parts.store, force=True))
    relay = parts.live.relay_named("gmetri-prod")
    intake = Intake(parts.store, parts.live, lambda: uuid.uuid4().hex)
    for i in range(BATCHES):
        record = RequestRecord(
            f"req_{i:04d}",
            "gmetri-prod",
            format_time_at(1_796_306_400 + i),
            "POST",
            "",
            (("content-type", "application/json"),),
            json.dumps(batch(i)).encode(),
            "accepted",
        )
        kept = run(intake.keep(relay, record, may_spool=False))
        assert kept.where == "store" and kept.record.status == "accepted"


def format_time_at(at: float) -> str:
    from datetime import UTC, datetime

    return format_time(datetime.fromtimestamp(at, UTC))


def test_a_changed_connector_names_exactly_the_events_it_changes(
    tmp_path: Path, store: Store
) -> None:
    parts = gmetri_parts(tmp_path, store)
    keep_batches(parts)
    stored_before = run(store.count_deliveries())
    connector = connector_from_text(changed_connector(), [Path(str(SHIPPED_DIR))])
    found = run(diff_connector(parts, connector, last=BATCHES))
    dropped, changed = expected()

    totals = found.totals()
    assert totals["requests_compared"] == BATCHES
    removed = [e for r in found.requests for e in r.removed]
    assert {e.subject for e in removed} == dropped and len(removed) == len(dropped)
    assert {e.type for e in removed} == {"gmetri.variables.changed"}
    assert [e for r in found.requests for e in r.added] == []
    changes = [(old, fields) for r in found.requests for old, _, fields in r.changed]
    assert {old.subject for old, _ in changes} == changed and len(changes) == len(changed)
    assert {(f.path, f.before.upper()) for _, fields in changes for f in fields} == {
        ("data.scene_name", "SCENE 0"),
        ("data.scene_name", "SCENE 1"),
    }
    assert all(f.after == f.before.upper() for _, fields in changes for f in fields)
    # a beta variables batch has no event left: the changed connector would reject it
    rejected = {r.request_id for r in found.requests if r.after_error}
    assert rejected == {f"req_{i:04d}" for i in range(BATCHES) if i % 15 == 0}
    assert totals["now_rejected"] == len(rejected) and totals["now_accepted"] == 0
    assert all(
        "no event rule applies" in (r.after_error or "")
        for r in found.requests
        if r.request_id in rejected
    )

    # Deliveries: the CRM hook loses exactly the dropped events; Zapier's bodies change.
    lost = [(k, h) for r in found.requests for k, h in r.deliveries_removed]
    assert {h for _, h in lost} == {"Variables to CRM"} and len(lost) == len(dropped)
    assert totals["deliveries_added"] == 0
    bodies = [b for r in found.requests for b in r.bodies if b.hook == "Rules to Zapier"]
    assert len(bodies) == len(changed)
    assert all(b.before and b.after and "SCENE" in b.after for b in bodies)
    assert all("zap-secret-value-123" not in (b.after or "") for b in bodies)
    assert "[redacted]" in (bodies[0].after or "")
    text = diff_text(found)
    assert f"{len(found.requests)} would change" in text
    assert json.loads(json.dumps(diff_json(found)))["totals"] == totals

    # Nothing was written by the diff; remap writes the changed events, once.
    assert run(store.count_deliveries()) == stored_before
    lines = run(apply_connector(parts, connector, found, now=1_796_400_000.0))
    assert len(lines) == len(found.requests)
    assert sum("skipped: the connector rejects it" in line for line in lines) == len(rejected)
    events = run(store.list_events(type="gmetri.rule.triggered", limit=5000))
    of_changed = [e for e in events if e.subject in changed]
    assert len(of_changed) == 2 * len(changed)  # the kept version and the remapped one
    assert sum(e.data["scene_name"].startswith("SCENE") for e in of_changed) == len(changed)
    again = run(diff_connector(parts, connector, last=BATCHES))
    assert again.totals()["events_changed"] == len(changed)  # still: the kept ones differ


def test_a_changed_hook_names_the_deliveries_it_adds_and_drops(
    tmp_path: Path, store: Store
) -> None:
    parts = gmetri_parts(tmp_path, store)
    keep_batches(parts)
    hook = hook_of(
        {
            **HOOKS[0],
            "when": "{{ event.data.quizCompleted }}",
            "body": {"who": "{{ event.subject }}", "score": "{{ event.data.score }}"},
        }
    )
    found = run(diff_hook(parts, hook, last=100))
    assert found.compared == 100
    dropped = [k for r in found.requests for k, _ in r.deliveries_removed]
    kept_bodies = [b for r in found.requests for b in r.bodies if b.after is not None]
    # of the 100 newest batches, the variables ones: row 0 (quizCompleted false) is dropped,
    # row 1's body gains its score
    variables = [i for i in range(BATCHES - 100, BATCHES) if i % 3 == 0]
    assert len(dropped) == len(variables)
    assert all(" user" in k and "-0@example.com" in k for k in dropped)
    assert len(kept_bodies) == len(variables)
    assert all('"score"' in (b.after or "") for b in kept_bodies)
    new = run(diff_hook(parts, hook_of({**HOOKS[0], "name": "Brand new"}), last=30))
    assert sum(len(r.deliveries_added) for r in new.requests) == 2 * len(
        [i for i in range(BATCHES - 30, BATCHES) if i % 3 == 0]
    )
