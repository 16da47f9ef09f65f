"""Real servers for end-to-end tests: `relayhook serve` as a subprocess on a free 127.0.0.1 port.

    with RelayhookProcess(tmp_path, render_config(relays=[...], admin_token="...")) as server:
        httpx.post(server.url + "/in/" + token, ...)
        server.kill()      # SIGKILL, as a power cut would
        server.start()     # same folder, same port, same SQLite file

Nothing here sleeps to synchronize: readiness is `GET /healthz` polled against a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

HOST = "127.0.0.1"
START_TIMEOUT = 30.0  # seconds; a cold start imports pydantic, jinja, starlette and uvicorn
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    condition: Callable[[], Any], *, timeout: float, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll `condition` until it returns something truthy (returned); TimeoutError at the
    deadline. Bounded in time and so in count."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"gave up after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without `RELAYHOOK_...` variables, which would override the test's
    config (and even `--port`), plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAYHOOK_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def http_client(**kwargs: Any) -> httpx.Client:
    """An httpx client that ignores proxy variables: test traffic stays on 127.0.0.1."""
    return httpx.Client(trust_env=False, timeout=kwargs.pop("timeout", 10.0), **kwargs)


@dataclass(frozen=True)
class RelayConfig:
    name: str
    connector: str
    token: str  # at least 16 of [A-Za-z0-9_-]
    secret: str = ""


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def render_config(
    *,
    relays: Sequence[RelayConfig],
    admin_token: str = "",
    storage_url: str = "sqlite:///relayhook.db",
    **sections: dict[str, Any],
) -> str:
    """A relayhook config TOML: `[storage]`, `[admin]`, any other sections given as keyword
    arguments (`limits={"max_body_bytes": 4096}`), then one `[[relays]]` table per relay."""
    tables: dict[str, dict[str, Any]] = {
        "storage": {"url": storage_url},
        "admin": {"token": admin_token},
        **sections,
    }
    lines: list[str] = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        lines.append("")
    for relay in relays:
        lines.append("[[relays]]")
        for key in ("name", "connector", "token", "secret"):
            lines.append(f"{key} = {_toml_value(getattr(relay, key))}")
        lines.append("")
    return "\n".join(lines)


StartServer = Callable[..., "RelayhookProcess"]  # the `start_server` fixture (conftest.py)


class ServerStartError(RuntimeError):
    """The server did not become ready; the message carries its log."""


class RelayhookProcess:
    """`relayhook serve` in `workdir` (its cwd), with `config` (TOML text) written there as
    `relayhook.toml` and passed with `--config`; `config=None` starts it with no config at all.

    A context manager: entering starts it (and waits for /healthz), leaving stops it, killing it
    if it will not stop. Each start logs to its own file: `serve-1.log`, `serve-2.log`, ...
    """

    def __init__(
        self,
        workdir: Path,
        config: str | None,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        program: Sequence[str] = (sys.executable, "-m", "relayhook.cli"),
    ) -> None:
        self.workdir = Path(workdir)
        self.program = list(program)  # another install's `relayhook` script (test_package.py)
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = self.workdir / "relayhook.toml"
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.config_path.write_text(config, encoding="utf-8")
        self.port = port if port is not None else free_port()
        self._port_chosen = port is None  # ours to change if another process takes it first
        self.extra_args = list(extra_args)
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = self.workdir / "serve-0.log"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.workdir / "relayhook.db"

    @property
    def worker(self) -> bool:
        """`--role worker`: no HTTP server but the health one, on `port` (--metrics-port)."""
        args = self.extra_args
        return any(a == "--role" and b == "worker" for a, b in zip(args, args[1:], strict=False))

    def command(self) -> list[str]:
        config = ["--config", str(self.config_path)] if self.config_path is not None else []
        port = ["--metrics-port" if self.worker else "--port", str(self.port)]
        return [
            *self.program,
            *config,
            "serve",
            "--host",
            HOST,
            *port,
            "--no-access-log",
            *self.extra_args,
        ]

    def start(self, timeout: float = START_TIMEOUT) -> RelayhookProcess:
        """Start the server and return once `GET /healthz` answers 200.

        On the first start, a free port that something else bound in the meantime is replaced
        by another (three tries); later starts keep the port, so `url` stays valid."""
        may_move = self._port_chosen and self.starts == 0
        for attempt in (1, 2, 3):
            try:
                return self._start(timeout)
            except ServerStartError as exc:
                taken = "address already in use" in str(exc).lower()
                if not (may_move and taken) or attempt == 3:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> RelayhookProcess:
        if self.running:
            raise RuntimeError("already running")
        self.starts += 1
        self.log_path = self.workdir / f"serve-{self.starts}.log"
        env = clean_env(**(self.env or {}))
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        with http_client(timeout=1.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise ServerStartError(
                        f"relayhook serve exited with {self.process.returncode} before it was"
                        f" ready:\n{self.log()}"
                    )
                try:
                    if client.get(self.url + "/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                if time.monotonic() >= deadline:
                    raise ServerStartError(
                        f"relayhook serve was not ready after {timeout} s:\n{self.log()}"
                    )
                time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or a power cut of the process."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait for a clean exit; SIGKILL (and TimeoutError) if it takes too long.
        Returns the exit code."""
        if self.process is None:
            raise RuntimeError("never started")
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise TimeoutError(
                    f"relayhook serve ignored SIGTERM for {timeout} s:\n{self.log()}"
                ) from None
        return self.process.returncode

    def log(self) -> str:
        """What the current (or last) run printed, stdout and stderr interleaved."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> RelayhookProcess:
        return self.start()

    def close(self, *, quiet: bool = False) -> None:
        """Stop it if it runs (killing it if it must); `quiet` swallows a refused SIGTERM."""
        if self.running:
            try:
                self.stop()
            except TimeoutError:
                if not quiet:
                    raise
        elif self.process is not None:
            self.kill()  # reaps it

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(quiet=exc is not None)  # a test's own failure is the one to report


class Canary:
    """A TCP listener on `host` that never accepts: each connection made to it waits in the
    kernel's backlog, and `connections()` counts them (accepting and closing them). Nothing
    needs to run for a connection to be counted, so "zero connections" is not a race.

        with Canary("127.0.0.2") as canary:
            ...  # aim something at canary.url
            assert canary.connections() == 0
    """

    def __init__(self, host: str = HOST, port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host = host
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.bind((host, port))
            self.sock.listen(128)
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self._count = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def connections(self) -> int:
        """How many connections reached this listener so far."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return self._count
            conn.close()
            self._count += 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Canary:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- hooks and other nested config (appended for the delivery tests) ---------------------------


def toml_inline(value: Any) -> str:
    """`value` as a TOML value on one line: strings, numbers, booleans, lists, inline tables."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_inline(item) for item in value) + "]"
    if isinstance(value, dict):
        return (
            "{ "
            + ", ".join(f"{json.dumps(str(k))} = {toml_inline(v)}" for k, v in value.items())
            + " }"
        )
    raise TypeError(f"no TOML for {value!r}")


def render_tables(**tables: dict[str, Any]) -> str:
    """`[name]` tables whose values may be nested (`delivery={"allow_cidrs": [...]}`), to add
    to what `render_config` writes (which must not hold the same tables)."""
    import json

    lines: list[str] = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{json.dumps(str(key))} = {toml_inline(v)}" for key, v in values.items()]
        lines.append("")
    return "\n".join(lines)


def render_hooks(hooks: Sequence[dict[str, Any]]) -> str:
    """One `[[hooks]]` table per dict, values as `toml_inline` writes them."""
    lines: list[str] = []
    for hook in hooks:
        lines.append("[[hooks]]")
        lines += [f"{key} = {toml_inline(value)}" for key, value in hook.items()]
        lines.append("")
    return "\n".join(lines)
