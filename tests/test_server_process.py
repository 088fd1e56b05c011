"""The server as an operator runs it: start, stop, restart, bad configuration, lost database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RELAXED_AUTH_LIMITS, TEST_SECRET
from tests.support.api import Api
from tests.support.processes import ROOT, MessengerServer, MongoecoServer, free_port


def embedded_env(data_dir: Path) -> dict[str, str]:
    return {"ENV": "test", "JWT_SECRET": TEST_SECRET, "BCRYPT_ROUNDS": "4",
            "MESSENGER_DATA_DIR": str(data_dir), "LOG_LEVEL": "INFO", **RELAXED_AUTH_LIMITS}


async def test_user_registered_before_restart_logs_in_after(tmp_path: Path) -> None:
    server = MessengerServer(embedded_env(tmp_path)).start()
    try:
        api = Api(server.base_url)
        account = await api.register(name="Persistent")
        chat = await api.post("/api/chats", {"type": "group", "member_ids": [], "title": "t"},
                              token=account.access_token)
        sent = await api.post(f"/api/chats/{chat.json['id']}/messages", {"text": "kept"},
                              token=account.access_token)
        assert sent.status == 201
    finally:
        assert server.stop() == 0  # SIGTERM: clean exit
    assert (tmp_path / "messenger.sqlite3").exists()

    server = MessengerServer(embedded_env(tmp_path), port=server.port).start()
    try:
        api = Api(server.base_url)
        login = await api.post("/api/auth/login",
                               {"email": account.email, "password": account.password})
        assert login.status == 200
        assert login.json["user"]["id"] == account.id
        token = login.json["access_token"]
        history = await api.get(f"/api/chats/{chat.json['id']}/messages", token=token)
        assert [m["text"] for m in history.json["messages"]] == ["kept"]
    finally:
        assert server.stop() == 0


def test_start_logs_the_embedded_store(tmp_path: Path) -> None:
    server = MessengerServer(embedded_env(tmp_path)).start()
    server.stop()
    log = "".join(server.log)
    assert "embedded SQLite store" in log and str(tmp_path) in log


def run_with_env(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "messenger", "--port", str(free_port())],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True,
        timeout=30,
    )


def test_default_secret_outside_local_refuses_to_start(tmp_path: Path) -> None:
    result = run_with_env({"ENV": "production", "MESSENGER_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "JWT_SECRET" in lines[0]


def test_invalid_setting_fails_with_one_line_naming_it(tmp_path: Path) -> None:
    result = run_with_env({"MAX_BODY_BYTES": "lots", "MESSENGER_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "messenger: configuration error: MAX_BODY_BYTES: expected an integer, got 'lots'"
    )


@pytest.mark.timeout(90)
async def test_readyz_and_requests_report_mongodb_down(tmp_path: Path) -> None:
    mongo = MongoecoServer()
    env = {**embedded_env(tmp_path), "MONGO_URL": mongo.url, "MONGO_DB": "readyz_test",
           "MONGO_TIMEOUT_MS": "500"}
    server = MessengerServer(env).start()
    try:
        api = Api(server.base_url)
        ready = await api.get("/api/readyz")
        assert ready.status == 200
        assert ready.json == {"status": "ok",
                              "checks": {"mongodb": "ok", "in-process": "ok", "node": "ok"}}
        mongo.close()
        down = await api.get("/api/readyz")
        assert down.status == 503
        assert down.json["checks"] == {"mongodb": "unavailable", "in-process": "ok",
                                       "node": "ok"}
        assert down.json["error"]["code"] == "service_unavailable"
        login = await api.post(  # a request that needs the database
            "/api/auth/login", {"email": "a@example.com", "password": "whatever1"})
        assert login.status == 503
        assert login.json["error"]["code"] == "service_unavailable"
    finally:
        server.stop()
        mongo.close()


def test_migrate_help_answers_without_touching_a_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {"PATH": "/usr/bin:/bin", "MESSENGER_DATA_DIR": str(data_dir), "ENV": "test",
           "JWT_SECRET": TEST_SECRET}
    result = subprocess.run([sys.executable, str(ROOT / "scripts/migrate"), "--help"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: migrate")
    assert not data_dir.exists()  # nothing was created, nothing migrated
    done = subprocess.run([sys.executable, str(ROOT / "scripts/migrate")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "migrated sqlite database" in done.stdout and data_dir.exists()
