"""Running Relayhook on a server (issue 22, items 1 and 2), with the real parts people use.

Caddy (Debian's package) runs the shipped Caddyfile on 127.0.0.1 with its internal CA in front of
a real `relayhook serve`; curl, trusting that CA, sends a signed Standard Webhooks request through
it from 127.0.0.2. The shipped systemd unit passes `systemd-analyze verify`. scripts/test installs
caddy and systemd when they are missing; here a missing one is installed with apt-get (root) or,
on a machine where that cannot be done, the test is skipped with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import (
    RelayConfig,
    RelayhookProcess,
    clean_env,
    free_port,
    http_client,
    render_config,
    render_tables,
    wait_until,
)

from relayhook._shipped import shipped_dir
from relayhook.settings import ServerSettings

FIXTURES = Path(__file__).parent / "fixtures"
ADMIN = "admin-token-deploy-0123456789abcdef"
PASSWORD = "console-password-deploy-0123"
KEY = b"deploy-test-signing-key-32-bytes!"
HOOKCASTER = RelayConfig(
    "hookcaster",
    "hookcaster",
    "tok-deploy-hookcaster-0001",
    "whsec_" + base64.b64encode(KEY).decode(),
)
CLIENT = "127.0.0.2"  # curl's address: Caddy itself reaches Relayhook from 127.0.0.1
WAIT = 30.0


def installed(program: str, package: str) -> str:
    """The path of `program`, installing Debian's `package` when it is missing (as
    scripts/test does); skip where that cannot be done."""
    found = shutil.which(program)
    if found is None and shutil.which("apt-get") and _is_root():
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", package],
            check=False,
            capture_output=True,
            timeout=600,
            env={**clean_env(), "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which(program)
    if found is None:
        pytest.skip(f"{program} is missing and could not be installed (apt-get install {package})")
    return found


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


def relayhook(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relayhook.cli", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )


# --- the systemd unit -------------------------------------------------------------------------


def test_the_printed_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = installed("systemd-analyze", "systemd")
    program = Path(sys.executable).parent / "relayhook"
    assert program.is_file()
    done = relayhook(
        "print-unit",
        "--user",
        "relayhook",
        "--exec",
        str(program),
        "--config",
        "/etc/relayhook/relayhook.toml",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    unit = done.stdout
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, re.MULTILINE))
    assert settings["User"] == "relayhook" and settings["StateDirectory"] == "relayhook"
    assert settings["ProtectSystem"] == "strict" and settings["NoNewPrivileges"] == "yes"
    assert settings["Restart"] == "on-failure"
    assert settings["ExecStart"] == f"{program} --config /etc/relayhook/relayhook.toml serve"
    # Long enough for a request arriving now and the deliveries in flight to finish.
    server = ServerSettings()
    assert int(settings["TimeoutStopSec"]) > server.header_timeout + server.body_timeout
    path = tmp_path / "relayhook.service"
    path.write_text(unit, encoding="utf-8")
    verified = subprocess.run(
        [analyze, "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    # verify exits 0 on an unknown key too: it only warns. No warning at all is the bar.
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr


def test_print_unit_takes_the_config_timeouts_and_refuses_a_bad_path(tmp_path: Path) -> None:
    config = tmp_path / "relayhook.toml"
    config.write_text(
        render_config(relays=[]) + render_tables(server={"body_timeout": 100.0}), encoding="utf-8"
    )
    done = relayhook(
        "print-unit",
        "--exec",
        "/opt/relayhook/bin/relayhook",
        "--config",
        str(config),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert int(re.search(r"^TimeoutStopSec=(\d+)$", done.stdout, re.MULTILINE)[1]) > 110  # type: ignore[index]
    bad = relayhook("print-unit", "--exec", "relayhook serve", cwd=tmp_path)
    assert bad.returncode == 1 and "--exec 'relayhook serve': give an absolute path" in bad.stderr


# --- HTTPS with Caddy ---------------------------------------------------------------------------


class LoggedServer(RelayhookProcess):
    """`relayhook serve` with uvicorn's access log on: it names the client of each request."""

    def command(self) -> list[str]:
        return [part for part in super().command() if part != "--no-access-log"]


def caddyfile(https_port: int, http_port: int, upstream: int, data: Path) -> str:
    """The shipped Caddyfile, for this test: Caddy's internal CA for `localhost` instead of a
    public certificate, on 127.0.0.1 only, no admin endpoint, its data in `data`."""
    shipped = (shipped_dir("deploy") / "Caddyfile").read_text(encoding="utf-8")
    site = "relayhook.example.com {"
    assert shipped.count(site) == 1 and shipped.count("127.0.0.1:8080") == 1
    shipped = shipped.replace(site, f"localhost:{https_port} {{\n\tbind 127.0.0.1\n\ttls internal")
    shipped = shipped.replace("127.0.0.1:8080", f"127.0.0.1:{upstream}")
    options = (
        f"{{\n\tadmin off\n\tstorage file_system {data}\n\tskip_install_trust\n"
        f"\thttp_port {http_port}\n\thttps_port {https_port}\n"
        "\tauto_https disable_redirects\n}\n"
    )
    return options + shipped


