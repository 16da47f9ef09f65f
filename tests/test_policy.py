"""Issue 20, item 2: one policy table for every route, walked route by route.

The app's routes are listed from the app itself (every family: API, console, ops), so a route
added anywhere without an entry in relayhook.core.policy.POLICY fails here, by name.
"""

from __future__ import annotations

from pathlib import Path

from servers import render_config
from starlette.routing import Mount, Route

from relayhook.core.policy import POLICY, PUBLIC, SIGNED_IN, rule_for
from relayhook.settings import load_settings
from relayhook.web.app import create_app


def routes_of(tmp_path: Path) -> list[tuple[str, str]]:
    path = tmp_path / "relayhook.toml"
    path.write_text(
        render_config(  # every optional family of routes on: OIDC too
            relays=[],
            admin_token="t",
            storage_url=f"sqlite:///{tmp_path / 'r.db'}",
            **{"auth.oidc": {"issuer": "http://127.0.0.1:9", "client_id": "x"}},
        )
    )
    app = create_app(load_settings(path))
    found = []
    for route in app.routes:
        if isinstance(route, Route):
            found += [
                (method, route.path) for method in sorted(route.methods or ()) if method != "HEAD"
            ]
        else:
            assert isinstance(route, Mount) and route.path == "/static", route
    return found


def test_every_route_has_a_policy_entry(tmp_path: Path) -> None:
    missing = [
        f"{method} {path}" for method, path in routes_of(tmp_path) if rule_for(method, path) is None
    ]
    assert not missing, (
        "these routes have no entry in relayhook.core.policy.POLICY (add one, with the least "
        "role that may use it): " + ", ".join(missing)
    )


def test_the_table_names_no_route_that_is_gone(tmp_path: Path) -> None:
    routes = set(routes_of(tmp_path))
    stale = [f"{m} {p}" for m, p in POLICY if (m, p) not in routes]
    assert not stale, "POLICY has entries for routes that do not exist: " + ", ".join(stale)


def test_only_signing_in_and_health_are_public() -> None:
    public = sorted(f"{m} {p}" for (m, p), rule in POLICY.items() if rule == PUBLIC)
    assert public == sorted(
        [
            "GET /healthz",
            "GET /readyz",
            "GET /favicon.ico",
            "GET /signin",
            "POST /signin",
            "POST /signout",
            "GET /signin/oidc",
            "GET /signin/oidc/callback",
            "GET /welcome/{token}",
            "POST /welcome/{token}",
        ]
    )
    own = sorted(p for (_, p), rule in POLICY.items() if rule == SIGNED_IN)
    assert all(p == "/settings" or p.startswith("/settings/") for p in own), own


def test_every_change_needs_more_than_a_viewer() -> None:
    for (method, path), rule in POLICY.items():
        if method != "GET" and rule not in (PUBLIC, SIGNED_IN):
            assert rule != "viewer", f"{method} {path}"


def test_a_route_without_an_entry_is_refused_and_named(tmp_path: Path) -> None:
    import asyncio

    import httpx
    from starlette.responses import PlainTextResponse

    from relayhook.people import People
    from relayhook.web.access import Access, enforce

    async def secret_route(request: object) -> PlainTextResponse:
        return PlainTextResponse("should not be seen")

    async def main() -> None:
        from starlette.applications import Starlette

        people = People(
            None,
            clock=lambda: 0.0,
            new_id=lambda: "x",  # type: ignore[arg-type]
            admin_token="t",
        )
        app = Starlette(routes=enforce([Route("/api/new-thing", secret_route)], Access(people)))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://x"
        ) as client:
            answer = await client.get("/api/new-thing", headers={"Authorization": "Bearer t"})
        assert answer.status_code == 403
        assert "GET /api/new-thing has no entry in the policy table" in answer.json()["error"]

    asyncio.run(main())
