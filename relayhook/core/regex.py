"""Regular expressions that cannot run away: every pattern a template or a connector runs on
provider data goes through RE2, whose matching time is linear in the text, never exponential.

    >>> compile_regex(r"t=([0-9]+)", "auth.pattern").search("t=17,v1=ab").group(1)
    '17'

Python's `re` backtracks: `^([a-zA-Z0-9]+)+@example\\.com$` against 30 letters and a `!` takes
minutes, and a provider chooses the text. RE2 answers in microseconds, at the price of the few
features that need backtracking: backreferences (`\\1`, `(?P=name)`), lookaround (`(?=`, `(?!`,
`(?<=`, `(?<!`), possessive and atomic groups, and `\\Z` (RE2 writes `\\z`). Those are refused
when the pattern compiles, with what to write instead. `\\d`, `\\w`, `\\s` and `\\b` are ASCII.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import re2

from relayhook.errors import RelayhookError

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is our error to report, not a line on stderr
_OPTIONS.max_mem = 8 << 20  # bytes for the compiled program: a huge `{n}` repeat is refused

_UNSUPPORTED = (
    ("invalid perl operator: (?=", "lookahead `(?=...)` is not supported"),
    ("invalid perl operator: (?!", "negative lookahead `(?!...)` is not supported"),
    ("invalid perl operator: (?<=", "lookbehind `(?<=...)` is not supported"),
    ("invalid perl operator: (?<!", "negative lookbehind `(?<!...)` is not supported"),
    ("invalid perl operator: (?>", "an atomic group `(?>...)` is not supported"),
    ("bad repetition operator: ++", "a possessive repeat (`++`, `*+`, `?+`) is not supported"),
    ("bad repetition operator: *+", "a possessive repeat (`++`, `*+`, `?+`) is not supported"),
    ("bad repetition operator: ?+", "a possessive repeat (`++`, `*+`, `?+`) is not supported"),
    ("invalid escape sequence: \\Z", "`\\Z` is written `\\z` here"),
    ("pattern too large", "the pattern is too large (a repeat count too high?)"),
)


class RegexError(RelayhookError):
    """A pattern the linear-time engine cannot run. `where` names the key it came from."""

    def __init__(self, where: str, pattern: str, message: str) -> None:
        super().__init__(f"{where}: {pattern!r}: {message}")
        self.where = where
        self.pattern = pattern
        self.message = message


def _explain(pattern: str, reason: str) -> str:
    try:
        re.compile(pattern)  # only compiled, never run: Python's words for a plain mistake
    except re.error as exc:
        return f"not a regular expression: {exc}"
    for start, message in _UNSUPPORTED:
        if reason.startswith(start):
            return message + " (regexes run on RE2, in time linear in the text)"
    if reason.startswith("invalid perl operator: (?P") and "(?P=" in pattern:
        return (
            "a named backreference `(?P=name)` is not supported (regexes run on RE2, in "
            "time linear in the text)"
        )
    if reason.startswith("invalid escape sequence: \\") and reason[-1:].isdigit():
        return (
            "a backreference `\\1` is not supported (regexes run on RE2, in time linear "
            "in the text)"
        )
    return f"not a regular expression RE2 can run: {reason}"


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> Any:
    return re2.compile(pattern, _OPTIONS)


def compile_regex(pattern: str, where: str) -> Any:
    """The compiled pattern (an RE2 object with `search`, `finditer`, `groups` as in `re`), or
    RegexError saying what RE2 cannot run and naming `where` (a key: `auth.pattern`)."""
    try:
        return _compile(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else str(exc)
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(where, pattern, _explain(pattern, str(reason))) from None
    except TypeError as exc:  # a pattern that is not text
        raise RegexError(where, str(pattern), f"not a pattern: {exc}") from None
