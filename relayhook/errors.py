"""One exception tree. What a user can fix names where: `file:key:line: message`.

RelayhookError
 ├── LocatedError          file:key:line: message, formatted here and nowhere else
 │    ├── ConfigError      the settings file (relayhook.toml) or the environment
 │    ├── ConnectorError   a connector file
 │    └── HookError        a hook (from the config, the API, the console)
 ├── LocatedErrors         several of the above at once, one per line
 ├── UsageError            a command was asked for something that is not there
 ├── SpecError             one value of a spec is wrong: a key path and why (no file yet)
 ├── InvalidError          a spec is wrong in one or more places (a list of SpecError)
 │    └── FindingsError    a change refused for what diagnostics found in it
 ├── NotFoundError         no relay, hook, delivery or request by that name or id
 ├── ConflictError         a name taken, or a change to something the config defines
 ├── TemplateError         a template does not compile          (relayhook.core.templating)
 ├── RenderError           a template failed on this input      (relayhook.core.templating)
 ├── MappingError          a request cannot become events       (relayhook.core.mapping)
 └── StoreError            storage failed, nothing of the write kept (relayhook.store)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from relayhook.core.tomlpos import KeyPath, format_path

UNKNOWN_KEY = "unknown key (a typo?)"


def field_message(error: Mapping[str, Any]) -> str:
    """What a person reads for one pydantic validation error: its message, but a key no model
    has is a typo (`extra="forbid"`), in one wording for settings, connectors and hooks."""
    return UNKNOWN_KEY if error["type"] == "extra_forbidden" else str(error["msg"])


class RelayhookError(Exception):
    """The root of every error Relayhook raises on purpose."""


class LocatedError(RelayhookError):
    """Something wrong at a place in a file. The message reads `file:key:line: message`."""

    def __init__(self, file: Path | str, key: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{key}:{line}: {message}")
        self.file = str(file)
        self.key = key
        self.line = line
        self.message = message


class ConfigError(LocatedError):
    """The configuration is invalid."""


class ConnectorError(LocatedError):
    """A connector file is invalid."""


class HookError(LocatedError):
    """A hook is invalid."""


class SpecError(RelayhookError):
    """One value of a spec is wrong: `key` is its path inside the spec (`("retry", "schedule")`),
    `message` says why. The loader that knows the file turns it into a LocatedError; the API
    answers it as `{"field": "retry.schedule", "message": ...}`."""

    def __init__(self, key: KeyPath, message: str) -> None:
        super().__init__(f"{format_path(key)}: {message}")
        self.key = key
        self.message = message


class UsageError(RelayhookError):
    """A command was asked for something that is not there (a hook name, an event)."""


class LocatedErrors(RelayhookError):
    """Several LocatedErrors found in one pass (every refused destination), one per line."""

    def __init__(self, errors: list[LocatedError]) -> None:
        super().__init__("\n".join(str(error) for error in errors))
        self.errors = errors


class InvalidError(RelayhookError):
    """A spec (a hook, a relay) is wrong in one or more places; the API answers 422 with each
    as `{"field": ..., "message": ...}`."""

    def __init__(self, errors: list[SpecError]) -> None:
        super().__init__("; ".join(str(error) for error in errors))
        self.errors = errors


class FindingsError(InvalidError):
    """A change refused for the errors diagnostics found in it (relayhook.core.diagnostics);
    `findings` holds every finding, warnings included (the API answers them with the 422)."""

    def __init__(self, errors: list[SpecError], findings: list[Any]) -> None:
        super().__init__(errors)
        self.findings = findings


class NotFoundError(RelayhookError):
    """No relay, hook, delivery or request by that name or id (the API answers 404)."""


class ConflictError(RelayhookError):
    """A name is taken, or the change would alter something the config file defines (409)."""
