"""`relayhook restore` (issue 22, item 4) through real sockets: a backup taken while a real
server takes requests, restored into a new folder, holds every request acknowledged before the
backup began; restore refuses a store in use and a file that is no backup.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from servers import (
    RelayConfig,
    RelayhookProcess,
    clean_env,
    http_client,
    render_config,
    wait_until,
)

ADMIN = "admin-token-restore-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
GEN = RelayConfig("gen", "generic", "tok-gen-restore-0123456789")
WAIT = 20.0


def relayhook(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relayhook.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
        cwd=config.parent,
    )


def stored_ids(server: RelayhookProcess) -> set[str]:
    with http_client(base_url=server.url, headers=AUTH) as client:
        items = client.get("/api/requests", params={"limit": 1000}).json()["items"]
    return {item["id"] for item in items}


def test_a_backup_under_load_restores_every_acknowledged_request(tmp_path: Path) -> None:
    config = render_config(relays=[GEN], admin_token=ADMIN)
    copy = tmp_path / "backups" / "relayhook.db"
    copy.parent.mkdir()
    stop = threading.Event()
    acked: list[tuple[float, str]] = []  # (when the answer came, request id)
    spooled: set[str] = set()  # answered from the spool: in the store only once it drains
    answers: list[int] = []

    def load(url: str) -> None:
        with http_client(base_url=url) as client:
            for n in range(100_000):  # bounded; stopped by `stop` long before
                if stop.is_set():
                    return
                response = client.post(
                    f"/in/{GEN.token}",
                    content=json.dumps({"n": n}),
                    headers={"Content-Type": "application/json"},
                )
                answers.append(response.status_code)
                if response.status_code == 200:
                    answer = response.json()
                    acked.append((time.monotonic(), answer["request_id"]))
                    if answer.get("spooled"):
                        spooled.add(answer["request_id"])

    live = RelayhookProcess(tmp_path / "live", config)
    with live:
        thread = threading.Thread(target=load, args=(live.url,), daemon=True)
        thread.start()
        try:
            wait_until(lambda: len(acked) >= 30, timeout=WAIT, what="traffic")
            began = time.monotonic()
            assert live.config_path is not None
            backed_up = relayhook(live.config_path, "backup", str(copy))
            during = len(acked)
            wait_until(
                lambda: len(acked) >= during + 30, timeout=WAIT, what="traffic after the backup"
            )
        finally:
            stop.set()
            thread.join(timeout=WAIT)
    assert backed_up.returncode == 0, backed_up.stderr
    assert set(answers) == {200}
    # A request answered `spooled` (the store was slow to take it: a loaded machine) is in the
    # spool file until it drains, and a backup copies the store: the README says so.
    before = {request_id for at, request_id in acked if at < began} - spooled
    assert len(before) >= 30

    # A new folder, as on a new machine: the config, then the backup restored into it.
    restored = RelayhookProcess(tmp_path / "new", config)
    assert restored.config_path is not None
    done = relayhook(restored.config_path, "restore", str(copy))
    assert done.returncode == 0, done.stderr
    assert f"into {restored.db_path}" in done.stdout and "kept what" not in done.stdout
    with restored:
        found = stored_ids(restored)
        assert before <= found  # every request acknowledged before the backup began
        assert found <= {request_id for _, request_id in acked}  # and nothing else

        # The running store is not replaced under the server.
        refused = relayhook(restored.config_path, "restore", str(copy))
        assert refused.returncode == 1
        assert "is in use by a running relayhook" in refused.stderr, refused.stderr
        assert stored_ids(restored) == found

    # Stopped, it is replaced; what it held is kept beside it.
    again = relayhook(restored.config_path, "restore", str(copy))
    assert again.returncode == 0, again.stderr
    [kept] = restored.workdir.glob("relayhook.db.before-restore-*")
    assert f"as {kept}" in again.stdout


def test_restore_refuses_a_file_that_is_no_backup_and_a_postgres_store(tmp_path: Path) -> None:
    config = tmp_path / "relayhook.toml"
    config.write_text(render_config(relays=[GEN]), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a database " * 100, encoding="utf-8")
    done = relayhook(config, "restore", str(tmp_path / "notes.txt"))
    assert done.returncode == 1 and "is not an SQLite database" in done.stderr, done.stderr
    assert not (tmp_path / "relayhook.db").exists()
    missing = relayhook(config, "restore", str(tmp_path / "none.db"))
    assert missing.returncode == 1 and "none.db: no such file" in missing.stderr

    postgres = tmp_path / "pg.toml"
    postgres.write_text(
        render_config(relays=[GEN], storage_url="postgresql://x@127.0.0.1/x"), encoding="utf-8"
    )
    done = relayhook(postgres, "restore", str(tmp_path / "notes.txt"))
    assert done.returncode == 1 and "pg_restore" in done.stderr, done.stderr
