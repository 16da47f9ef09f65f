"""Settings: file < environment < command-line flags; errors name file, key and line."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from relayhook.errors import ConfigError
from relayhook.logs import Redactor
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


SMTP = '[alerts.email]\nto = "ops@example.com"\npassword = "smtp-Pa55-in-settings"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "[alerts]\ndisable_after = -1\n",
            ":alerts.disable_after:2: Value error, "
            "disable_after is a number of dead deliveries in a row (0: never "
            "deactivate), not -1",
            id="a negative disable_after",
        ),
        pytest.param(
            SMTP,
            ":alerts.email:1: Value error, e-mail alerts need `host` and `from` as well as `to`",
            id="e-mail without a server",
        ),
        pytest.param(
            SMTP + 'from = "relayhook"\n',
            ":alerts.email.from:4: Value error, 'relayhook' is not an e-mail address",
            id="a sender with no domain",
        ),
        pytest.param(
            SMTP.replace('"ops@example.com"', '["ops@example.com", "a b@c"]'),
            ":alerts.email.to:2: Value error, 'a b@c' is not an e-mail address",
            id="one bad address of several",
        ),
        pytest.param(
            SMTP + 'host = "smtp.example.com"\nfrom = "r@example.com"\ntls = "yes"\n',
            ":alerts.email.tls:6: Input should be 'starttls', 'ssl' or 'none'",
            id="an unknown tls mode",
        ),
    ],
)
def test_alert_settings_errors_say_what_to_fix_and_never_show_the_password(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == f"{path}{expected}"
    assert "Pa55" not in "".join(traceback.format_exception(caught.value))  # nor its cause


def test_e_mail_settings_take_one_address_or_a_list_and_the_password_stays_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "relayhook.toml"
    path.write_text(
        SMTP + 'host = "smtp.example.com"\nfrom = "Relayhook <r@example.com>"\n', encoding="utf-8"
    )
    mail = load_settings(path).alerts.email
    assert (mail.to, mail.port, mail.tls, mail.sender) == (
        ["ops@example.com"],
        587,
        "starttls",
        "Relayhook <r@example.com>",
    )
    assert "Pa55" not in repr(load_settings(path))
    monkeypatch.setenv("RELAYHOOK_ALERTS__EMAIL__PASSWORD", "from-the-environment")
    monkeypatch.setenv("RELAYHOOK_ALERTS__EMAIL__TO", '["a@example.com", "b@example.com"]')
    settings = load_settings(path)
    assert settings.alerts.email.password.get_secret_value() == "from-the-environment"
    assert settings.alerts.email.to == ["a@example.com", "b@example.com"]
    redact = Redactor.from_settings(settings)
    assert redact("login from-the-environment refused") == "login [redacted] refused"


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


def test_a_storage_password_is_never_printed() -> None:
    from relayhook.settings import StorageSettings

    storage = StorageSettings(url="postgresql://relayhook:s3cr3t-pw@db.internal:5432/relayhook")
    assert storage.shown_url() == "postgresql://relayhook:[redacted]@db.internal:5432/relayhook"
    assert StorageSettings().shown_url() == "sqlite:///relayhook.db"
