"""What every command family shares: finding the config file and loading the settings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from relayhook.settings import DEFAULT_CONFIG, Settings, load_settings


def config_path(given: str | None) -> Path | None:
    if given is not None:
        return Path(given)
    default = Path(DEFAULT_CONFIG)
    return default if default.is_file() else None


def settings_of(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(config_path(args.config), **overrides)


def add_config_flag(command: argparse.ArgumentParser) -> None:
    """`--config FILE` after the command too (`relayhook serve --config x.toml`)."""
    command.add_argument("--config", default=argparse.SUPPRESS)
