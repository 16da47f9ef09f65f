"""The peers Relayhook is measured beside in bench/compare.py.

    python bench/peers.py starlette --port 8001                         # answers 200
    python bench/peers.py forward --port 8002 --sink http://127.0.0.1:8003/hook

- `starlette`: a bare Starlette app; `POST /in` reads the body and answers 200.
- `forward`: the same, but it first posts the body to the sink with one shared aiohttp session
  (keep-alive) and answers once the sink has.

Both run under uvicorn the way `relayhook serve` runs (uvloop, httptools, no access log), so that
the only difference from Relayhook is what the handler does. `GET /healthz` answers 200.

Node-RED 4.x is installed with npm into a folder outside the repo (`ensure_node_red`) and runs a
flow `http in -> http request -> http response` (`write_node_red_files`) with a settings file that
loads only the nodes it uses and turns the editor, the admin API, diagnostics and telemetry off.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
NODE_RED_SPEC = "node-red@4"
NODE_RED_MAJOR = "4."
# The flow's nodes and what they need: every other core node is left unloaded.
NODE_RED_NODES = ["21-httpin.js", "21-httprequest.js", "05-tls.js", "06-httpproxy.js"]
ACCEPTED = b'{"accepted":1}'


# --- the Python peers ----------------------------------------------------------------------


def starlette_app(sink: str | None) -> Any:
    """The bare app: answers 200 to `POST /in`, after forwarding the body to `sink` if given."""
    import aiohttp
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    session: list[aiohttp.ClientSession] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if sink is not None:
            # One pool for all requests, as any sane forwarder keeps; the load has 50 in flight.
            connector = aiohttp.TCPConnector(limit=128)
            session.append(aiohttp.ClientSession(connector=connector, trust_env=False))
        yield
        for each in session:
            await each.close()

    async def ingest(request: Request) -> Response:
        body = await request.body()
        if sink is not None:
            async with session[0].post(
                sink, data=body, headers={"Content-Type": "application/json"}
            ) as answer:
                await answer.read()
            if answer.status >= 300:
                return Response(b"sink answered %d" % answer.status, status_code=502)
        return Response(ACCEPTED, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b"ok")

    return Starlette(
        routes=[Route("/in", ingest, methods=["POST"]), Route("/healthz", health)],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=["starlette", "forward"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sink", help="forward: the URL the body is posted to")
    args = parser.parse_args(argv)
    if (args.kind == "forward") != (args.sink is not None):
        parser.error("--sink is for `forward`, and `forward` needs it")
    import uvicorn

    uvicorn.run(
        starlette_app(args.sink), host=HOST, port=args.port, log_level="warning", access_log=False
    )
    return 0


# --- Node-RED ------------------------------------------------------------------------------


def node_red_version(folder: Path) -> str | None:
    """The version of the Node-RED installed under `folder`, if any."""
    manifest = folder / "node_modules" / "node-red" / "package.json"
    if not manifest.exists():
        return None
    version: str = json.loads(manifest.read_text(encoding="utf-8"))["version"]
    return version


def ensure_node_red(folder: Path, timeout: float = 900.0) -> str:
    """Node-RED 4.x under `folder` (installed with npm if missing); its version."""
    version = node_red_version(folder)
    if version is not None and version.startswith(NODE_RED_MAJOR):
        return version
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError(
            "Node-RED needs node and npm (Debian: apt-get install -y nodejs npm);"
            " or leave it out with --no-node-red"
        )
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "package.json"
    if not manifest.exists():  # npm installs here, not in some parent folder's package.json
        manifest.write_text(
            '{"name": "relayhook-bench-node-red", "private": true}\n', encoding="utf-8"
        )
    print(f"installing {NODE_RED_SPEC} into {folder} with npm...", flush=True)
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", NODE_RED_SPEC],
        cwd=folder,
        check=True,
        timeout=timeout,
    )
    version = node_red_version(folder)
    if version is None or not version.startswith(NODE_RED_MAJOR):
        raise RuntimeError(f"npm installed Node-RED {version}, not 4.x, in {folder}")
    return version


def node_red_command(folder: Path, user_dir: Path) -> list[str]:
    node = shutil.which("node") or "node"
    red = folder / "node_modules" / "node-red" / "red.js"
    return [node, str(red), "--settings", str(user_dir / "settings.js"), "--userDir", str(user_dir)]


def write_node_red_files(user_dir: Path, port: int, sink: str) -> None:
    """settings.js and flows.json: `POST /in` -> `POST sink` -> the answer; `GET /healthz`."""
    user_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "uiHost": HOST,
        "uiPort": port,
        "userDir": str(user_dir),
        "flowFile": "flows.json",
        "flowFilePretty": False,
        "credentialSecret": False,
        "httpAdminRoot": False,
        "disableEditor": True,
        "httpNodeRoot": "/",
        "nodesIncludes": NODE_RED_NODES,
        "logging": {"console": {"level": "warn", "metrics": False, "audit": False}},
        "diagnostics": {"enabled": False, "ui": False},
        "runtimeState": {"enabled": False, "ui": False},
        "telemetry": {"enabled": False, "updateNotification": False},
        "externalModules": {
            "autoInstall": False,
            "palette": {"allowInstall": False},
            "modules": {"allowInstall": False},
        },
        "functionExternalModules": False,
        "editorTheme": {"projects": {"enabled": False}, "tours": False},
        "contextStorage": {"default": {"module": "memory"}},
    }
    (user_dir / "settings.js").write_text(
        "module.exports = " + json.dumps(settings, indent=2) + ";\n", encoding="utf-8"
    )
    flow = [
        {"id": "bench", "type": "tab", "label": "bench"},
        {
            "id": "in",
            "type": "http in",
            "z": "bench",
            "url": "/in",
            "method": "post",
            "upload": False,
            "swaggerDoc": "",
            "wires": [["forward"]],
        },
        # persist: keep-alive to the sink, as the other forwarders do.
        {
            "id": "forward",
            "type": "http request",
            "z": "bench",
            "method": "POST",
            "ret": "txt",
            "paytoqs": "ignore",
            "url": sink,
            "tls": "",
            "persist": True,
            "proxy": "",
            "insecureHTTPParser": False,
            "authType": "",
            "senderr": False,
            "headers": [],
            "wires": [["answer"]],
        },
        {
            "id": "answer",
            "type": "http response",
            "z": "bench",
            "statusCode": "",
            "headers": {},
            "wires": [],
        },
        {
            "id": "health",
            "type": "http in",
            "z": "bench",
            "url": "/healthz",
            "method": "get",
            "upload": False,
            "swaggerDoc": "",
            "wires": [["healthy"]],
        },
        {
            "id": "healthy",
            "type": "http response",
            "z": "bench",
            "statusCode": "200",
            "headers": {},
            "wires": [],
        },
    ]
    (user_dir / "flows.json").write_text(json.dumps(flow), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
