"""What the policy table and the audit log cost per API request (issue 20), in process.

    python bench/access.py                 # 2,000 reads and 500 changes per case
    python bench/access.py --reads 5000 --changes 1000 --json

The app over a fresh SQLite file (FULL), driven through httpx's ASGI transport (no socket, so
the figures are the app's own work). Cases:

    read-token      GET /api/hooks with the `[admin] token`
    read-key        GET /api/hooks with an API key (its lookup remembered 0.5 s)
    read-open       GET /api/hooks with the policy check taken out (rule_for answers "public"
                    and the bearer check passes): what reads cost before issue 20
    change-audited  POST /api/hooks/{name}/deactivate and activate with a key: the policy, the
                    before/after description, the change and its audit line (one more write)

Reported: microseconds per request (median of 5 rounds) and requests/s. A benchmark, not a
test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers import render_config  # noqa: E402

from relayhook.core import policy  # noqa: E402
from relayhook.settings import load_settings  # noqa: E402
from relayhook.web import access as access_module  # noqa: E402
from relayhook.web.app import create_app  # noqa: E402

TOKEN = "bench-admin-token"


async def timed(
    client: httpx.AsyncClient, method: str, paths: list[str], headers: dict[str, str]
) -> float:
    started = time.perf_counter()
    for path in paths:
        answer = await client.request(method, path, headers=headers)
        assert answer.status_code < 400, (path, answer.status_code, answer.text[:200])
    return (time.perf_counter() - started) / len(paths) * 1e6


async def run(reads: int, changes: int, rounds: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="relayhook-bench-access-"))
    config = folder / "relayhook.toml"
    config.write_text(
        render_config(
            relays=[],
            admin_token=TOKEN,
            storage_url=f"sqlite:///{folder / 'relayhook.db'}",
            delivery={"allow_private_destinations": True},
        )
    )
    app = create_app(load_settings(config))
    results: dict[str, list[float]] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            admin = {"Authorization": f"Bearer {TOKEN}"}
            for n in range(3):
                await client.post(
                    "/api/hooks",
                    headers=admin,
                    json={"name": f"hook{n}", "events": ["*"], "url": "http://127.0.0.1:9/x"},
                )
            made = await client.post(
                "/api/keys", headers=admin, json={"name": "bench", "role": "operator"}
            )
            key = {"Authorization": f"Bearer {made.json()['token']}"}
            await timed(client, "GET", ["/api/hooks"] * reads, admin)  # warm-up
            for _ in range(rounds):
                real = access_module.rule_for
                access_module.rule_for = lambda method, path: policy.PUBLIC  # type: ignore
                try:
                    results.setdefault("read-open", []).append(
                        await timed(client, "GET", ["/api/hooks"] * reads, admin)
                    )
                finally:
                    access_module.rule_for = real
                results.setdefault("read-token", []).append(
                    await timed(client, "GET", ["/api/hooks"] * reads, admin)
                )
                results.setdefault("read-key", []).append(
                    await timed(client, "GET", ["/api/hooks"] * reads, key)
                )
                paths = [
                    f"/api/hooks/hook{i % 3}/{'deactivate' if i % 2 else 'activate'}"
                    for i in range(changes)
                ]
                results.setdefault("change-audited", []).append(
                    await timed(client, "POST", paths, key)
                )
    return {name: statistics.median(values) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = asyncio.run(run(args.reads, args.changes, args.rounds))
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{'case':<16} {'us/request':>11} {'requests/s':>11}")
    for name, micros in figures.items():
        print(f"{name:<16} {micros:>11.0f} {1e6 / micros:>11.0f}")


if __name__ == "__main__":
    main()
