"""A first start with no config at all, through a real `relayhook serve` process: the config
it writes keeps the address it was started at, so `relayhook admin password` names the URL the
console is really at, and the banner leads to the console."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from servers import RelayhookProcess, clean_env

from relayhook.settings import load_settings, sample_config


def test_the_sample_config_keeps_the_address_it_was_given(tmp_path: Path) -> None:
    path = tmp_path / "relayhook.toml"
    path.write_text(sample_config(["gmetri"], host="0.0.0.0", port=8610), encoding="utf-8")
    settings = load_settings(path)
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 8610)


def test_serve_port_on_a_first_start_is_the_port_everything_names(tmp_path: Path) -> None:
    with RelayhookProcess(tmp_path, None) as server:
        log = server.log()
        written = load_settings(tmp_path / "relayhook.toml")
        assert written.server.port == server.port
        assert f"{server.url}/hooks/new" in log  # the banner leads to the console
        done = subprocess.run(
            [sys.executable, "-m", "relayhook.cli", "admin", "password"],
            cwd=tmp_path,
            input=b"a-new-console-password\n",
            capture_output=True,
            env=clean_env(),
            timeout=60,
            check=True,
        )
    assert f"sign in at {server.url}/ " in done.stdout.decode()


def test_a_gamify_get_opt_in_without_a_player_reaches_zapier_pabbly_and_slack(
    tmp_path: Path,
) -> None:
    """A subject-less event (a Gamify GET opt-in that names no player) through the presets
    that send `subject`: delivered with `"subject": null`, not dead on an undefined value."""
    from receiver import Receiver
    from servers import RelayConfig, http_client, render_config, render_hooks, render_tables

    with Receiver() as rx:
        hooks = [
            {
                "name": f"Opt-ins to {preset}",
                "events": ["gamify.optin.submitted"],
                "url": f"{rx.url}/{preset}",
                "preset": preset,
            }
            for preset in ("zapier", "pabbly", "slack")
        ]
        config = (
            render_config(
                relays=[
                    RelayConfig("gamify", "gamify", "gamify-token-0123456789", "gamify-secret-0123")
                ]
            )
            + render_tables(delivery={"allow_private_destinations": True, "poll_interval": 0.1})
            + render_hooks(hooks)
        )
        with RelayhookProcess(tmp_path, config) as server, http_client() as client:
            answer = client.get(
                f"{server.url}/in/gamify-token-0123456789",
                params={"event": "Opt-in Submit", "campaign": "spring"},
                headers={"X-Relay-Secret": "gamify-secret-0123"},
            )
            assert answer.status_code < 300, answer.text
            got = {r.path: r for r in rx.wait_for(3, timeout=30)}
    for preset in ("zapier", "pabbly"):
        body = json.loads(got[f"/{preset}"].body)
        assert body["subject"] is None
        assert body["event_type"] == "gamify.optin.submitted"
        assert body["data__campaign"] == "spring"
    assert json.loads(got["/slack"].body)["text"].startswith("gamify.optin.submitted for gamify/")


def test_an_undefined_value_in_a_json_body_is_named_not_a_python_type() -> None:
    from relayhook.core.events import Event
    from relayhook.core.hooks import validate_hook
    from relayhook.core.outbound import render_request
    from relayhook.core.templating import RenderError

    hook = validate_hook(
        {
            "name": "h",
            "events": ["*"],
            "url": "https://example.com/",
            "body": "{{ {'email': event.subject, 'n': 1} }}",
        }
    )
    event = Event(
        id="e1", source="s", type="t", subject=None, time="2026-01-01T00:00:00Z", data={}, relay="r"
    )
    with pytest.raises(RenderError) as caught:
        render_request(hook, event, delivery_id="d", secrets={}, now=0)
    assert "StrictUndefined" not in str(caught.value)
    assert "'subject'" in str(caught.value)
