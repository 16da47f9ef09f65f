"""Issue 20, item 1: `relayhook users list|add|disable|enable|reset` for scripts, each change
in the audit log with the CLI as its actor."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from conftest import run

from relayhook.assembly import opened_store
from relayhook.cli import main
from relayhook.settings import load_settings


def users(config: Path, *args: str, stdin: str = "") -> str:
    out = io.StringIO()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        assert main(["--config", str(config), "users", *args], out=out) == 0
    finally:
        sys.stdin = old
    return out.getvalue()


def test_users_add_list_disable_reset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "relayhook.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{tmp_path / "r.db"}"\n'
        '[server]\npublic_url = "https://relay.example.com"\n'
    )
    printed = users(config, "add", "ana@example.com", "--name", "Ana", "--role", "operator")
    assert "https://relay.example.com/welcome/" in printed
    users(
        config,
        "add",
        "bo@example.com",
        "--name",
        "Bo",
        "--password-stdin",
        stdin="bo's long password\n",
    )
    listed = users(config, "list")
    assert "admin\tadmin\tactive" in listed
    assert "\toperator\tactive\tana@example.com\tAna" in listed
    assert "\tviewer\tactive\tbo@example.com\tBo" in listed
    assert "signed out everywhere" in users(config, "disable", "ana@example.com")
    assert "\toperator\tdisabled\tana@example.com" in users(config, "list")
    assert "/welcome/" in users(config, "reset", "bo@example.com")

    async def audit() -> list[tuple[str, str]]:
        async with opened_store(load_settings(config)) as store:
            return [(e.action, e.actor) for e in await store.list_audit()]

    actions = run(audit())
    assert ("people.disable", "token:cli") in actions
    assert ("people.create", "token:cli") in actions and ("people.reset", "token:cli") in actions
    assert "bo's long password" not in repr(actions)


def test_users_refuses_an_unknown_person(tmp_path: Path) -> None:
    config = tmp_path / "relayhook.toml"
    config.write_text(f'[storage]\nurl = "sqlite:///{tmp_path / "r.db"}"\n')
    out = io.StringIO()
    code = main(["--config", str(config), "users", "disable", "who@example.com"], out=out)
    assert code != 0


def test_an_invite_is_emailed_through_alerts_email(tmp_path: Path) -> None:
    from smtp import SmtpServer

    with SmtpServer() as smtp:
        config = tmp_path / "relayhook.toml"
        config.write_text(
            f'[storage]\nurl = "sqlite:///{tmp_path / "r.db"}"\n'
            '[server]\npublic_url = "https://relay.example.com"\n'
            f'[alerts.email]\nhost = "127.0.0.1"\nport = {smtp.port}\n'
            'from = "Relayhook <relayhook@example.com>"\ntls = "none"\n'
        )
        printed = users(config, "add", "ana@example.com", "--name", "Ana")
        link = printed.split()[-1]
        [message] = smtp.wait_for(1, timeout=10)
        assert message["To"] == "ana@example.com"
        assert message["Subject"] == "You are invited to Relayhook"
        assert link in message.get_content() and "Hello Ana" in message.get_content()


def test_configuration_changed_from_the_command_line_is_audited(tmp_path: Path) -> None:
    config = tmp_path / "relayhook.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{tmp_path / "r.db"}"\n'
        "[delivery]\nallow_private_destinations = true\n"
    )
    canary = "cli-secret-canary-0f9e8d7c6b5a4d3c2b1a"
    hooks = tmp_path / "hooks.toml"
    hooks.write_text('[[hooks]]\nname = "crm"\nevents = ["*"]\nurl = "http://127.0.0.1:9/x"\n')

    def relayhook(*args: str, stdin: str = "") -> None:
        old, sys.stdin = sys.stdin, io.StringIO(stdin)
        try:
            assert main(["--config", str(config), *args], out=io.StringIO()) == 0
        finally:
            sys.stdin = old

    relayhook(
        "relays", "add", "players", "--connector", "gamify", "--secret-stdin", stdin=canary + "\n"
    )
    relayhook("relays", "secret", "players")
    relayhook("relays", "list")
    relayhook("hooks", "add", str(hooks))
    relayhook("replay", "--hook", "crm", "--status", "dead,failed")

    async def audit() -> list[tuple[str, str, str]]:
        async with opened_store(load_settings(config)) as store:
            lines = await store.list_audit()
            assert canary not in repr(lines)
            return [(e.action, e.target, e.actor) for e in lines]

    assert run(audit()) == [
        ("hooks.replay", "hook:crm", "token:cli"),
        ("hooks.add", "", "token:cli"),
        ("relays.secret", "relay:players", "token:cli"),
        ("relays.add", "relay:players", "token:cli"),
    ]
