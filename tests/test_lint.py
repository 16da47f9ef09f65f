"""`relayhook check` finds the quiet mistakes (relayhook.core.lint): a hook pattern no connector can
emit, a name that never resolves on the examples (even behind `default`), an example that does
not map, a rule no example applies to. And `relayhook map`'s exit codes."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest

from relayhook.cli import main
from relayhook.core.connectors import SHIPPED_DIR, load_connector, load_connectors
from relayhook.core.diagnostics import example_findings, pattern_can_match, unmatched_patterns
from relayhook.core.hooks import build_hooks

CONNECTOR = """\
id = "quiz"
title = "A quiz tool"
example = "quiz.json"
auth = { scheme = "none" }

[[events]]
type = "quiz.answered"
source = "quiz"
data.choices = "{{ body.answers | map(attribute='choice.lable', default='?') | list }}"
data.note = "{{ body.note | default('') }}"
"""
PAYLOAD = {"answers": [{"choice": {"id": 1, "label": "Blue"}}], "note": "hi"}


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def check(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["check", *args], out=out)
    return code, out.getvalue()


def test_a_typo_behind_default_is_reported_with_the_name_it_meant(tmp_path: Path) -> None:
    path = write(tmp_path, "quiz.toml", CONNECTOR)
    (tmp_path / "quiz.json").write_text(json.dumps(PAYLOAD))
    code, out = check(str(path))
    assert code == 1
    assert out == (
        f"{path}:events[0].data.choices:9: `lable` never resolves on the example, "
        "even where a default covers it: did you mean `label`?\n"
    )


def test_the_fixed_name_passes(tmp_path: Path) -> None:
    path = write(tmp_path, "quiz.toml", CONNECTOR.replace("lable", "label"))
    (tmp_path / "quiz.json").write_text(json.dumps(PAYLOAD))
    assert check(str(path)) == (0, "")


def test_a_fallback_no_example_shows_is_reported_until_one_does(tmp_path: Path) -> None:
    path = write(tmp_path, "quiz.toml", CONNECTOR.replace("lable", "label"))
    (tmp_path / "quiz.json").write_text(json.dumps({**PAYLOAD, "note": None} | {"x": 1}))
    (tmp_path / "quiz.json").write_text(json.dumps({"answers": []}))
    code, out = check(str(path))
    assert code == 1 and "`note` never resolves on the example" in out
    assert "(it was looked up among: answers)" in out
    with path.open("a") as file:
        file.write('\n[[examples]]\nname = "with a note"\nbody = "note.json"\n')
    (tmp_path / "note.json").write_text(json.dumps(PAYLOAD))
    assert check(str(path)) == (0, "")


def test_an_example_that_does_not_map_and_a_rule_none_applies_to(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "quiz.toml",
        CONNECTOR.replace("lable", "label")
        + """
[[events]]
name = "never"
when = "{{ body.note == 'other' }}"
type = "quiz.other"
source = "quiz"