@pytest.fixture
def caddy_binary() -> str:
    return installed("caddy", "caddy")


class Caddy:
    """`caddy run` with the test's Caddyfile, on 127.0.0.1:`port`, in front of `upstream`."""

    def __init__(self, binary: str, folder: Path, port: int, upstream: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = port
        self.data = folder / "data"
        path = folder / "Caddyfile"
        path.write_text(caddyfile(self.port, free_port(), upstream, self.data), encoding="utf-8")
        env = clean_env(
            HOME=str(folder),
            XDG_DATA_HOME=str(folder / "xdg"),
            XDG_CONFIG_HOME=str(folder / "xdg-config"),
        )
        self.log = folder / "caddy.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, "run", "--config", str(path), "--adapter", "caddyfile"],
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def root_cert(self) -> Path:
        return self.data / "pki" / "authorities" / "local" / "root.crt"

    def curl(self, path: str, *args: str) -> subprocess.CompletedProcess[str]:
        """curl from 127.0.0.1's neighbour CLIENT to https://localhost:PORT/path, trusting
        only Caddy's CA; `-i` prints the answer's headers too."""
        return subprocess.run(
            [
                "curl",
                "-sS",
                "-i",
                "--noproxy",
                "*",
                "--max-time",
                "10",
                "--cacert",
                str(self.root_cert),
                "--resolve",
                f"localhost:{self.port}:127.0.0.1",
                "--interface",
                CLIENT,
                *args,
                f"https://localhost:{self.port}{path}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def wait_ready(self) -> None:
        def answers() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"caddy exited:\n{self.log.read_text(errors='replace')}")
            return self.root_cert.is_file() and self.curl("/healthz").returncode == 0

        wait_until(answers, timeout=WAIT, interval=0.1, what="caddy answering over TLS")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def proxied(tmp_path: Path, caddy_binary: str) -> Iterator[tuple[RelayhookProcess, Caddy]]:
    shutil.which("curl") or pytest.skip("curl is missing")
    caddy_port = free_port()
    # Caddy reaches Relayhook from 127.0.0.1: the one proxy whose X-Forwarded-For is believed.
    server_section: dict[str, object] = {
        "public_url": f"https://localhost:{caddy_port}",
        "forwarded_allow_ips": ["127.0.0.1"],
    }
    config = render_config(relays=[HOOKCASTER], admin_token=ADMIN) + render_tables(
        server=server_section, connectors={"dirs": [str(FIXTURES / "signed")]}
    )
    server = LoggedServer(tmp_path / "relayhook", config)
    assert server.config_path is not None
    done = relayhook(
        "--config",
        str(server.config_path),
        "admin",
        "password",
        cwd=server.workdir,
        stdin=PASSWORD + "\n",
    )
    assert done.returncode == 0, done.stderr
    with server:
        caddy = Caddy(caddy_binary, tmp_path / "caddy", caddy_port, server.port)
        try:
            caddy.wait_ready()
            yield server, caddy
        finally:
            caddy.stop()


def signed(body: bytes, message_id: str) -> list[str]:
    stamp = str(int(time.time()))
    mac = hmac.new(KEY, f"{message_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }
    return [part for name, value in headers.items() for part in ("-H", f"{name}: {value}")]


def test_a_signed_request_through_caddy_over_https(
    proxied: tuple[RelayhookProcess, Caddy], tmp_path: Path
) -> None:
    server, caddy = proxied
    body = json.dumps(
        {
            "type": "contact.created",
            "timestamp": "2024-05-01T12:00:00Z",
            "data": {"email": "ada@example.com"},
        }
    ).encode()
    (tmp_path / "body.json").write_bytes(body)
    sent = caddy.curl(
        f"/in/{HOOKCASTER.token}",
        "-X",
        "POST",
        *signed(body, "msg_deploy_1"),
        "--data-binary",
        f"@{tmp_path / 'body.json'}",
    )
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("HTTP/2 200"), sent.stdout
    assert json.loads(sent.stdout.split("\n\n", 1)[1])["accepted"] == 1

    # What Relayhook kept: the body as sent, and Caddy's forwarding headers (the client's own
    # address, https).
    with http_client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}) as api:
        [record] = api.get("/api/requests", params={"relay": "hookcaster"}).json()["items"]
        relays = api.get("/api/relays").json()
    headers = dict(record["headers"])
    assert record["status"] == "accepted"
    assert headers["x-forwarded-for"] == CLIENT and headers["x-forwarded-proto"] == "https"

    # Relay URLs are printed with https: the banner and the API.
    relay_url = f"https://localhost:{caddy.port}/in/"
    assert relay_url in server.log()
    urls = [relay["url"] for relay in relays["items"] if relay["name"] == "hookcaster"]
    assert urls == [relay_url + HOOKCASTER.token]

    # The console's cookies are Secure (and HttpOnly), through the proxy.
    jar = str(tmp_path / "cookies.txt")
    page = caddy.curl("/signin", "-c", jar)
    assert page.stdout.startswith("HTTP/2 200"), page.stdout
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.stdout)
    assert csrf is not None
    signed_in = caddy.curl(
        "/signin",
        "-b",
        jar,
        "-c",
        jar,
        "--data-urlencode",
        f"password={PASSWORD}",
        "--data-urlencode",
        f"csrf={csrf[1]}",
    )
    assert signed_in.stdout.startswith("HTTP/2 303"), signed_in.stdout
    cookies = [
        line
        for line in (page.stdout + signed_in.stdout).splitlines()
        if line.lower().startswith("set-cookie:")
    ]
    assert cookies and all(
        "; secure" in line.lower() and "httponly" in line.lower() for line in cookies
    ), cookies

    # The relay saw the real client: uvicorn's access log names 127.0.0.2, not Caddy's address.
    line = wait_until(
        lambda: next((row for row in server.log().splitlines() if '"POST /in/' in row), None),
        timeout=WAIT,
        what="the access log line",
    )
    assert f" {CLIENT}:" in f" {line}", line


