"""The connectors and presets that ship with Relayhook, read as package data.

They live at the top of the repository (`connectors/`, `presets/`), where integrators look for
them. pyproject.toml maps those folders to the subpackages `relayhook._shipped.connectors` and
`relayhook._shipped.presets`: a wheel carries copies of them, an editable install reads the
checkout's own files. Every reader finds them through `shipped_dir`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Literal


def shipped_dir(name: Literal["connectors", "presets", "deploy"]) -> Path:
    """The folder of the shipped connectors (`*.toml`, `examples/`, `schema.json`), presets, or
    deployment files (the systemd unit, the Caddy and nginx examples): each a subpackage of
    this one, named as its folder at the top of the repository."""
    root = files(f"{__name__}.{name}")
    if not isinstance(root, Path):  # the loaders glob real folders; a zipped install has none
        raise RuntimeError(f"Relayhook must be installed as files, not zipped: {root}")
    return root