[[examples]]
name = "broken"
body = "broken.json"
""",
    )
    (tmp_path / "quiz.json").write_text(json.dumps(PAYLOAD))
    (tmp_path / "broken.json").write_text('{"answers": [}')
    code, out = check(str(path))
    assert code == 1
    assert out.splitlines()[:2] == [
        f"{path}:examples[0]:18: example 'broken' does not map: body is not valid JSON: "
        "Expecting value (line 1, column 14)",
        f"{path}:events[1]:12: rule 'never' applies to none of the examples: add one it "
        "applies to (`[[examples]]`)",
    ]


def test_every_shipped_connector_has_an_example_per_event_type_and_checks_clean() -> None:
    connectors = load_connectors([SHIPPED_DIR])
    for connector in connectors.values():
        assert example_findings(connector) == [], connector.id
    assert check(*map(str, sorted(SHIPPED_DIR.glob("*.toml"))))[0] == 0


# --- hook patterns ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "literal", "prefixes", "expected"),
    [
        ("gmetri.variables.changed", {"gmetri.variables.changed"}, set(), True),
        ("gmetri.variable.changed", {"gmetri.variables.changed"}, set(), False),
        ("gmetri.*", {"gmetri.variables.changed"}, set(), True),
        ("*.changed", {"gmetri.variables.changed"}, set(), True),
        ("gamify.level.completed", set(), {"gamify."}, True),
        ("gamify.*", set(), {"gamify."}, True),
        ("gam*", set(), {"gamify."}, True),
        ("gamfy.level.completed", set(), {"gamify."}, False),
        ("synthesisvr.session.created", set(), {"synthesisvr.session."}, True),
    ],
)
def test_pattern_can_match(
    pattern: str, literal: set[str], prefixes: set[str], expected: bool
) -> None:
    assert pattern_can_match(pattern, literal, prefixes) is expected


def _hooks(*patterns: list[str], relays: list[str] | None = None) -> list[object]:
    raw = [
        {
            "name": f"h{i}",
            "events": events,
            "url": "http://127.0.0.1:9/",
            **({"relays": relays} if relays else {}),
        }
        for i, events in enumerate(patterns)
    ]
    return list(build_hooks(raw).values())


def test_a_typo_in_a_hook_pattern_names_the_nearest_types() -> None:
    connectors = load_connectors([SHIPPED_DIR])
    found = unmatched_patterns(
        _hooks(["gmetri.rule.triggered", "gmetri.variable.changed"]), connectors, []
    )
    assert found == [
        (
            0,
            1,
            "event pattern 'gmetri.variable.changed' matches no event type the "
            "connectors can emit (the hook would never fire); nearest: "
            "gmetri.variables.changed, gmetri.rule.triggered, "
            "gmetri.session.created",
        )
    ]


def test_generic_any_type_counts_only_for_a_hook_that_names_its_relays(tmp_path: Path) -> None:
    from relayhook.relays import Relay

    connectors = load_connectors([SHIPPED_DIR])
    relay = Relay("catch-all", connectors["generic"], "t" * 16, "")
    assert unmatched_patterns(_hooks(["demo.ping"]), connectors, [relay])
    assert not unmatched_patterns(_hooks(["demo.ping"], relays=["catch-all"]), connectors, [relay])


def test_check_fails_on_the_config_with_file_key_line(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "relayhook.toml",
        """\
        [delivery]
        allow_private_destinations = true

        [[relays]]
        name = "gm"
        connector = "gmetri"
        token = "gm-token-0123456789"
        secret = "s3cret-0123456789"

        [[hooks]]
        name = "Quiz results"
        events = ["gmetri.variable.changed"]
        url = "http://127.0.0.1:9/hook"
        """,
    )
    code, out = check(str(config))
    assert code == 1
    assert out.startswith(
        f"{config}:hooks[0].events[0]:12: event pattern "
        "'gmetri.variable.changed' matches no event type"
    )
    config.write_text(config.read_text().replace("variable.", "variables."))
    assert check(str(config)) == (0, "")


# --- map's exit codes ------------------------------------------------------------------------


def test_map_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["map", "gmetri"], out=io.StringIO()) == 0  # mapped
    empty = tmp_path / "empty.json"
    empty.write_text('{"type": "rules", "data": {"orgSlug": "o", "depSlug": "d", "rows": []}}')
    assert main(["map", "gmetri", str(empty)], out=io.StringIO()) == 0  # mapped, no event
    assert main(["map", "synthesisvr", "/dev/null"], out=io.StringIO()) == 1  # refused: a 400
    assert main(["map", "nope"], out=io.StringIO()) == 2  # no such connector
    assert main(["map", str(tmp_path / "missing.toml")], out=io.StringIO()) == 2
    capsys.readouterr()


def test_map_picks_an_example_by_name() -> None:
    out = io.StringIO()
    assert main(["map", "gmetri", "--example", "session"], out=out) == 0
    types = {json.loads(line)["type"] for line in out.getvalue().splitlines()}
    assert types == {"gmetri.session.created"}
    assert main(["map", "gmetri", "--example", "nope"], out=io.StringIO()) == 1


def test_load_connector_of_the_fixtures_used_elsewhere() -> None:
    assert load_connector(SHIPPED_DIR / "netmera.toml").examples()[0].name == "example"
