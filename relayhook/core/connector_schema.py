"""The connector schema: pydantic models, the one source of truth.

`connectors/schema.json` is generated from them (`relayhook schema`), `connectors/README.md`
teaches them by example, and `relayhook.core.connectors` loads and compiles files against them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

REQUEST_VARIABLES = ("body", "query", "headers", "method", "relay")
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
BodyFormat = Literal["json-object", "json-array", "form", "query"]

_SCOPE = "Variables in scope: body, query, headers (lower-cased names), method, relay"
_LOOP_SCOPE = _SCOPE + ", the rule's `let` values and the variables of its `for` loops."
_REQUEST_SCOPE = _SCOPE + " and the rule's `let` values (no loop variables)."
_SIGNED_SCOPE = (
    "Variables in scope: body (the raw body as text), headers (lower-cased names), query, method"
)


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BasicAuth(Spec):
    """`Authorization: Basic <credentials>`, where the credentials equal the relay's secret."""

    scheme: Literal["basic"] = Field(
        description="The credentials after `Basic ` equal the relay's secret (constant-time "
        "comparison). A secret in `user:password` form also matches its base64 encoding.",
        examples=["basic"],
    )


class HeaderAuth(Spec):
    """A named header carries the relay's secret."""

    scheme: Literal["header"] = Field(description="A named header equals the secret.")
    header: str = Field(description="The header's name.", examples=["X-Relay-Token"])
    prefix: str = Field(
        default="",
        description="Text before the secret in the header's value.",
        examples=["Bearer "],
    )


class HmacAuth(Spec):
    """A header carries an HMAC, keyed with the relay's secret, of the raw body or of a content
    made from it (a timestamp and the body, ...)."""

    scheme: Literal["hmac"] = Field(
        description="A signature over the exact body bytes, or over `content`."
    )
    header: str = Field(description="The header holding the signature.", examples=["X-Signature"])
    algorithm: Literal["sha1", "sha256", "sha512"] = Field(
        default="sha256", description="The HMAC's hash.", examples=["sha256"]
    )
    encoding: Literal["hex", "base64"] = Field(
        default="hex", description="How the signature is written.", examples=["hex"]
    )
    prefix: str = Field(
        default="",
        description="Text before the signature (without `pattern`).",
        examples=["sha256="],
    )
    pattern: str | None = Field(
        default=None,
        description="A regular expression that finds the signatures in the header's value: "
        "every match is one signature (its first group, or the whole match), and the request is "
        "authentic when any of them matches (several during a secret rotation). Default: the "
        "whole value after `prefix`.",
        examples=["v1=([0-9a-fA-F]+)"],
    )
    content: str | None = Field(
        default=None,
        description="What is signed, a template; default: the raw body. `timestamp` is in "
        "scope when set. " + _SIGNED_SCOPE + ".",
        examples=["{{ timestamp }}.{{ body }}", "v0:{{ headers['x-acme-timestamp'] }}:{{ body }}"],
    )
    timestamp: str | None = Field(
        default=None,
        description="When the provider signed the request, in epoch seconds, a template: a "
        "request whose timestamp is further than `tolerance` from now is refused (a replay). "
        + _SIGNED_SCOPE
        + "; `regex_search` picks it out of a header.",
        examples=[
            "{{ headers['x-acme-timestamp'] }}",
            "{{ headers['acme-signature'] | regex_search('t=([0-9]+)') }}",
        ],
    )
    tolerance: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description="Seconds a `timestamp` may be away from now, either way.",
    )
    secret_format: Literal["text", "whsec"] = Field(
        default="text",
        description="`text`: the key is the secret's UTF-8 bytes (Stripe's `whsec_...` secrets "
        "too: they are used as text); `whsec`: the secret is `whsec_<base64>` (or just the "
        "base64) and the key is the decoded bytes (Standard Webhooks, Svix).",
    )
    sign_headers: dict[str, str] | None = Field(
        default=None,
        description="How the provider writes its signature headers: templates with `signature` "
        "(the encoded digest) and `timestamp` (epoch seconds) in scope. `relayhook sign` sends "
        "these and `relayhook check` signs every example with them and verifies it, so a wrong "
        "header, prefix, pattern or content fails offline. Default: `header` = `prefix` + "
        "signature.",
        examples=[{"Stripe-Signature": "t={{ timestamp }},v1={{ signature }}"}],
    )


