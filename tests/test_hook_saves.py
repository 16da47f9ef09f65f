"""Saving a hook compiles it once (the form's compile, or the API's, is what the running
configuration takes), in process (tests/web.py)."""

from __future__ import annotations

from typing import Any

import pytest
from servers import RelayConfig
from web import MakeWebApp

from relayhook.core import hooks as core_hooks

GMETRI = RelayConfig("gmetri", "gmetri", "tok-gmetri-000000000001", "gm-secret-0123456789")


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of each hook compiled, in order. The console form's `preview` probe (only the
    events and relays chosen, to find the event its field picker lists) is not the hook."""
    names: list[str] = []
    real = core_hooks.compile_hook

    def counting(spec: Any) -> core_hooks.Hook:
        if spec.name != "preview":
            names.append(spec.name)
        return real(spec)

    monkeypatch.setattr(core_hooks, "compile_hook", counting)
    return names


def test_a_hook_saved_through_the_api_is_compiled_once(
    web_app: MakeWebApp, compiled: list[str]
) -> None:
    app = web_app(relays=[GMETRI])
    compiled.clear()

    app.api(
        "POST",
        "/api/hooks",
        status=201,
        json={"name": "crm", "events": ["gmetri.*"], "url": "https://crm.example/in"},
    )
    assert compiled == ["crm"]
    compiled.clear()
    app.api(
        "PUT",
        "/api/hooks/crm",
        json={"name": "crm", "events": ["gmetri.*"], "url": "https://crm.example/v2"},
    )
    assert compiled == ["crm"]
    assert app.parts.live.hooks["crm"].url.source == "https://crm.example/v2"


def test_a_hook_saved_in_the_console_is_compiled_once(
    web_app: MakeWebApp, compiled: list[str]
) -> None:
    app = web_app(relays=[GMETRI])
    app.sign_in()
    compiled.clear()

    page = app.console_post(
        "/hooks/new",
        {
            "action": "save",
            "name": "crm",
            "events": "gmetri.variables.changed",
            "url": "https://crm.example/in",
            "method": "POST",
            "body_mode": "default",
            "body_format": "json",
            "active": "on",
        },
    )

    assert "Hook &#39;crm&#39; is saved" in page.text, page.text[:3000]
    assert compiled == ["crm"]
    assert app.parts.live.hooks["crm"].url.source == "https://crm.example/in"
