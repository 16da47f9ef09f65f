"""RE2 (google-re2, what templates and connectors run) against Python's `re`: the ordinary
patterns Relayhook's connectors use on ordinary text, and the catastrophic pattern of issue 17
on growing inputs. A benchmark, not a test: it prints microseconds per search.

    python bench/regex.py                  # 20,000 searches per ordinary case
    python bench/regex.py --searches 5000 --max-length 26

`re` on the catastrophic pattern doubles with each character; it is measured up to
--max-length (default 24: about a second), RE2 up to 100,000 characters.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from typing import Any

from relayhook.core.regex import compile_regex

CATASTROPHIC = r"^([a-zA-Z0-9]+)+@example\.com$"
ORDINARY = [  # (what, pattern, text): as the shipped and test connectors use them
    (
        "signature header (t=, v1=)",
        r"v1=([0-9a-f]+)",
        "t=1717171717,v1=" + "a1" * 32 + ",v0=" + "b2" * 32,
    ),
    (
        "standard webhooks list",
        r"(?:^|\s)v1,([A-Za-z0-9+/=]+)",
        "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= v1,bm9wZQ==",
    ),
    ("an e-mail in a 2 KB text", r"[a-z0-9._-]+@example\.com", "x" * 2000 + " amit@example.com"),
]


def per_search(search: Callable[[str], Any], text: str, count: int) -> float:
    """Microseconds per search, the best of three rounds of `count`."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(count):
            search(text)
        best = min(best, time.perf_counter() - started)
    return best / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--searches", type=int, default=20_000)
    parser.add_argument("--max-length", type=int, default=24)
    args = parser.parse_args()
    print("| case | re (us) | RE2 (us) |\n| --- | --- | --- |")
    for what, pattern, text in ORDINARY:
        python = per_search(re.compile(pattern).search, text, args.searches)
        linear = per_search(compile_regex(pattern, "bench").search, text, args.searches)
        print(f"| {what} | {python:.2f} | {linear:.2f} |")
    python_re, re2 = re.compile(CATASTROPHIC), compile_regex(CATASTROPHIC, "bench")
    for length in (16, 20, args.max_length):
        text = "a" * length + "!"
        python = per_search(python_re.search, text, 1)
        linear = per_search(re2.search, text, 100)
        print(f"| catastrophic, {length} characters | {python:,.0f} | {linear:.2f} |")
    for length in (30, 1000, 100_000):
        text = "a" * length + "!"
        linear = per_search(re2.search, text, 10)
        print(
            f"| catastrophic, {length:,} characters | (not run: ~2^{length} steps) | {linear:.2f} |"
        )


if __name__ == "__main__":
    main()