# --- the README's commands hold what the code accepts -------------------------------------------


def test_the_readme_server_recipe_caddyfiles_and_config_are_valid(
    tmp_path: Path, caddy_binary: str
) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    recipe = readme[readme.index("## Run it on a server") :]
    caddy_block = re.search(r"<<'CADDY'\n(.*?)\nCADDY\n", recipe, re.DOTALL)
    assert caddy_block is not None
    for name, text in (
        ("readme", caddy_block[1]),
        ("shipped", (shipped_dir("deploy") / "Caddyfile").read_text("utf-8")),
    ):
        path = tmp_path / f"{name}.Caddyfile"
        path.write_text(text, encoding="utf-8")
        adapted = subprocess.run(
            [caddy_binary, "adapt", "--config", str(path), "--adapter", "caddyfile"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=clean_env(HOME=str(tmp_path)),
        )
        assert adapted.returncode == 0, adapted.stderr
        assert '"dial":"127.0.0.1:8080"' in adapted.stdout

    config_block = re.search(r"<<CONFIG\n(.*?)\nCONFIG\n", recipe, re.DOTALL)
    assert config_block is not None
    config = tmp_path / "relayhook.toml"
    config.write_text(
        config_block[1].replace(
            "$(/opt/relayhook/bin/relayhook keys new)", "a-token-made-by-keys-new-0123456789"
        ),
        "utf-8",
    )
    from relayhook.settings import load_settings

    settings = load_settings(config)
    assert settings.public_url() == "https://relayhook.example.com"
    assert str(settings.storage.url) == "sqlite:////var/lib/relayhook/relayhook.db"


def test_sigterm_drains_within_the_units_stop_timeout(tmp_path: Path) -> None:
    """What systemd does at `systemctl stop`: SIGTERM, then SIGKILL after TimeoutStopSec. With a
    delivery hanging at its receiver, the server still exits cleanly well before that."""
    from receiver import Receiver, Reply
    from servers import render_hooks

    from relayhook.cli.deploy import stop_timeout

    generic = RelayConfig("gen", "generic", "tok-deploy-generic-0001")
    with Receiver() as rx:
        rx.script("/hang/", Reply(hang=True))
        config = (
            render_config(relays=[generic])
            + render_tables(delivery={"allow_cidrs": ["127.0.0.1/32"], "poll_interval": 0.1})
            + render_hooks([{"name": "slow", "events": ["*"], "url": rx.url + "/hang/"}])
        )
        server = RelayhookProcess(tmp_path, config)
        with server, http_client(base_url=server.url) as client:
            sent = client.post(f"/in/{generic.token}", json={"n": 1})
            assert sent.status_code == 200
            rx.wait_for(1, timeout=WAIT, path="/hang/")  # the delivery is in flight
            began = time.monotonic()
            code = server.stop(timeout=stop_timeout(ServerSettings()))
            took = time.monotonic() - began
    # uvicorn ends by raising the SIGTERM it caught again, once shut down: systemd counts an
    # exit by SIGTERM as clean (Restart=on-failure does not restart it).
    assert code in (0, -signal.SIGTERM), server.log()
    assert "Application shutdown complete" in server.log()
    assert took < stop_timeout(ServerSettings())
