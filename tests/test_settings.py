"""Settings: file < environment < command-line flags; errors name file, key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from relayhook.errors import ConfigError
from relayhook.settings import load_settings, sample_config

CONFIG = """\
[server]
port = 8001

[storage]
url = "sqlite:///data/relay.db"

[[relays]]
name = "gm"
connector = "gmetri"
token = "tok-0123456789abcdef"
secret = "s3cret-0123456789"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "relayhook.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_the_file_is_read(config: Path) -> None:
    settings = load_settings(config)
    assert settings.server.port == 8001
    assert settings.config_dir == config.parent
    assert settings.relays[0].name == "gm"
    assert settings.relay_url(settings.relays[0]) == "http://127.0.0.1:8001/in/tok-0123456789abcdef"


def test_the_environment_beats_the_file_and_flags_beat_both(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAYHOOK_SERVER__PORT", "9000")
    monkeypatch.setenv("RELAYHOOK_ADMIN__TOKEN", "from-the-environment")
    assert load_settings(config).server.port == 9000
    settings = load_settings(config, server={"port": 8081})
    assert settings.server.port == 8081
    assert settings.admin.token == "from-the-environment"
    assert settings.storage.url == "sqlite:///data/relay.db"  # merged, not replaced


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("[server]\nprot = 1\n", ":server.prot:2: unknown key (a typo?)", id="typo"),
        pytest.param("[server]\nport = 'x'\n", ":server.port:2: ", id="wrong type"),
        pytest.param("[server]\nport = \n", ":(toml):2: ", id="invalid toml"),
        pytest.param(
            CONFIG + '[[relays]]\nname = "gm"\nconnector = "gmetri"\ntoken = "tok-0123456789xyz"\n',
            ":(top level):1: Value error, two relays have the same name 'gm'",
            id="duplicate relay name",
        ),
    ],
)
def test_errors_say_file_key_and_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value).startswith(f"{path}{expected}")


def test_a_missing_connector_folder_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "relayhook.toml"
    path.write_text('[connectors]\ndirs = ["extra", "typo"]\n', encoding="utf-8")
    (tmp_path / "extra").mkdir()
    with pytest.raises(ConfigError, match=r"relayhook.toml:connectors.dirs\[1\]:2: no such folder"):
        load_settings(path).connector_dirs()


def test_the_sample_config_loads_with_a_relay_per_connector(tmp_path: Path) -> None:
    path = tmp_path / "relayhook.toml"
    path.write_text(sample_config(["gmetri", "synthesisvr"]), encoding="utf-8")
    settings = load_settings(path)
    assert [relay.connector for relay in settings.relays] == ["gmetri", "synthesisvr"]
    assert len({relay.token for relay in settings.relays}) == 2
    assert len(settings.admin.token) >= 24
