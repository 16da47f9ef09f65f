"""`relayhook print-unit`: the systemd unit that runs Relayhook as a service.

    relayhook print-unit [--user relayhook] [--exec /opt/relayhook/bin/relayhook]
                         [--config /etc/relayhook/relayhook.toml] [--state-dir relayhook]

The unit ships in the package (deploy/relayhook.service, with the Caddy and nginx examples);
this fills in the user, the paths and a stop timeout long enough for the drain.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import sys
from pathlib import Path
from typing import Any, TextIO

from relayhook._shipped import shipped_dir
from relayhook.errors import UsageError
from relayhook.settings import ServerSettings, load_settings

DEFAULT_CONFIG_PATH = "/etc/relayhook/relayhook.toml"
STOP_GRACE = 5.0  # seconds Dispatcher.stop gives the deliveries in flight (its default)
NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")  # a POSIX user name, and a folder under /var/lib


def stop_timeout(server: ServerSettings) -> int:
    """Seconds systemd waits after SIGTERM: a request still arriving gets its header and body
    timeouts, the deliveries in flight their grace, plus a margin for the store to close."""
    return math.ceil(server.header_timeout + server.body_timeout + STOP_GRACE + 5)


def render_unit(
    *, user: str, executable: str, config: str, state: str, server: ServerSettings
) -> str:
    for what, value in (("--user", user), ("--state-dir", state)):
        if not NAME.fullmatch(value):
            raise UsageError(f"{what} {value!r}: use lower-case letters, digits, - and _")
    for what, value in (("--exec", executable), ("--config", config)):
        if not value.startswith("/") or any(c.isspace() or c in "%$\\\"'" for c in value):
            raise UsageError(
                f"{what} {value!r}: give an absolute path without spaces, quotes, % or $"
            )
    template = (shipped_dir("deploy") / "relayhook.service").read_text(encoding="utf-8")
    return template.format(
        user=user,
        group=user,
        exec=executable,
        config=config,
        state=state,
        stop_timeout=stop_timeout(server),
    )


def default_executable() -> str:
    """The `relayhook` this command runs from (its venv's script), else the one on PATH."""
    beside = Path(sys.executable).parent / "relayhook"
    if beside.is_file():
        return str(beside.absolute())
    found = shutil.which("relayhook")
    return str(Path(found).absolute()) if found else "/opt/relayhook/bin/relayhook"


def server_settings(config: Path) -> ServerSettings:
    """The config's `[server]` if this machine has the file (its timeouts set the stop
    timeout), else the defaults."""
    return load_settings(config).server if config.is_file() else ServerSettings()


def cmd_print_unit(args: argparse.Namespace, out: TextIO) -> int:
    # `relayhook --config FILE print-unit` names the service's config too.
    given = args.unit_config or args.config
    config = str(Path(given).absolute()) if given else DEFAULT_CONFIG_PATH
    out.write(
        render_unit(
            user=args.user,
            executable=args.exec or default_executable(),
            config=config,
            state=args.state_dir,
            server=server_settings(Path(config)),
        )
    )
    return 0


def register(sub: Any) -> None:
    unit = sub.add_parser("print-unit", help="print a systemd unit that runs relayhook serve")
    unit.add_argument(
        "--user", default="relayhook", help="the dedicated user it runs as (default: relayhook)"
    )
    unit.add_argument("--exec", help="the relayhook program (default: this one)")
    unit.add_argument(
        "--config",
        dest="unit_config",
        help=f"the config file the service reads (default: {DEFAULT_CONFIG_PATH})",
    )
    unit.add_argument(
        "--state-dir",
        default="relayhook",
        help="its folder under /var/lib for the database, key and spool (default: relayhook)",
    )
    unit.set_defaults(func=cmd_print_unit)