class StandardWebhooksAuth(Spec):
    """Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64>`
    (several, space-separated), an HMAC-SHA256 of `id.timestamp.body` keyed with a `whsec_`
    secret, and a timestamp within `tolerance`."""

    scheme: Literal["standard-webhooks"] = Field(
        description="The Standard Webhooks signature scheme (standardwebhooks.com)."
    )
    tolerance: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description="Seconds `webhook-timestamp` may be away from now, either way.",
    )

    def as_hmac(self) -> HmacAuth:
        """The same check, written as an `hmac` scheme."""
        return HmacAuth(
            scheme="hmac",
            header="webhook-signature",
            algorithm="sha256",
            encoding="base64",
            pattern=r"(?:^|\s)v1,([A-Za-z0-9+/=]+)",
            content="{{ headers['webhook-id'] }}.{{ timestamp }}.{{ body }}",
            timestamp="{{ headers['webhook-timestamp'] }}",
            tolerance=self.tolerance,
            secret_format="whsec",
        )


class NoAuth(Spec):
    """No credentials: the relay URL's secret token is the credential."""

    scheme: Literal["none"] = Field(description="Only the secret path authenticates.")


Auth = Annotated[
    BasicAuth | HeaderAuth | HmacAuth | StandardWebhooksAuth | NoAuth,
    Field(discriminator="scheme"),
]
AUTH_SCHEMES = ("basic", "header", "hmac", "standard-webhooks", "none")


class Accept(Spec):
    """What requests the connector takes; anything else is answered 405 or 400."""

    methods: list[Method] = Field(
        default=["POST"],
        min_length=1,
        description="HTTP methods accepted at the relay URL; others get 405.",
        examples=[["POST"], ["GET", "POST"]],
    )
    formats: list[BodyFormat] = Field(
        default=["json-object"],
        min_length=1,
        description="Body formats accepted: `json-object`, `json-array`, `form` "
        "(application/x-www-form-urlencoded) and `query` (no body; the data is in the query "
        "string). A body in another format is answered 400 and kept as rejected.",
        examples=[["json-object"], ["json-array"], ["query", "form", "json-object"]],
    )


class Answer(Spec):
    """What the provider gets back from a rule that answers (a handshake or a challenge)."""

    status: int = Field(
        default=200,
        ge=200,
        le=499,
        description="The HTTP status, 200 to 499 (never a 5xx: the request was kept).",
    )
    content_type: str | None = Field(
        default=None,
        description="The Content-Type; default: application/json when `body` gives an object, "
        "a list, a number or a boolean, else text/plain; charset=utf-8.",
        examples=["text/plain; charset=utf-8"],
    )
    body: Any = Field(
        default="",
        description="The body: a template (one `{{ expression }}` giving an object is sent as "
        "JSON), or a table of templates (sent as JSON). " + _REQUEST_SCOPE,
        examples=["{{ query['hub.challenge'] }}", {"challenge": "{{ body.challenge }}"}],
    )
    headers: dict[str, str] = Field(
        default={}, description="More headers, as templates. " + _REQUEST_SCOPE
    )


class Example(Spec):
    """One example request: what `relayhook map`, `check` and `send-test` use."""

    name: str | None = Field(default=None, description="A label (`map --example NAME`).")
    body: str | None = Field(
        default=None,
        description="A file of the body, relative to the connector's file; none: no body.",
        examples=["examples/gmetri-variables.json"],
    )
    method: Method | None = Field(
        default=None, description="The method; default: the last of `accept.methods`."
    )
    query: dict[str, str] = Field(default={}, description="Query parameters.")
    headers: dict[str, str] = Field(
        default={},
        description="Headers (a form body needs its Content-Type).",
        examples=[{"Idempotency-Key": "order-1001"}],
    )
    secret: str | None = Field(
        default=None,
        description="The secret the provider signed this example with (a test secret from its "
        "docs, never a real one): its `headers` then carry the provider's own signature, and "
        "`relayhook check` verifies it as it is (at the example's timestamp). A wrong "
        "`secret_format`, hex case or content fails there.",
    )


