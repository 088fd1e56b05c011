"""``python -m messenger COMMAND`` (messenger/commands/), run as an operator runs it: processes.

* Every command answers ``--help`` without reading a setting or touching a store; with no
  command (or options only) the command is ``serve``, so ``python -m messenger --port N``
  serves as before; an unknown command or argument is exit 2.
* ``migrate --dry-run`` changes nothing and says what migrating would do: for SQLite the file's
  schema version against this code's (no file, an old one, a current one, one from newer code:
  exit 1), for MongoDB (mongoeco) each index and whether it exists; ``scripts/migrate`` is the
  same command.
* ``create-user`` makes an account the server logs in with, prints its id alone, and refuses
  an email that has one (exit 1) or input the registration rules refuse (exit 2); the password
  comes from stdin or a terminal prompt (asked twice, through a real pty; Ctrl-C there is exit
  130, no traceback), never an argument.
* ``reset-password`` sets the password a running server then accepts, and revokes the
  account's refresh tokens: the session opened before it can no longer refresh.
* ``genconfig`` prints a ``.env`` whose only active line is a random ``JWT_SECRET`` good outside
  ``ENV=local``; uncommented, its other lines are ``.env.example``'s defaults; it writes no
  file and reads no setting.
"""

from __future__ import annotations

import os
import pty
import re
import select
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymongo import MongoClient

from config import load_settings
from config.env_file import parse_env_file
from messenger.store.mongo_docs import INDEXES
from messenger.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION
from tests.conftest import RELAXED_AUTH_LIMITS, TEST_SECRET, unique_db_name
from tests.support.api import Api
from tests.support.processes import (
    ROOT,
    MessengerServer,
    MongoecoServer,
    free_port,
    stop,
    wait_healthy,
)

PASSWORD = "correct horse battery"
ID = re.compile(r"[0-9a-f]{24}")


def command_env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "ENV": "test", "JWT_SECRET": TEST_SECRET,
            "BCRYPT_ROUNDS": "4", "MESSENGER_DATA_DIR": str(data_dir), "ENV_FILE": os.devnull,
            **extra}


def messenger(env: dict[str, str], *args: str, stdin: str | None = None,
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "messenger", *args], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=60)


# -- the command line ---------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["", "serve", "migrate", "create-user", "reset-password",
                                     "genconfig"])
