"""Settings: a TOML file, overridden by `RELAYHOOK_...` environment variables.

    RELAYHOOK_ADMIN__TOKEN=s3cret RELAYHOOK_SERVER__PORT=9000 relayhook serve --config my.toml

Nested keys use a double underscore. `config.example.toml` documents every setting.
"""

from __future__ import annotations

import contextvars
import email.utils
import ipaddress
import json
import re
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from relayhook.core.clients import TrustedProxies
from relayhook.core.tomlpos import format_path, locate_error, toml_error_line
from relayhook.errors import ConfigError, field_message

DEFAULT_CONFIG = "relayhook.toml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str | None = Field(
        default=None, description="The URL providers reach this server at; relay URLs start here."
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        le=30,
        description="Seconds a connection has to send a request's headers; then it is closed.",
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a request has to send its body once its headers "
        "are in; then the connection is closed.",
    )
    max_connections: int = Field(
        default=500,
        ge=1,
        description="Open connections at most; past it, the oldest one still "
        "waiting for its headers (or else the new one) is closed.",
    )
    forwarded_allow_ips: list[str] = Field(
        default_factory=list,
        description="Proxies (addresses or networks, `*` for any) whose "
        "X-Forwarded-For names the client. Empty: the header is ignored; the socket peer is "
        "the client.",
    )

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies(cls, values: list[str]) -> list[str]:
        TrustedProxies.from_config(values)  # ValueError naming the bad entry
        return values


class StorageSettings(Section):
    url: str = "sqlite:///relayhook.db"
    synchronous: Literal["NORMAL", "FULL", "EXTRA"] = "FULL"
    busy_timeout: float = Field(
        default=1.0,
        ge=0,
        description="Seconds a write waits for another process's lock.",
    )
    min_free_mb: float = Field(
        default=100,
        ge=0,
        description="/readyz says not ready while the disk under the SQLite "
        "database or the spool has less free space than this many MiB (0: no check).",
    )

    def shown_url(self) -> str:
        """The URL as banners and messages print it: a password in it is [redacted]."""
        from urllib.parse import urlsplit, urlunsplit

        from relayhook.core.redaction import netloc_without_password

        try:
            parts = urlsplit(self.url)
            if parts.password is None:
                return self.url
            return urlunsplit(parts._replace(netloc=netloc_without_password(parts)))
        except ValueError:  # not a URL the parser reads: say nothing of it
            return "(the [storage] url)"


class SpoolSettings(Section):
    path: str = Field(
        default="",
        description="The spool file, relative to the config file; empty: beside the "
        "database (relayhook.db -> relayhook.spool).",
    )
    store_timeout: float = Field(
        default=0.5,
        gt=0,
        le=1.5,
        description="Seconds a request waits for the store before it "
        "is spooled (SynthesisVR gives up after 2 s).",
    )


class AdminSettings(Section):
    token: str = Field(default="", description="Bearer token for /api; empty turns /api off.")


class LimitsSettings(Section):
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    max_header_line_bytes: int = Field(
        default=8192,
        ge=256,
        description="Longest request line or header line (name and "
        "value); longer: 431 (a request line: 414).",
    )
    max_header_bytes: int = Field(
        default=32768,
        ge=1024,
        description="All of a request's header lines together; more: "
        "431, read no further, kept as a rejected request of its relay.",
    )
    max_header_fields: int = Field(default=100, ge=1, description="Header lines in a request.")
    render_seconds: float = Field(
        default=0.2,
        gt=0,
        description="CPU time a request's templates may take at ingest "
        "(the connector's mapping, then the hooks' conditions); past it the request is "
        "rejected, kept, and answered 400.",
    )


class ConnectorsSettings(Section):
    dirs: list[str] = Field(
        default=[], description="Extra connector folders, relative to the config file."
    )


class DeliverySettings(Section):
    allow_private_destinations: bool = Field(
        default=False,
        description="Let hooks reach loopback and private addresses (a self-hosted n8n). Cloud "
        "metadata addresses stay refused unless listed in allow_cidrs.",
    )
    allow_cidrs: list[str] = Field(
        default=[], description="Networks hooks may reach even though they are private."
    )
    lease_seconds: float = Field(default=60.0, gt=0, description="How long a claim holds.")
    poll_interval: float = Field(default=0.5, gt=0, description="Idle wait between looks.")
    max_connections: int = Field(default=100, ge=1, description="Outbound connections in all.")

    @model_validator(mode="after")
    def _networks(self) -> DeliverySettings:
        for cidr in self.allow_cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"allow_cidrs: {cidr!r} is not a network: {exc}") from exc
        return self


