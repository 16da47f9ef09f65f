"""`POST /api/diff`: what a changed connector or hook would change over the last kept
requests, behind the admin bearer token. Nothing is written.

    POST /api/diff {"connector": "<the connector's TOML text>", "last": 500}
    POST /api/diff {"hook": {...the keys of a [[hooks]] table...}, "last": 500}
    -> relayhook.core.diffing.diff_json: totals, then each request that would change

A connector or hook that is not valid is 422 with each problem at its field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from relayhook.assembly import Parts
from relayhook.core.connectors import SHIPPED_DIR
from relayhook.core.diffing import diff_json
from relayhook.diff import connector_from_text, diff_connector, diff_hook, hook_of
from relayhook.errors import InvalidError, SpecError
from relayhook.web.api import guard
from relayhook.web.config_api import json_object


def diff_api_routes(parts: Parts, token: str) -> list[Route]:
    guarded = guard(token)

    def folder_of(connector_id: str) -> list[Path]:
        current = parts.connectors.get(connector_id)
        return [current.path.parent if current is not None else Path(str(SHIPPED_DIR))]

    async def diff(request: Request) -> dict[str, Any]:
        data = await json_object(request)
        last = data.get("last")
        if last is not None and (isinstance(last, bool) or not isinstance(last, int)):
            raise InvalidError([SpecError(("last",), "a whole number of requests")])
        if isinstance(data.get("connector"), str):
            connector = connector_from_text(data["connector"], folder_of)
            return diff_json(await diff_connector(parts, connector, last=last))
        if isinstance(data.get("hook"), dict):
            return diff_json(await diff_hook(parts, hook_of(data["hook"]), last=last))
        raise InvalidError(
            [
                SpecError(
                    ("(body)",),
                    'give "connector" (its TOML text) or "hook" (the keys of a [[hooks]] table)',
                )
            ]
        )

    return [Route("/api/diff", guarded(diff), methods=["POST"])]
