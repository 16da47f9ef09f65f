"""`relayhook` with faults injected at store calls: the end-to-end tests of the supervised
runtime run the real `relayhook serve` through this, so the product itself holds no test hook.

    RELAYHOOK_TEST_FAULTS="claim_due=raise:3,finish=hang:1" \
        python tests/faulty_relayhook.py --config relayhook.toml serve

Each `method=kind:count` makes the first `count` calls of that store method (on both engines)
raise RuntimeError("injected fault in METHOD") (kind `raise`) or never answer (kind `hang`).
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from relayhook.cli import main
from relayhook.store.postgres import PostgresStore
from relayhook.store.sqlite import SQLiteStore

VARIABLE = "RELAYHOOK_TEST_FAULTS"


def faulty(
    method: Callable[..., Awaitable[Any]], name: str, kind: str, count: int
) -> Callable[..., Awaitable[Any]]:
    left = [count]

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if left[0] > 0:
            left[0] -= 1
            print(f"faulty_relayhook: {kind} in {name} ({left[0]} left)", file=sys.stderr)
            if kind == "raise":
                raise RuntimeError(f"injected fault in {name}")
            await asyncio.Event().wait()  # never answered
        return await method(*args, **kwargs)

    return wrapper


def inject(spec: str) -> None:
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, fault = item.partition("=")
        kind, _, count = fault.partition(":")
        if kind not in ("raise", "hang") or not count.isdigit():
            raise SystemExit(f"{VARIABLE}: {item!r} is not method=raise|hang:count")
        for engine in (SQLiteStore, PostgresStore):
            setattr(engine, name, faulty(getattr(engine, name), name, kind, int(count)))


if __name__ == "__main__":
    inject(os.environ.get(VARIABLE, ""))
    raise SystemExit(main(sys.argv[1:]))