class WorkerSettings(Section):
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="`serve --role worker` answers /healthz, "
        "/readyz and /metrics on this port (on [server] host); unset: it opens no port at all.",
    )
    stalled_after: float = Field(
        default=30.0,
        gt=0,
        description="Seconds the dispatcher may go without a claim round "
        "while deliveries wait: then /readyz says not ready and its task is restarted.",
    )
    store_deadline: float = Field(
        default=10.0,
        gt=0,
        description="Seconds each store call of the dispatcher may take; "
        "then it is given up (the lease brings the delivery back) and the dispatcher goes on.",
    )


class LogSettings(Section):
    format: Literal["text", "json"] = Field(
        default="text", description="text for people, json (one object a line) for machines."
    )
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="The least severe level written; --log-level overrides."
    )


class MetricsSettings(Section):
    public: bool = Field(
        default=False, description="Serve /metrics without the admin bearer token."
    )


class TracingSettings(Section):
    enabled: bool = Field(
        default=False,
        description="Send OpenTelemetry traces (a span per ingest and per "
        "delivery attempt) over OTLP/HTTP; needs `pip install relayhook[otel]`.",
    )
    endpoint: str = Field(
        default="http://127.0.0.1:4318/v1/traces",
        description="The OTLP/HTTP traces URL of a collector (protobuf POSTs).",
    )
    service_name: str = Field(default="relayhook", description="The traces' service.name.")
    sample_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="The share of requests traced (with all their "
        "deliveries: the choice follows the request's trace id, the same in every process).",
    )
    export_timeout: float = Field(
        default=10.0, gt=0, le=60, description="Seconds an export to the endpoint may take."
    )


class OutcomesSettings(Section):
    record: bool = Field(
        default=True,
        description="At ingest, record per request and hook why it did or did "
        "not get deliveries (and evaluate each hook's `when` then, not at delivery).",
    )


ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")


class EmailAlertSettings(Section):
    to: list[str] = Field(
        default=[],
        description="Send every alert by e-mail to these addresses (one, or a "
        "list). Empty: no e-mail.",
        examples=[["ops@example.com"]],
    )
    sender: str = Field(
        default="",
        alias="from",
        description="The From of the alerts, e.g. "
        '"Relayhook <relayhook@example.com>"; needed with `to`.',
    )
    host: str = Field(default="", description="The SMTP server; needed with `to`.")
    port: int = Field(default=587, ge=1, le=65535)
    username: str = Field(default="", description="Log in as this user; empty: no login.")
    password: SecretStr = Field(
        default=SecretStr(""),
        description="The SMTP password: never logged or shown (RELAYHOOK_ALERTS__EMAIL__PASSWORD).",
    )
    tls: Literal["starttls", "ssl", "none"] = Field(
        default="starttls",
        description="starttls (port 587), ssl (implicit TLS, port 465), or "
        "none (plain SMTP: a local relay only).",
    )
    timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds each step of talking to the SMTP server may take.",
    )

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("to", "sender")
    @classmethod
    def _addresses(cls, value: str | list[str]) -> str | list[str]:
        for address in [value] if isinstance(value, str) else value:
            if address and (
                not ADDRESS.match(email.utils.parseaddr(address)[1])
                or any(c in address for c in "\r\n")
            ):
                raise ValueError(f"{address!r} is not an e-mail address")
        return value

    @model_validator(mode="after")
    def _complete(self) -> EmailAlertSettings:
        if self.to and not (self.host and self.sender):
            raise ValueError("e-mail alerts need `host` and `from` as well as `to`")
        return self


class AlertsSettings(Section):
    webhook: str = Field(
        default="",
        description="POST a JSON alert here when a problem opens (a hook's "
        "deliveries fail with a new cause) or a 410 deactivates a hook; sent through the same "
        "destination checks as deliveries. Empty: no alerts.",
        examples=["https://hooks.slack.com/services/T000/B000/XXXX"],
    )
    interval: float = Field(
        default=1.0, gt=0, description="Seconds between looks for new problems to alert about."
    )
    disable_after: int = Field(
        default=0,
        description="Deactivate a hook when this many of its deliveries in a row "
        "end dead (retries used up), with a warning alert one dead delivery before; a success, "
        "or activating the hook, starts the count again. 0: never.",
    )
    email: EmailAlertSettings = EmailAlertSettings()

    @field_validator("disable_after")
    @classmethod
    def _count(cls, value: int) -> int:
        if value < 0:
            raise ValueError(
                f"disable_after is a number of dead deliveries in a row (0: "
                f"never deactivate), not {value}"
            )
        return value

    @model_validator(mode="after")
    def _url(self) -> AlertsSettings:
        if self.webhook and not self.webhook.startswith(("https://", "http://")):
            raise ValueError(f"webhook must be an http(s) URL, not {self.webhook!r}")
        return self