def test_help_answers_without_reading_settings_or_a_store(tmp_path: Path, command: str) -> None:
    env = command_env(tmp_path / "data", MAX_BODY_BYTES="lots")  # a broken setting
    result = messenger(env, *([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: messenger {command}".rstrip())
    if not command:
        for name in ("serve", "migrate", "create-user", "reset-password", "genconfig"):
            assert re.search(rf"^    {name} ", result.stdout, re.MULTILINE), result.stdout
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("args", [("frobnicate",), ("serve", "--frobnicate"),
                                  ("--port", "many"), ("migrate", "extra"),
                                  ("create-user", "--email", "a@example.com"),
                                  ("create-user", "--email", "a@example.com",
                                   "--display-name", "A", "--password", PASSWORD)])
def test_bad_usage_exits_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = messenger(command_env(tmp_path), *args)
    assert result.returncode == 2, result
    assert "usage: messenger" in result.stderr and "error:" in result.stderr


@pytest.mark.parametrize("command", [[], ["serve"]])
def test_options_alone_mean_serve(tmp_path: Path, command: list[str]) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "messenger", *command, "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT, env=command_env(tmp_path))
    try:
        wait_healthy(port, proc)
    finally:
        assert stop(proc) == 0


def test_a_configuration_error_is_exit_2(tmp_path: Path) -> None:
    for args in (("migrate",), ("serve",), ("reset-password", "--email", "a@example.com",
                                            "--password-stdin")):
        result = messenger(command_env(tmp_path, LOG_FORMAT="xml"), *args, stdin=PASSWORD)
        assert result.returncode == 2, result
        assert result.stderr == ("messenger: configuration error: LOG_FORMAT: must be one of"
                                 " text, json, got 'xml'\n")


# -- migrate ----------------------------------------------------------------------------------
def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def test_migrate_dry_run_on_sqlite_changes_nothing(tmp_path: Path) -> None:
    env = command_env(tmp_path / "data")
    database = tmp_path / "data" / "messenger.sqlite3"
    fresh = messenger(env, "migrate", "--dry-run")
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.splitlines() == [
        "dry run: nothing was changed",
        f"store: sqlite database {database}",
        f"schema: no database file yet; migrating creates it at v{SCHEMA_VERSION}",
    ]
    assert not (tmp_path / "data").exists()

    old = SCHEMA_VERSION - 2  # a file two steps behind, as older code left it
    database.parent.mkdir(parents=True)
    with sqlite3.connect(database) as conn:
        for step in MIGRATIONS[:old]:
            for statement in step:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {old}")
    before = database.read_bytes()
    behind = messenger(env, "migrate", "--dry-run")
    assert behind.returncode == 0, behind.stderr
    assert behind.stdout.splitlines()[2:] == [
        f"schema: v{old} now, v{SCHEMA_VERSION} after migrating",
        f"would apply 2 step(s): v{old} -> v{old + 1} -> v{SCHEMA_VERSION}",
        "would purge expired refresh tokens",
    ]
    assert database.read_bytes() == before and user_version(database) == old

    done = subprocess.run([sys.executable, str(ROOT / "scripts/migrate")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"migrated sqlite database {database}\n"
    assert user_version(database) == SCHEMA_VERSION
    current = subprocess.run([sys.executable, str(ROOT / "scripts/migrate"), "--dry-run"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert current.returncode == 0, current.stderr
    assert current.stdout.splitlines()[2:4] == [
        f"schema: v{SCHEMA_VERSION} now, v{SCHEMA_VERSION} after migrating", "no schema change"]

    with sqlite3.connect(database) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    newer = messenger(env, "migrate", "--dry-run")
    assert newer.returncode == 1
    assert newer.stderr == (f"messenger: storage error: {database} has schema"
                            f" v{SCHEMA_VERSION + 1}; this code knows v{SCHEMA_VERSION}\n")


@pytest.mark.timeout(60)
def test_migrate_dry_run_on_mongodb_lists_the_indexes(tmp_path: Path) -> None:
    mongo = MongoecoServer()
    try:
        db_name = unique_db_name("dry_run")
        env = command_env(tmp_path, MONGO_URL=mongo.url, MONGO_DB=db_name)
        every = [f"{collection}.{index.document['name']}"
                 for collection, indexes in INDEXES.items() for index in indexes]
        fresh = messenger(env, "migrate", "--dry-run")
        assert fresh.returncode == 0, fresh.stderr
        assert fresh.stdout.splitlines() == [
            "dry run: nothing was changed", f"store: mongodb database {db_name!r}",
            *(f"index {name}: would be created" for name in every),
            f"{len(every)} of {len(every)} indexes would be created",
        ]
        assert mongo.url not in fresh.stdout + fresh.stderr
        with MongoClient(mongo.url) as client:
            assert client[db_name].list_collection_names() == []  # nothing was created

        assert messenger(env, "migrate").stdout == f"migrated mongodb database {db_name!r}\n"
        again = messenger(env, "migrate", "--dry-run")
        assert again.returncode == 0, again.stderr
        assert again.stdout.splitlines()[2:] == [
            *(f"index {name}: exists" for name in every),
            f"0 of {len(every)} indexes would be created",
        ]
    finally:
        mongo.close()


# -- accounts ---------------------------------------------------------------------------------
async def test_create_user_makes_an_account_the_server_logs_in_with(tmp_path: Path) -> None:
    env = command_env(tmp_path)
    created = messenger(env, "create-user", "--email", " Ann@Example.COM ", "--display-name",
                        " Ann ", "--password-stdin", stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    assert ID.fullmatch(created.stdout.removesuffix("\n")), created.stdout
    user_id = created.stdout.strip()

    taken = messenger(env, "create-user", "--email", "ann@example.com", "--display-name", "Ann",
                      "--password-stdin", stdin=PASSWORD)
    assert taken.returncode == 1 and taken.stdout == ""
    assert taken.stderr == "messenger: an account with the email ann@example.com already exists\n"

    server = MessengerServer(server_env(tmp_path)).start()
    try:
        resp = await Api(server.base_url).post(
            "/api/auth/login", {"email": "ann@example.com", "password": PASSWORD})
        assert resp.status == 200, resp.body
        user = resp.json["user"]
        assert (user["id"], user["display_name"], user["email"], user["email_verified"]) == (
            user_id, "Ann", "ann@example.com", False)
    finally:
        server.stop()


def server_env(data_dir: Path) -> dict[str, str]:
    return {"ENV": "test", "JWT_SECRET": TEST_SECRET, "BCRYPT_ROUNDS": "4",
            "MESSENGER_DATA_DIR": str(data_dir), "ENV_FILE": os.devnull, **RELAXED_AUTH_LIMITS}


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (("--email", "not-an-email", "--display-name", "A"), PASSWORD, "email is not a valid address"),
    (("--email", "a@example.com", "--display-name", "   "), PASSWORD,
     "display_name must be at least 1 characters"),
    (("--email", "a@example.com", "--display-name", "A\x07"), PASSWORD,
     "display_name must not contain control characters"),
    (("--email", "a@example.com", "--display-name", "A"), "short\n",
     "password must be at least 8 characters"),
    (("--email", "a@example.com", "--display-name", "A"), "x" * 73,
     "password must be at most 72 bytes"),
])
def test_create_user_holds_input_to_the_registration_rules(
        tmp_path: Path, args: tuple[str, ...], stdin: str, message: str) -> None:
    result = messenger(command_env(tmp_path), "create-user", *args, "--password-stdin",
                       stdin=stdin)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"messenger: {message}\n"


def test_without_password_stdin_and_no_terminal_it_asks_for_password_stdin(
        tmp_path: Path) -> None:
    result = messenger(command_env(tmp_path), "create-user", "--email", "a@example.com",
                       "--display-name", "A", stdin="")
    assert result.returncode == 2
    assert "--password-stdin" in result.stderr and not (tmp_path / "messenger.sqlite3").exists()


def on_a_terminal(env: dict[str, str], args: list[str], answers: list[str],
                  timeout: float = 30.0) -> tuple[int, str]:
    """Run the command with a pty as its terminal; answer each ``Password`` prompt in turn.
    Its exit code and everything it wrote to the terminal."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "messenger", *args], env)
    output = b""
    answered = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            # getpass turns echo off (dropping what was typed before) and then prompts: answer
            # each prompt once it is whole
            if (answered < len(answers) and output.count(b"Password") > answered
                    and output.endswith(b": ")):
                os.write(fd, answers[answered].encode() + b"\n")
                answered += 1
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_the_password_prompt_asks_twice_without_echo(tmp_path: Path) -> None:
    env = command_env(tmp_path)
    args = ["create-user", "--email", "tty@example.com", "--display-name", "Tty"]
    code, screen = on_a_terminal(env, args, [PASSWORD, PASSWORD])
    assert code == 0, screen
    assert "Password: " in screen and "Password (again): " in screen
    assert PASSWORD not in screen  # not echoed
    assert ID.search(screen.rsplit("Password (again): ", 1)[1]), screen

    code, screen = on_a_terminal(env, ["reset-password", "--email", "tty@example.com"],
                                 [PASSWORD, "another password"])
    assert code == 2 and "the two passwords differ" in screen, screen

    code, screen = on_a_terminal(env, ["reset-password", "--email", "tty@example.com"], ["\x03"])
    assert code == 130 and screen.rstrip().endswith("messenger: interrupted"), screen
    assert "Traceback" not in screen


async def test_reset_password_signs_out_every_session(tmp_path: Path) -> None:
    server = MessengerServer(server_env(tmp_path)).start()
    try:
        api = Api(server.base_url)
        account = await api.register(password=PASSWORD)
        other = await api.post("/api/auth/login", {"email": account.email, "password": PASSWORD})
        assert other.status == 200
        new_password = "a brand new password"
        reset = messenger(command_env(tmp_path), "reset-password", "--email",
                          account.email.upper(), "--password-stdin", stdin=new_password + "\n")
        assert reset.returncode == 0, reset.stderr
        assert reset.stdout == (f"password reset for user {account.id};"
                                " every session of the account is signed out\n")
        for refresh_token in (account.refresh_token, other.json["refresh_token"]):
            refused = await api.post("/api/auth/refresh", {"refresh_token": refresh_token})
            assert refused.status == 401, refused.body
        old = await api.post("/api/auth/login", {"email": account.email, "password": PASSWORD})
        assert old.status == 401
        new = await api.post("/api/auth/login",
                             {"email": account.email, "password": new_password})
        assert new.status == 200 and new.json["user"]["id"] == account.id
    finally:
        server.stop()

    missing = messenger(command_env(tmp_path), "reset-password", "--email", "no@example.com",
                        "--password-stdin", stdin=PASSWORD)
    assert missing.returncode == 1
    assert missing.stderr == "messenger: no account has the email no@example.com\n"


# -- genconfig --------------------------------------------------------------------------------
def test_genconfig_prints_a_dot_env_with_a_random_secret(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "MAX_BODY_BYTES": "lots"}
    runs = [subprocess.run([sys.executable, "-m", "messenger", "genconfig"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert list(tmp_path.iterdir()) == []  # no file written
    first, second = (parse_env_file(run.stdout) for run in runs)
    assert list(first) == ["JWT_SECRET"] and list(second) == ["JWT_SECRET"]
    secret = first["JWT_SECRET"]
    assert secret != second["JWT_SECRET"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{64}", secret)
    assert load_settings({"ENV": "production", "JWT_SECRET": secret}).jwt_secret == secret

    uncommented = "\n".join(line[2:] if re.match(r"# [A-Z][A-Z0-9_]*=", line) else line
                            for line in runs[0].stdout.splitlines())
    example = parse_env_file((ROOT / ".env.example").read_text())
    assert parse_env_file(uncommented) == example | {"JWT_SECRET": secret}
