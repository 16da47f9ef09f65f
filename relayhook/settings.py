"""Settings: a TOML file, overridden by `RELAYHOOK_...` environment variables.

    RELAYHOOK_ADMIN__TOKEN=s3cret RELAYHOOK_SERVER__PORT=9000 relayhook serve --config my.toml

Nested keys use a double underscore. `config.example.toml` documents every setting.
"""

from __future__ import annotations

import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from relayhook.tomlpos import locate_error

DEFAULT_CONFIG = "relayhook.toml"


class ConfigError(Exception):
    """The configuration is invalid. The message reads `file:key:line: what is wrong`."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str | None = Field(
        default=None, description="The URL providers reach this server at; relay URLs start here."
    )


class StorageSettings(Section):
    url: str = "sqlite:///relayhook.db"
    synchronous: Literal["NORMAL", "FULL", "EXTRA"] = "FULL"


class AdminSettings(Section):
    token: str = Field(default="", description="Bearer token for /api; empty turns /api off.")


class LimitsSettings(Section):
    max_body_bytes: int = Field(default=1_048_576, ge=1)


class ConnectorsSettings(Section):
    dirs: list[str] = Field(
        default=[], description="Extra connector folders, relative to the config file."
    )


class RelaySettings(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    connector: str
    token: str = Field(min_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    secret: str = ""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RELAYHOOK_", env_nested_delimiter="__", extra="forbid"
    )

    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    admin: AdminSettings = AdminSettings()
    limits: LimitsSettings = LimitsSettings()
    connectors: ConnectorsSettings = ConnectorsSettings()
    relays: list[RelaySettings] = []
    config_file: Path | None = Field(default=None, exclude=True)
    config_dir: Path = Field(default=Path("."), exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)  # the environment overrides the file

    @model_validator(mode="after")
    def _unique_relays(self) -> Settings:
        for attribute in ("name", "token"):
            seen: set[str] = set()
            for relay in self.relays:
                value = getattr(relay, attribute)
                if value in seen:
                    raise ValueError(f"two relays have the same {attribute} {value!r}")
                seen.add(value)
        return self

    def public_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        host = self.server.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.server.port}"

    def relay_url(self, relay: RelaySettings) -> str:
        return f"{self.public_url()}/in/{relay.token}"

    def connector_dirs(self) -> list[Path]:
        return [self.config_dir / folder for folder in self.connectors.dirs]


def load_settings(path: Path | None, **overrides: Any) -> Settings:
    """Settings from a TOML file (or defaults when None), the environment, then `overrides`."""
    data: dict[str, Any] = {}
    text = ""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except OSError as exc:
            raise ConfigError(f"{path}:(file):1: cannot read: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}:(toml):1: {exc}") from exc
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    data["config_file"] = path
    data["config_dir"] = path.resolve().parent if path is not None else Path.cwd()
    try:
        return Settings(**data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key, line = locate_error(text, error["loc"])
        message = "unknown key (a typo?)" if error["type"] == "extra_forbidden" else error["msg"]
        raise ConfigError(f"{path or '(environment)'}:{key}:{line}: {message}") from exc


def sample_config(connector_ids: list[str]) -> str:
    """A first config: one relay per shipped connector, fresh random tokens and secrets."""
    lines = [
        "# Written by `relayhook serve` on its first start. Every setting: config.example.toml.",
        "",
        "[server]",
        'host = "127.0.0.1"',
        "port = 8080",
        "",
        "[storage]",
        'url = "sqlite:///relayhook.db"',
        "",
        "[admin]",
        f'token = "{secrets.token_urlsafe(24)}"',
    ]
    for connector_id in connector_ids:
        lines += [
            "",
            "[[relays]]",
            f'name = "{connector_id}"',
            f'connector = "{connector_id}"',
            f'token = "{secrets.token_urlsafe(18)}"',
            f'secret = "{secrets.token_urlsafe(18)}"',
        ]
    return "\n".join(lines) + "\n"