class RetentionSettings(Section):
    days: float = Field(
        default=30,
        ge=0,
        description="Keep requests, events and finished deliveries this long "
        "(0: forever). Unfinished deliveries and their events are never pruned.",
    )
    relays: dict[str, float] = Field(
        default={}, description="Days per relay name, over `days`, for its requests and events."
    )
    hooks: dict[str, float] = Field(
        default={}, description="Days per hook name, over `days`, for its finished deliveries."
    )
    interval: float = Field(
        default=3600,
        ge=0,
        description="Seconds between background prunes (0: only `relayhook prune`).",
    )
    audit_days: float = Field(
        default=400,
        ge=0,
        description="Keep the audit log (who changed, revealed, replayed, "
        "signed in) this long, longer than `days` by default (0: forever).",
    )

    @model_validator(mode="after")
    def _non_negative(self) -> RetentionSettings:
        for table in ("relays", "hooks"):
            for name, days in getattr(self, table).items():
                if days < 0:
                    raise ValueError(f"retention.{table}.{name}: days cannot be negative")
        return self


class ExpectSettings(Section):
    at_least: int = Field(ge=1, description="Open a problem when fewer requests than this ...")
    minutes: float = Field(gt=0, description="... came in this many minutes.")


class RelaySettings(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    connector: str
    token: str = Field(min_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    secret: str = ""
    expect: ExpectSettings | None = Field(
        default=None,
        description="A fixed rule for a quiet provider, for a relay too new to "
        "have learned its usual traffic: `{ at_least = 10, minutes = 30 }`. Replaces the "
        "learned rule of [watch] for this relay.",
    )


class WatchSettings(Section):
    """A provider gone quiet: each relay's usual traffic, learned from its stored requests."""

    interval: float = Field(
        default=60,
        ge=0,
        description="Seconds between looks at each relay's traffic (0: never look).",
    )
    window_minutes: float = Field(
        default=120,
        gt=0,
        description="How long a relay must receive far less than usual before a problem opens.",
    )
    ratio: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="Far less: at most this share "
        "of what the same hours of the week usually bring.",
    )
    min_expected: float = Field(
        default=10,
        gt=0,
        description="Only a relay that usually gets "
        "at least this many requests in the window is watched.",
    )
    weeks: int = Field(default=4, ge=1, le=12, description="Weeks of history to learn from.")
    min_weeks: int = Field(default=2, ge=1, description="Weeks of history needed to learn.")
    shapes: bool = Field(
        default=True,
        description="Learn the shape of each relay's payloads "
        "(per event type) and open a problem when a field is added, goes "
        "missing or changes type.",
    )


_file_values: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("relayhook_file")


class _FileSource(PydanticBaseSettingsSource):
    """The values of the TOML file being loaded (set by `load_settings`)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole file at once

    def __call__(self) -> dict[str, Any]:
        return _file_values.get({})


class OidcSettings(Section):
    issuer: str = Field(
        default="",
        description="The OpenID Connect provider's issuer URL (its "
        "/.well-known/openid-configuration is read from it). Empty: no sign-in with a provider.",
        examples=["https://accounts.google.com"],
    )
    client_id: str = Field(default="", description="This Relayhook's client id at the provider.")
    client_secret: SecretStr = Field(
        default=SecretStr(""),
        description="Its client secret: never logged or shown.",
    )
    allowed_domains: list[str] = Field(
        default_factory=list,
        description="E-mail domains that may sign in (a verified e-mail "
        "is required). Empty: any domain the provider vouches for.",
        examples=[["example.com"]],
    )
    role: Literal["viewer", "operator", "editor", "admin"] = Field(
        default="viewer",
        description="The role of someone signing in for the first time "
        "(an admin changes it later in Settings > People).",
    )
    name: str = Field(
        default="your company account", description="Shown on the button: Sign in with <name>."
    )

    @property
    def enabled(self) -> bool:
        return bool(self.issuer and self.client_id)


class AuthSettings(Section):
    oidc: OidcSettings = OidcSettings()


class Settings(BaseSettings):
    # A validation error shows no input values: they may hold secrets (the SMTP password...).
    model_config = SettingsConfigDict(
        env_prefix="RELAYHOOK_",
        env_nested_delimiter="__",
        extra="forbid",
        hide_input_in_errors=True,
    )

    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    spool: SpoolSettings = SpoolSettings()
    admin: AdminSettings = AdminSettings()
    limits: LimitsSettings = LimitsSettings()
    connectors: ConnectorsSettings = ConnectorsSettings()
    relays: list[RelaySettings] = []
    delivery: DeliverySettings = DeliverySettings()
    worker: WorkerSettings = WorkerSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    retention: RetentionSettings = RetentionSettings()
    outcomes: OutcomesSettings = OutcomesSettings()
    tracing: TracingSettings = TracingSettings()
    alerts: AlertsSettings = AlertsSettings()
    watch: WatchSettings = WatchSettings()
    auth: AuthSettings = AuthSettings()
    secrets: dict[str, str] = Field(
        default={},
        description="Values hooks use as {{ secrets.name }}; never stored or logged. `key` is "
        "not one of them: it is the key that seals secrets at rest (RELAYHOOK_SECRET_KEY).",
    )
    secret_key: str = Field(
        default="", description="The key that seals secrets at rest; from RELAYHOOK_SECRET_KEY."
    )
    previous_secret_key: str = Field(
        default="",
        description="The key secrets were sealed with before `secret_key`, kept to "
        "open them until `relayhook keys rotate` has sealed them again; from "
        "RELAYHOOK_PREVIOUS_SECRET_KEY.",
    )
    hooks: list[dict[str, Any]] = Field(
        default=[], description="[[hooks]] tables, validated by relayhook.core.hooks.HookSpec."
    )
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
        # Command-line flags (passed as init values) > RELAYHOOK_... environment > the file.
        return (init_settings, env_settings, _FileSource(settings_cls))

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

    def template_secrets(self) -> dict[str, str]:
        """`[secrets]` as hooks see them: without `key`, which only seals secrets at rest."""
        return {
            name: value
            for name, value in self.secrets.items()
            if name not in ("key", "previous_key")
        }

    def sealing_key(self) -> str | None:
        """RELAYHOOK_SECRET_KEY, else `[secrets] key`; None: use (or make) the key file."""
        return self.secret_key or self.secrets.get("key") or None

    def sealing_keys(self) -> list[str]:
        """The configured key ring: the sealing key, then the previous one
        (RELAYHOOK_PREVIOUS_SECRET_KEY, else `[secrets] previous_key`) if set; [] for none."""
        current = self.sealing_key()
        previous = self.previous_secret_key or self.secrets.get("previous_key")
        return [key for key in (current, previous) if key] if current else []

    def public_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        host = self.server.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.server.port}"

    def relay_url(self, relay: RelaySettings) -> str:
        return f"{self.public_url()}/in/{relay.token}"

    def line_of(self, path: tuple[str | int, ...]) -> int:
        """The line of a key path in the config file (1 if unknown)."""
        config = self.config_file
        text = config.read_text(encoding="utf-8") if config and config.is_file() else ""
        return locate_error(text, path)[1]

    def error_at(self, path: tuple[str | int, ...], message: str) -> ConfigError:
        """A ConfigError reading `file:key:line: message` for a key path of the config."""
        where = self.config_file or "(settings)"
        return ConfigError(where, format_path(path), self.line_of(path), message)

    def connector_dirs(self) -> list[Path]:
        """The extra connector folders; ConfigError names one that does not exist."""
        folders = [self.config_dir / folder for folder in self.connectors.dirs]
        for index, folder in enumerate(folders):
            if not folder.is_dir():
                raise self.error_at(("connectors", "dirs", index), f"no such folder: {folder}")
        return folders


def load_settings(path: Path | None, **overrides: Any) -> Settings:
    """Settings from a TOML file (or defaults when None), the environment, then `overrides`."""
    data: dict[str, Any] = {}
    text = ""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except OSError as exc:
            raise ConfigError(path, "(file)", 1, f"cannot read: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(path, "(toml)", toml_error_line(str(exc)), str(exc)) from exc
    config_dir = path.resolve().parent if path is not None else Path.cwd()
    token = _file_values.set(data)
    try:
        return Settings(**overrides, config_file=path, config_dir=config_dir)
    except ValidationError as exc:
        error = exc.errors()[0]
        key, line = locate_error(text, error["loc"])
        raise ConfigError(path or "(environment)", key, line, field_message(error)) from exc
    finally:
        _file_values.reset(token)


def sample_config(connector_ids: list[str], *, host: str = "127.0.0.1", port: int = 8080) -> str:
    """A first config: one relay per shipped connector, fresh random tokens and secrets; the
    address `serve --host/--port` was started with, so later commands name the same URL."""
    lines = [
        "# Written by `relayhook serve` on its first start. Every setting: config.example.toml.",
        "",
        "[server]",
        f"host = {json.dumps(host)}",
        f"port = {port}",
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
