"""`relayhook sign`: a request signed as the provider would sign it, printed as cURL.

    relayhook sign stripe --example "invoice paid" --secret whsec_test
    relayhook sign my-relay payload.json --secret "$SECRET"     # a relay of the config

The signature headers are written as the connector's `auth.sign_headers` says (the header
alone, `prefix` + digest, without it); the timestamp is now. No server is needed: paste the
command to try a relay, or compare its headers with a provider's real request.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path
from typing import Any, TextIO

from relayhook.cli.common import add_config_flag, config_path
from relayhook.core.auth import provider_headers
from relayhook.core.connectors import Connector
from relayhook.core.templating import RenderError
from relayhook.errors import UsageError
from relayhook.settings import load_settings


def now() -> float:
    """The signing time (tests replace it)."""
    return time.time()


def _target(name: str, args: argparse.Namespace) -> tuple[Connector, str]:
    """The connector and the URL to post to: a relay of the config, or a connector."""
    from relayhook.cli.authoring import _find_connector

    config = config_path(args.config)
    if config is not None:
        from relayhook.assembly import load_relays

        settings = load_settings(config)
        _, relays = load_relays(settings)
        for relay in relays.values():
            if relay.name == name:
                return relay.connector, f"{settings.public_url()}/in/{relay.token}"
        base = settings.public_url()
    else:
        base = "http://127.0.0.1:8000"
    return _find_connector(name, args), f"{base}/in/RELAY_TOKEN"


def cmd_sign(args: argparse.Namespace, out: TextIO) -> int:
    from relayhook.cli.authoring import _example

    connector, url = _target(args.target, args)
    method: str
    if args.payload is not None:
        body = Path(args.payload).read_bytes()
        method, query = connector.spec.accept.methods[-1], ""
        headers = {"content-type": "application/json"}
    else:
        example = _example(connector, args.example)
        body, method, query = example.body, example.method, example.query
        headers = dict(example.headers)
        if body and "content-type" not in headers:
            headers["content-type"] = "application/json"
    try:
        signed = provider_headers(
            connector.spec.auth, args.secret, headers, body, query=query, method=method, now=now()
        )
    except RenderError as exc:
        raise UsageError(f"cannot sign this request: {exc}") from exc
    except ValueError as exc:
        raise UsageError(f"cannot sign with this secret: {exc}") from exc
    replaced = {name.lower() for name in signed}  # an example's own signature gives way
    kept = {name: value for name, value in headers.items() if name.lower() not in replaced}
    print(curl(method, url + (f"?{query}" if query else ""), {**kept, **signed}, body), file=out)
    return 0


def curl(method: str, url: str, headers: dict[str, str], body: bytes) -> str:
    """A cURL command that sends exactly these bytes."""
    lines = [f"curl -X {method} {shlex.quote(url)}"]
    lines += [f"  -H {shlex.quote(f'{name}: {value}')}" for name, value in headers.items()]
    if body:
        lines.append(f"  --data-binary {shlex.quote(body.decode('utf-8', 'surrogateescape'))}")
    return " \\\n".join(lines)


def register(sub: Any) -> None:
    sign = sub.add_parser("sign", help="print a request signed as the provider would, as cURL")
    add_config_flag(sign)
    sign.add_argument("target", help="a relay of the config, a connector id or a .toml file")
    sign.add_argument("payload", nargs="?", help="body file; default: the connector's example")
    sign.add_argument("--example", help="which of the connector's examples (by name)")
    sign.add_argument("--secret", required=True, help="the secret to sign with")
    sign.set_defaults(func=cmd_sign)
