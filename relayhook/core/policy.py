"""Who may do what: ONE table, by method and route path, for every console page, form and API
route. relayhook.web.access enforces it around every route of the app; a route that is not in
the table is refused to everyone (and tests/test_policy.py names it).

    rule_for("POST", "/api/hooks/{name}/replay")   # "operator"

A rule is a role (the least one allowed), SIGNED_IN (anyone signed in; the view keeps a person
to their own things: their sessions, their keys), PUBLIC (no sign-in: health, sign-in itself)
or OWN_CHECK (the route checks a token of its own: `/metrics` and its `[admin] token`).
"""

from __future__ import annotations

from typing import Literal

from relayhook.core.people import Role

Rule = Role | Literal["public", "signed-in", "own-check"]
PUBLIC: Rule = "public"
SIGNED_IN: Rule = "signed-in"
OWN_CHECK: Rule = "own-check"
V: Rule = "viewer"
OP: Rule = "operator"
E: Rule = "editor"
A: Rule = "admin"

POLICY: dict[tuple[str, str], Rule] = {
    # -- health and metrics
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/favicon.ico"): PUBLIC,  # browsers ask for it, signed in or not
    ("GET", "/metrics"): OWN_CHECK,
    # -- the JSON API: records
    ("GET", "/api/requests"): V,
    ("GET", "/api/requests/{id}/outcomes"): V,
    ("POST", "/api/requests/{id}/run-again"): OP,
    ("GET", "/api/events"): V,
    ("GET", "/api/deliveries"): V,
    ("GET", "/api/deliveries/{id}"): V,
    ("POST", "/api/deliveries/{id}/replay"): OP,
    ("GET", "/api/hooks/{name}/skipped"): V,
    ("POST", "/api/hooks/{name}/replay"): OP,
    ("GET", "/api/problems"): V,
    ("POST", "/api/problems/{id}/acknowledge"): OP,
    ("POST", "/api/problems/{id}/replay"): OP,
    ("GET", "/api/samples"): V,
    ("GET", "/api/samples/{name}"): V,
    ("POST", "/api/samples"): E,
    ("DELETE", "/api/samples/{name}"): E,
    ("POST", "/api/hooks/dry-run"): E,
    # -- the JSON API: configuration
    ("GET", "/api/connectors"): V,
    ("GET", "/api/relays"): V,
    ("POST", "/api/relays"): E,
    ("DELETE", "/api/relays/{name}"): E,
    ("POST", "/api/relays/{name}/secret"): E,  # reveal or rotate
    ("GET", "/api/relays/{name}/shape"): V,
    ("PUT", "/api/relays/{name}/expect"): E,
    ("POST", "/api/diff"): E,
    ("POST", "/api/hooks/check"): E,  # a proposed hook's findings; saves nothing
    ("GET", "/api/diagnostics"): V,  # what a changed connector or hook would do; writes nothing
    ("POST", "/api/erase"): A,
    ("GET", "/api/hooks"): V,
    ("GET", "/api/hooks/{name}"): V,
    ("POST", "/api/hooks"): E,
    ("PUT", "/api/hooks/{name}"): E,
    ("DELETE", "/api/hooks/{name}"): E,
    ("POST", "/api/hooks/{name}/activate"): OP,
    ("POST", "/api/hooks/{name}/deactivate"): OP,
    # -- the JSON API: people, keys, sessions, audit
    ("GET", "/api/sessions"): A,
    ("DELETE", "/api/sessions/{id}"): A,
    ("GET", "/api/keys"): A,
    ("POST", "/api/keys"): A,
    ("DELETE", "/api/keys/{id}"): A,
    ("GET", "/api/people"): A,
    ("GET", "/api/audit"): A,
    # -- the console: signing in
    ("GET", "/signin"): PUBLIC,
    ("POST", "/signin"): PUBLIC,
    ("POST", "/signout"): PUBLIC,
    ("GET", "/signin/oidc"): PUBLIC,
    ("GET", "/signin/oidc/callback"): PUBLIC,
    ("GET", "/welcome/{token}"): PUBLIC,
    ("POST", "/welcome/{token}"): PUBLIC,
    # -- the console: reading
    ("GET", "/"): V,
    ("GET", "/relays"): V,
    ("GET", "/relays/{name}"): V,
    ("GET", "/relays/{name}/view"): V,  # a relay whose name is a word of ours ("new")
    ("GET", "/requests/{id}"): V,
    ("GET", "/deliveries/{id}"): V,
    ("GET", "/hooks"): V,
    ("GET", "/hooks/{name}"): V,
    ("GET", "/hooks/{name}/view"): V,
    ("GET", "/jobs/{id}"): V,
    ("GET", "/problems"): V,
    # -- the console: operating
    ("POST", "/requests/{id}/remap"): OP,
    ("POST", "/requests/{id}/run-again"): OP,
    ("POST", "/deliveries/{id}/replay"): OP,
    ("POST", "/hooks/{name}/active"): OP,
    ("POST", "/hooks/{name}/test"): OP,
    ("POST", "/hooks/{name}/replay"): OP,
    ("POST", "/jobs/{id}/cancel"): OP,
    ("POST", "/problems/{id}/acknowledge"): OP,
    ("POST", "/problems/{id}/replay"): OP,
    # -- the console: editing
    ("GET", "/relays/new"): E,
    ("POST", "/relays/new"): E,
    ("POST", "/relays/{name}/secret"): E,  # reveal or rotate
    ("POST", "/relays/{name}/sample"): E,
    ("POST", "/relays/{name}/delete"): E,
    ("POST", "/requests/{id}/pin"): E,
    ("GET", "/hooks/new"): E,
    ("POST", "/hooks/new"): E,
    ("POST", "/hooks/preview"): E,
    ("GET", "/hooks/{name}/edit"): E,
    ("POST", "/hooks/{name}/edit"): E,
    ("POST", "/hooks/{name}/delete"): E,
    # -- the console: a person's own settings (admin-wide ones are shown to admins only)
    ("GET", "/settings"): SIGNED_IN,
    ("GET", "/search"): V,
    ("GET", "/settings/sessions"): SIGNED_IN,
    ("POST", "/settings/sessions/revoke-others"): SIGNED_IN,
    ("POST", "/settings/sessions/{id}/revoke"): SIGNED_IN,
    ("POST", "/settings/password"): SIGNED_IN,
    ("GET", "/settings/keys"): SIGNED_IN,
    ("POST", "/settings/keys"): SIGNED_IN,  # a key never has more rights than its maker
    ("POST", "/settings/keys/{id}/revoke"): SIGNED_IN,
    # -- the console: admin-wide
    ("GET", "/settings/people"): A,
    ("POST", "/settings/people"): A,
    ("POST", "/settings/people/{id}/disable"): A,
    ("POST", "/settings/people/{id}/enable"): A,
    ("POST", "/settings/people/{id}/reset"): A,
    ("POST", "/settings/people/{id}/role"): A,
    ("GET", "/audit"): A,
    ("POST", "/settings/network"): A,  # public_url, allowed private destinations
    ("GET", "/erase"): A,
    ("POST", "/erase"): A,
}


def rule_for(method: str, path: str) -> Rule | None:
    """The rule of a route (HEAD as GET); None when the table has no entry (refused)."""
    return POLICY.get(("GET" if method == "HEAD" else method, path))
