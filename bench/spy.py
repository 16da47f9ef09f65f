"""Summarize a py-spy speedscope file of `relayhook serve`: where the GIL-holding time goes.

    python bench/compare.py --server relayhook-ingest --body small --py-spy /tmp/spy
    python bench/spy.py /tmp/spy/relayhook-ingest-small.speedscope.json

compare.py records with `py-spy record --threads --gil --format speedscope`: only the thread
holding the GIL is sampled, so the samples are the process's Python CPU (the one core it can use)
and a waiting thread adds nothing. What holds no GIL (uvloop waiting in epoll, fdatasync, SQLite
with the GIL released) is not in them: read them beside the server's CPU from /proc.

Prints, as Markdown: the samples per thread; the main thread's by layer (a sample goes to the
innermost frame that a layer claims, so the standard library counts for its caller); the
functions with the most inclusive and the most own samples.
"""

from __future__ import annotations

import argparse
import collections
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Rule = Callable[[str, str], bool]


def _under(*prefixes: str) -> Rule:
    return lambda func, path: path.startswith(prefixes)


# Innermost match wins; earlier rules win at the same frame.
LAYERS: list[tuple[str, Rule]] = [
    ("event ids (new_uuid)", lambda func, path: func == "new_uuid"),
    (
        "templates (relayhook.core.templating, jinja2)",
        _under("relayhook/core/templating.py", "jinja2/", "<template>", "markupsafe/"),
    ),
    (
        "mapping (relayhook.core.mapping, connectors, events)",
        _under(
            "relayhook/core/mapping.py",
            "relayhook/core/connectors.py",
            "relayhook/core/events.py",
            "relayhook/core/auth.py",
        ),
    ),
    ("routing to hooks", _under("relayhook/core/routing.py", "relayhook/core/hooks.py")),
    ("store, loop side (rows, JSON of the data, submit)", _under("relayhook/store/")),
    ("ingress (relayhook.web)", _under("relayhook/web/", "relayhook/live.py")),
    (
        "delivery (dispatcher, outbound, HTTP client)",
        _under(
            "relayhook/delivery/",
            "relayhook/core/outbound.py",
            "relayhook/core/retry.py",
            "relayhook/core/pacing.py",
            "relayhook/core/redaction.py",
            "httpx/",
            "aiohttp/",
            "yarl/",
            "multidict/",
        ),
    ),
    ("Starlette (middleware, routing, Request, JSONResponse)", _under("starlette/")),
    ("uvicorn + httptools (HTTP/1.1, the response write)", _under("uvicorn/", "httptools/")),
    ("logging", _under("logging/")),
]
LOOP = "event loop (uvloop, asyncio task steps)"


def _short(path: str) -> str:
    """A frame's file, from the package down: `relayhook/core/mapping.py`, `json/encoder.py`."""
    for marker in ("site-packages/", "/lib/python3.", "/relayhook/"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            if marker == "/lib/python3.":
                tail = tail.split("/", 1)[1] if "/" in tail else tail
            return ("relayhook/" + tail) if marker == "/relayhook/" else tail
    return path


def _layer(frames: list[tuple[str, str]]) -> str:
    for func, path in reversed(frames):
        for name, rule in LAYERS:
            if rule(func, path):
                return name
    return LOOP


def summarize(data: dict[str, Any], top: int = 15) -> dict[str, Any]:
    frames = [(f["name"], _short(f.get("file") or "")) for f in data["shared"]["frames"]]
    threads: collections.Counter[str] = collections.Counter()
    layers: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for profile in data["profiles"]:
        thread = profile["name"].rsplit(" ", 1)[-1].strip('"')
        for sample, weight in zip(profile["samples"], profile["weights"], strict=True):
            threads[thread] += weight
            if thread != "MainThread":
                continue
            stack = [frames[i] for i in sample]
            layers[_layer(stack)] += weight
            for func, path in dict.fromkeys(stack):
                inclusive[f"{func} ({path})"] += weight
            if stack:
                own[f"{stack[-1][0]} ({stack[-1][1]})"] += weight
    total, main = sum(threads.values()) or 1.0, threads["MainThread"] or 1.0
    # The frames of nearly every sample (the entry point down to the loop) say nothing.
    inclusive = collections.Counter({k: v for k, v in inclusive.items() if v < 0.97 * main})

    def shares(counter: collections.Counter[str], of: float, count: int) -> dict[str, float]:
        return {name: round(100 * v / of, 1) for name, v in counter.most_common(count)}

    return {
        "seconds": {t: round(s, 2) for t, s in threads.items()},
        "threads_pct": shares(threads, total, 10),
        "main_by_layer_pct": shares(layers, main, len(LAYERS) + 1),
        "main_inclusive_pct": shares(inclusive, main, top),
        "main_self_pct": shares(own, main, top),
    }


def markdown(summary: dict[str, Any]) -> str:
    def table(title: str, shares: dict[str, float]) -> str:
        rows = [f"| {title} | % |", "| --- | --- |"]
        return "\n".join(rows + [f"| {name} | {pct} |" for name, pct in shares.items()])

    seconds = ", ".join(f"{t} {s} s" for t, s in summary["seconds"].items())
    return "\n\n".join(
        [
            f"GIL-holding samples: {seconds}",
            table("thread (share of all samples)", summary["threads_pct"]),
            table("main thread, by layer", summary["main_by_layer_pct"]),
            table("main thread, inclusive", summary["main_inclusive_pct"]),
            table("main thread, own time", summary["main_self_pct"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("file", type=Path, help="a py-spy speedscope file")
    parser.add_argument("--top", type=int, default=15, help="functions listed (default: 15)")
    parser.add_argument("--json", action="store_true", help="print JSON, not Markdown")
    args = parser.parse_args(argv)
    summary = summarize(json.loads(args.file.read_text(encoding="utf-8")), args.top)
    print(json.dumps(summary, indent=2) if args.json else markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
