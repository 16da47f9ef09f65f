"""Change a connector or a hook safely: what the changed version would do differently over the
last kept requests (`relayhook diff`, `POST /api/diff`, the console's "What would change"),
writing nothing; and, once the user saved the connector, `apply_connector` (remap) writes the
events it makes differently for the kept requests it changed.

    connector = connector_from_text(toml_text, base=SHIPPED_DIR)
    found = await diff_connector(parts, connector, last=500)
    print(diff_text(found))
"""

from __future__ import annotations

import shutil
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from relayhook.assembly import Parts, new_uuid
from relayhook.core.connectors import Connector, load_connector
from relayhook.core.diffing import Diff, Side, diff_request, keyed, map_side
from relayhook.core.hooks import Hook, validate_hook
from relayhook.core.routing import route
from relayhook.errors import ConnectorError, InvalidError, NotFoundError, SpecError
from relayhook.remap import request_events
from relayhook.store import RequestRecord, Store

DEFAULT_LAST = 500
MAX_LAST = 5000


def connector_from_text(
    text: str, base: Sequence[Path] | Callable[[str], Sequence[Path]]
) -> Connector:
    """Load a connector from its TOML text, its example files looked up in the folders of
    `base` in turn (the changed file's, the folder of the connector it changes; or a function
    of its id that says them). InvalidError, at the key and with the line, when it is not a
    valid connector."""
    try:
        connector_id = tomllib.loads(text).get("id")
    except tomllib.TOMLDecodeError as exc:
        raise InvalidError([SpecError(("connector",), f"not TOML: {exc}")]) from exc
    if not isinstance(connector_id, str) or not connector_id.replace("-", "").isalnum():
        raise InvalidError([SpecError(("connector",), "a connector needs an `id`")])
    folders = base(connector_id) if callable(base) else base
    with tempfile.TemporaryDirectory(prefix="relayhook-diff-") as folder:
        path = Path(folder) / f"{connector_id}.toml"
        path.write_text(text, encoding="utf-8")
        for name in _example_files(text):
            for folder_of in folders:
                source = (folder_of / name).resolve()
                if source.is_file() and source.is_relative_to(folder_of.resolve()):
                    (path.parent / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, path.parent / name)
                    break
        try:
            return load_connector(path)
        except ConnectorError as exc:  # its place in the text, not in the temporary file
            raise InvalidError(
                [SpecError(("connector", exc.key), f"line {exc.line}: {exc.message}")]
            ) from None


def _example_files(text: str) -> list[str]:
    raw = tomllib.loads(text)
    names = [raw.get("example")] + [
        e.get("body") for e in raw.get("examples", []) if isinstance(e, dict)
    ]
    return [n for n in names if isinstance(n, str) and ".." not in n and not n.startswith("/")]


def last_of(last: int | None) -> int:
    if last is None:
        return DEFAULT_LAST
    if not 1 <= last <= MAX_LAST:
        raise InvalidError([SpecError(("last",), f"between 1 and {MAX_LAST} requests, not {last}")])
    return last


async def kept_requests(store: Store, relays: Sequence[str], last: int) -> list[RequestRecord]:
    """The last `last` kept requests of these relays, newest first."""
    found: list[RequestRecord] = []
    for relay in relays:
        before: str | None = None
        for _ in range(last // 200 + 2):  # bounded: pages of 200
            page = await store.list_requests(relay=relay, limit=min(200, last), before=before)
            found += page
            if len(page) < min(200, last) or len(found) >= last * len(relays):
                break
            before = page[-1].id
    found.sort(key=lambda r: r.received_at, reverse=True)
    return found[:last]


async def diff_connector(parts: Parts, changed: Connector, *, last: int | None = None) -> Diff:
    """The changed connector against the current one of that id, over the last kept requests
    of the relays that use it. NotFoundError when no connector or relay has that id."""
    current = parts.connectors.get(changed.id)
    if current is None:
        raise NotFoundError(f"no connector {changed.id!r} to compare with")
    relays = sorted(r.name for r in parts.live.relays.values() if r.connector.id == changed.id)
    if not relays:
        raise NotFoundError(f"no relay uses connector {changed.id!r}")
    hooks = list(parts.live.hooks.values())
    records = await kept_requests(parts.store, relays, last_of(last))
    secrets = parts.settings.template_secrets()
    found = [
        diff_request(
            r, (), before=Side(current, hooks), after=Side(changed, hooks), secrets=secrets
        )
        for r in records
        if not r.truncated
    ]
    return Diff("connector", changed.id, len(records), [d for d in found if not d.empty])


def hook_of(spec: dict[str, Any]) -> Hook:
    """A hook from its spec as written (the API, a file); InvalidError if it is not valid."""
    return validate_hook(spec)


async def diff_hook(parts: Parts, changed: Hook, *, last: int | None = None) -> Diff:
    """The changed hook against the current one of that name (none: a new hook), over the last
    kept requests of the relays it listens to, with their stored events."""
    current = parts.live.hooks.get(changed.name)
    relays = sorted(
        r.name
        for r in parts.live.relays.values()
        if not changed.spec.relays or r.name in changed.spec.relays
    )
    records = await kept_requests(parts.store, relays, last_of(last))
    secrets = parts.settings.template_secrets()
    before = Side(None, [current] if current is not None else [])
    after = Side(None, [changed])
    found = []
    for record in records:
        events = await request_events(parts.store, record.id)
        diff = diff_request(record, events, before=before, after=after, secrets=secrets)
        if not diff.empty:
            found.append(diff)
    return Diff("hook", changed.name, len(records), found)


async def apply_connector(parts: Parts, connector: Connector, diff: Diff, now: float) -> list[str]:
    """Remap: for each kept request the diff changed, store the events the connector makes
    that the current one did not (added, and the new version of changed ones) with their
    deliveries; a rejected request it now accepts is accepted. One line per request."""
    lines = []
    wanted = {d.request_id: d for d in diff.requests}
    for request_id, found in wanted.items():
        record = await parts.store.get_request(request_id)
        if record is None:
            lines.append(f"{request_id}: skipped: no longer kept")
            continue
        if found.after_error:
            lines.append(f"{request_id}: skipped: the connector rejects it ({found.after_error})")
            continue
        keys = set(found.new_keys)
        events = [
            e
            for k, e in keyed(map_side(connector, record, new_uuid)[0]).items()
            if k in keys or record.status == "rejected"
        ]
        deliveries = route(
            events, parts.live.hooks.values(), active=parts.live.active(), now=now, new_id=new_uuid
        )
        result = await parts.store.remap(
            record.id, events, status="accepted", error=None, deliveries=deliveries
        )
        lines.append(
            f"{request_id}: {result.accepted} events written, {result.deliveries} deliveries"
        )
    return lines
