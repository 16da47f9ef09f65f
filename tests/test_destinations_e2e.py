"""Destinations refused at load, through the real command line: `relayhook check` and
`relayhook serve` as subprocesses (issue 7, item 4).

No test here asks a real DNS server anything: every hook URL is refused before a resolver is
asked (a name internal by definition, an address in an unusual form, a URL that cannot be sent
as written) or is an IP literal.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from servers import RelayhookProcess, ServerStartError, clean_env, render_hooks

# (file, key, words its line must hold): one refusal per line of `relayhook check`'s output.
INTERNAL = [
    ("localhost", "localhost is a loopback name"),
    ("localhost.", "localhost. is a loopback name"),
    ("api.localhost", "api.localhost is a loopback name"),
    ("metadata.google.internal", "metadata.google.internal is a cloud metadata name"),
    ("metadata.google.internal.", "metadata.google.internal. is a cloud metadata name"),
    ("db.internal", "db.internal is a private-network name"),
    ("127.000.000.001", "127.000.000.001 is an unusual form of 127.0.0.1, a loopback address"),
    ("0x7f.1", "0x7f.1 is an unusual form of 127.0.0.1"),
    ("0x5d.184.215.14", "0x5d.184.215.14 is an unusual form of 93.184.215.14"),
]


def run_check(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relayhook.cli", "check", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )


def internal_config() -> str:
    return render_hooks(
        [{"name": f"to {host}", "events": ["*"], "url": f"http://{host}/x"} for host, _ in INTERNAL]
    )


def test_check_refuses_internal_names_and_unusual_addresses_at_their_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "internal.toml"
    path.write_text(internal_config(), encoding="utf-8")
    result = run_check(path)
    assert result.returncode == 1, result
    lines = result.stdout.splitlines()
    assert len(lines) == len(INTERNAL), result.stdout
    for index, ((host, words), line) in enumerate(zip(INTERNAL, lines, strict=True)):
        # `[[hooks]]`, name, events, url, blank: the url of hook i is on line 5 i + 4
        assert line.startswith(f"{path}:hooks[{index}].url:{5 * index + 4}: "), line
        assert f"hook 'to {host}': destination refused: {words}" in line, line
    assert "cannot resolve" not in result.stderr  # not let through with a warning any more
    assert "0 of 1 files ok" in result.stderr


@pytest.mark.parametrize(
    ("url", "headers", "words"),
    [
        pytest.param(
            "http://93.184.215.14/a\r\nHost: evil", {}, "holds a CR at position 22", id="CR LF"
        ),
        pytest.param("http://93.184.215.14/a b", {}, "holds a space at position 22", id="a space"),
        pytest.param("http://93.184.215.14/\t", {}, "holds a tab", id="a tab"),
        pytest.param(
            "https://user:pw@93.184.215.14/",
            {"Authorization": "Bearer t"},
            "a request carries one Authorization",
            id="credentials twice",
        ),
    ],
)
def test_check_refuses_a_url_it_would_have_altered(
    tmp_path: Path, url: str, headers: dict[str, str], words: str
) -> None:
    path = tmp_path / "hook.toml"
    hook = {"name": "h", "events": ["*"], "url": url, **({"headers": headers} if headers else {})}
    path.write_text(render_hooks([hook]), encoding="utf-8")
    result = run_check(path)
    assert result.returncode == 1, result
    assert result.stdout.startswith(f"{path}:hooks[0].url:4: the URL "), result.stdout
    assert words in result.stdout


def test_check_accepts_what_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "fine.toml"
    path.write_text(
        render_hooks(
            [
                {"name": "credentials alone", "events": ["*"], "url": "https://u:p@93.184.215.14/"},
                {
                    "name": "templated",
                    "events": ["*"],
                    "url": (
                        "https://93.184.215.14/{{ event.subject | default('-') | urlencode }}"
                        "/{event.id}"
                    ),
                    "headers": {"Authorization": "Bearer {{ secrets.t | default('') }}"},
                },
            ]
        ),
        encoding="utf-8",
    )
    result = run_check(path)
    assert result.returncode == 0, result
    assert result.stdout == ""


def test_serve_refuses_to_start_on_internal_names(tmp_path: Path) -> None:
    process = RelayhookProcess(
        tmp_path, '[storage]\nurl = "sqlite:///relayhook.db"\n\n' + internal_config()
    )
    try:
        with pytest.raises(ServerStartError) as failure:
            process.start()
    finally:
        process.close(quiet=True)
    log = str(failure.value)
    for host, words in INTERNAL:
        assert f"hook 'to {host}': destination refused: {words}" in log, log