class EventRule(Spec):
    """One rule: which requests it applies to, how it splits them, and the events it makes."""

    name: str | None = Field(
        default=None, description="A label for errors and docs.", examples=["rule triggered"]
    )
    when: str | None = Field(
        default=None,
        description="A condition template; the rule makes no event where it is false. It is "
        "evaluated as soon as the loop variables it uses are bound. " + _LOOP_SCOPE,
        examples=["{{ body.type == 'rules' }}"],
    )
    let: dict[str, str] = Field(
        default={},
        description="Named values computed once per request, before the loops and before "
        "`when`, usable in every other template of the rule (a long expression written once). "
        "Each sees the ones before it. " + _SCOPE + ".",
        examples=[{"name": "{{ body.event | default(query.event) | default('') }}"}],
    )
    for_: list[str] = Field(
        default=[],
        alias="for",
        description="Nested loops, outermost first, each `name in expression` (or "
        "`a, b in expression`); the expression must give a list. One event per innermost "
        "item. " + _LOOP_SCOPE,
        examples=[["row in body.data.rows", "rule in row.rules"]],
    )
    type: str | None = Field(
        default=None,
        description="The event type, reverse-DNS style (required with `source`, unless the rule "
        "answers or refuses). " + _LOOP_SCOPE,
        examples=["gmetri.rule.triggered", "synthesisvr.session.{{ item.action }}d"],
    )
    source: str | None = Field(
        default=None,
        description="Where the event happened (CloudEvents `source`). " + _LOOP_SCOPE,
        examples=["gmetri/{{ body.data.orgSlug }}/{{ body.data.depSlug }}"],
    )
    subject: str | None = Field(
        default=None,
        description="Whom the event is about (a viewer, a customer, a player); numbers become "
        "strings. " + _LOOP_SCOPE,
        examples=["{{ row.identifier }}"],
    )
    time: str | None = Field(
        default=None,
        description="When it happened: RFC 3339 / ISO 8601 text, or a number of epoch "
        'milliseconds (`| epoch_s` for seconds); a text with a fraction (`"1733050000.000100"`) '
        "is epoch seconds. Absent or empty: the time Relayhook received "
        "the request. " + _LOOP_SCOPE,
        examples=["{{ rule.timestamp }}"],
    )
    data: Any = Field(
        default="{{ body }}",
        description="The event's payload: a template, or a table/array whose strings are "
        "templates. A single `{{ expression }}` keeps its native type. " + _LOOP_SCOPE,
        examples=["{{ row.variables }}", {"rule_id": "{{ rule.cid }}"}],
    )
    key: str | None = Field(
        default=None,
        description="A de-duplication key: events with the same key on the same relay are one "
        "event (the id derives from relay and key). " + _LOOP_SCOPE,
        examples=["{{ item.uuid }}:{{ item.action }}"],
    )
    answer: Answer | None = Field(
        default=None,
        description="Answer the provider with this instead of Relayhook's JSON (a handshake or "
        "a challenge). A rule that answers takes the request whole: the other rules are not "
        "used, the request is kept, and it makes events only if it has `type` and `source`.",
        examples=[{"body": "{{ query.challenge }}"}],
    )
    reject: str | None = Field(
        default=None,
        description="Refuse the request: answered 400 with this message (a template) and kept "
        "as rejected; no rule makes events of it. " + _REQUEST_SCOPE,
        examples=["parameter `user` was sent unfilled"],
    )


FIELD_PATH = re.compile(r"[^.\[\]\s]+(\[\])?(\.[^.\[\]\s]+(\[\])?)*")


class ConnectorSpec(Spec):
    """How one provider's webhook is authenticated, parsed and split into events."""

    id: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="The connector's id; equals the file's name without `.toml`.",
        examples=["gmetri"],
    )
    title: str = Field(description="The provider's name as users know it.", examples=["GMetri"])
    description: str = Field(default="", description="One paragraph: what the provider sends.")
    setup: str = Field(
        default="",
        description="What to paste where in the provider's settings, shown when a relay starts. "
        "A template with `relay_url` and `secret` in scope.",
        examples=["Webhook URL: {{ relay_url }}\nWebhook Basic Auth String: {{ secret }}"],
    )
    accept: Accept = Field(default_factory=Accept, description="Methods and body formats.")
    auth: Auth = Field(description="How a request proves it comes from the provider.")
    example: str | None = Field(
        default=None,
        description="A file of an example body, relative to the connector's file.",
        examples=["examples/gmetri-rules.json"],
    )
    example_query: dict[str, str] = Field(
        default={},
        description="Query parameters of the example request.",
        examples=[{"trigger": "push_click", "user": "u-123"}],
    )
    examples: list[Example] = Field(
        default=[],
        description="More example requests, beside `example`/`example_query`: one for each "
        "event type the connector emits (and each handshake it answers).",
    )
    redact: list[str] = Field(
        default=[],
        description="Fields written over with `[redacted]` as a request comes in, before it "
        "is stored, spooled or mapped, so they never reach the store: `headers.NAME`, "
        "`query.NAME`, or a path in the JSON body (`data.email`; `data.rows[].email` for each "
        "item of a list; `body.headers.x` for a body field named like a header).",
        examples=[["data.email", "headers.x-token"]],
    )
    drop: list[str] = Field(
        default=[],
        description="Fields removed as a request comes in, written as in `redact`.",
        examples=[["data.rows[].phone", "query.token"]],
    )
    events: list[EventRule] = Field(
        min_length=1, description="Event rules; every rule that applies makes its events."
    )

    @field_validator("redact", "drop")
    @classmethod
    def _field_paths(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not FIELD_PATH.fullmatch(path):
                raise ValueError(
                    f"{path!r} is not a field: write `headers.NAME`, `query.NAME` "
                    "or a body path such as `data.email` or `data.rows[].email`"
                )
        return paths
