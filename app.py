"""ASGI entry: `uvicorn app:app`. Reads RELAYHOOK_CONFIG (default ./relayhook.toml if present)."""

import os
from pathlib import Path

from relayhook.settings import DEFAULT_CONFIG, load_settings
from relayhook.web.app import create_app

_config = Path(os.environ.get("RELAYHOOK_CONFIG", DEFAULT_CONFIG))
app = create_app(load_settings(_config if _config.is_file() else None))
