"""`POST /api/erase {"subject": "ann@example.com"}`: erase a person (relayhook.erase), admin
only (the admin bearer token); the answer is the report. This process's spool is covered."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from relayhook.assembly import Parts
from relayhook.erase import erase
from relayhook.errors import InvalidError, SpecError
from relayhook.web.api import guard
from relayhook.web.config_api import json_object


def erase_api_routes(parts: Parts, token: str) -> list[Route]:
    guarded = guard(token)

    async def erase_subject(request: Request) -> dict[str, Any]:
        subject = (await json_object(request)).get("subject")
        if not isinstance(subject, str):
            raise InvalidError([SpecError(("subject",), "the value to erase, as a text")])
        try:
            report = await erase(parts.store, subject, spool=parts.spool)
        except ValueError as exc:
            raise InvalidError([SpecError(("subject",), str(exc))]) from None
        return report.to_json()

    return [Route("/api/erase", guarded(erase_subject), methods=["POST"])]
