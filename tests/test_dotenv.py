"""The ``.env`` file (config/env_file.py): its syntax, and every command reading it from the
working directory under the real environment.

* ``parse_env_file`` takes the common syntax (comments, ``export``, both quotes, inline
  comments) and reads ``.env.example`` to exactly the values ``tests/test_config.py`` takes
  from it; a malformed line is a ``ConfigError`` naming the file and the line, never the value.
* ``load_env_file`` adds what the environment lacks and never replaces what it has (an empty
  value included); ``ENV_FILE`` names another file, ``/dev/null`` none.
* As processes: ``migrate --dry-run`` run in a directory with a ``.env`` names the data dir the
  file sets, and the environment's when both do; the server itself listens on the ``PORT`` of
  the ``.env`` in its working directory; a malformed line stops any command with exit 2 and
  one line on stderr, no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, load_settings
from config.env_file import load_env_file, parse_env_file
from tests.conftest import TEST_SECRET
from tests.support.processes import ROOT, free_port, stop, wait_healthy

BASE_ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}


# -- syntax -----------------------------------------------------------------------------------
def test_the_common_syntax() -> None:
    text = "\n".join([
        "\ufeff# a comment",
        "",
        "   # an indented comment",
        "PLAIN=value",
        "SPACED = a value with spaces   ",
        "export EXPORTED=yes",
        "INLINE=8000 # the port",
        "HASH=abc#def",
        "SINGLE='it''s' # no: literal up to the next quote",
        "LITERAL='$HOME \\n # kept'",
        'DOUBLE="a \\"quoted\\" \\\\ word\\nnext\\tcol"  # comment',
        "EMPTY=",
        "EMPTY_QUOTED=''",
        "DOLLAR=$HOME/${USER}",
        "MAIL_FROM=messenger <no-reply@localhost>",
        "TWICE=first",
        "TWICE=second",
        "CRLF=windows\r",
        "SEPARATOR=a\u2028b\x0cc",  # only \n (or \r\n) ends a line
    ])
    with pytest.raises(ConfigError, match=r"line 9 \(SINGLE\): unexpected text after"):
        parse_env_file(text)
    values = parse_env_file(text.replace("SINGLE='it''s' # no: literal up to the next quote",
                                         "SINGLE='it s'"))
    assert values == {
        "PLAIN": "value",
        "SPACED": "a value with spaces",
        "EXPORTED": "yes",
        "INLINE": "8000",
        "HASH": "abc#def",
        "SINGLE": "it s",
        "LITERAL": "$HOME \\n # kept",
        "DOUBLE": 'a "quoted" \\ word\nnext\tcol',
        "EMPTY": "",
        "EMPTY_QUOTED": "",
        "DOLLAR": "$HOME/${USER}",
        "MAIL_FROM": "messenger <no-reply@localhost>",
        "TWICE": "second",
        "CRLF": "windows",
        "SEPARATOR": "a\u2028b\x0cc",
    }


@pytest.mark.parametrize(("line", "problem"), [
    ("JUST_A_NAME", ": expected NAME=VALUE"),
    ("1ABC=x", ": '1ABC' is not a variable name"),
    ("SOME THING=x", ": 'SOME THING' is not a variable name"),
    ("=nameless", ": '' is not a variable name"),
    ("OPEN='s3cr3t-value", " (OPEN): the value's ' is not closed on its line"),
    ('OPEN="s3cr3t-value', " (OPEN): the value's \" is not closed on its line"),
    ("AFTER='s3cr3t-value' trailing", " (AFTER): unexpected text after the closing '"),
])
def test_a_malformed_line_names_the_file_and_line_not_the_value(line: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_env_file(f"# first\nGOOD=1\n{line}\n", "/srv/app/.env")
    assert str(caught.value) == f"/srv/app/.env line 3{problem}"
    assert "s3cr3t" not in str(caught.value)


def test_env_example_reads_as_the_settings_test_reads_it() -> None:
    example = (ROOT / ".env.example").read_text()
    naive = dict(line.split("=", 1) for line in example.splitlines()
                 if "=" in line and not line.startswith("#"))
    assert parse_env_file(example) == naive
    assert load_settings(parse_env_file(example)) == load_settings({})


# -- loading ----------------------------------------------------------------------------------
def test_the_environment_wins_and_the_file_fills_in(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("FROM_FILE=file\nBOTH=file\nEMPTY_IN_ENV=file\n")
    monkeypatch.chdir(tmp_path)
    environ = {"BOTH": "environment", "EMPTY_IN_ENV": ""}
    assert load_env_file(environ) == Path(".env")
    assert environ == {"FROM_FILE": "file", "BOTH": "environment", "EMPTY_IN_ENV": ""}


def test_no_file_reads_nothing_and_env_file_names_another(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    environ: dict[str, str] = {}
    assert load_env_file(environ) is None and environ == {}
    (tmp_path / ".env").write_text("FROM=dot-env\n")
    (tmp_path / "other.env").write_text("FROM=other\n")
    environ = {"ENV_FILE": str(tmp_path / "other.env")}
    load_env_file(environ)
    assert environ["FROM"] == "other"
    environ = {"ENV_FILE": os.devnull}  # read nothing, not even ./.env
    load_env_file(environ)
    assert environ == {"ENV_FILE": os.devnull}
    with pytest.raises(ConfigError, match=r"ENV_FILE: no such file: .*missing\.env"):
        load_env_file({"ENV_FILE": str(tmp_path / "missing.env")})
    (tmp_path / "latin1.env").write_bytes(b"NAME=caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1\.env: not UTF-8 text"):
        load_env_file({"ENV_FILE": str(tmp_path / "latin1.env")})


# -- as processes -----------------------------------------------------------------------------
def messenger(cwd: Path, *args: str, env: dict[str, str] | None = None,
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "messenger", *args], cwd=cwd,
                          env={**BASE_ENV, **(env or {})}, capture_output=True, text=True,
                          timeout=60)


def test_commands_read_dot_env_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"MESSENGER_DATA_DIR={tmp_path / 'from-file'}\n"
                                   "MAX_BODY_BYTES=lots\n")  # the environment overrides it
    result = messenger(tmp_path, "migrate", "--dry-run", env={"MAX_BODY_BYTES": "2048"})
    assert result.returncode == 0, result.stderr
    assert f"store: sqlite database {tmp_path / 'from-file' / 'messenger.sqlite3'}" in (
        result.stdout.splitlines())

    result = messenger(tmp_path, "migrate", "--dry-run",
                       env={"MAX_BODY_BYTES": "2048",
                            "MESSENGER_DATA_DIR": str(tmp_path / "from-env")})
    assert result.returncode == 0, result.stderr
    assert f"store: sqlite database {tmp_path / 'from-env' / 'messenger.sqlite3'}" in (
        result.stdout.splitlines())
    assert not (tmp_path / "from-file").exists() and not (tmp_path / "from-env").exists()


@pytest.mark.parametrize("args", [(), ("migrate",), ("create-user", "--email", "a@example.com",
                                                     "--display-name", "A", "--password-stdin")])
def test_a_malformed_line_stops_every_command_with_exit_2(tmp_path: Path,
                                                         args: tuple[str, ...]) -> None:
    (tmp_path / ".env").write_text("# settings\nPORT=8000\nJWT_SECRET 'not-an-assignment'\n")
    result = messenger(tmp_path, *args)
    assert result.returncode == 2, result
    assert result.stderr == "messenger: configuration error: .env line 3: expected NAME=VALUE\n"
    assert "not-an-assignment" not in result.stderr + result.stdout
    assert not (tmp_path / "var").exists()  # nothing was started or created


def test_the_server_listens_where_its_dot_env_says(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / ".env").write_text(
        f"PORT={port}\nENV=test\nJWT_SECRET='{TEST_SECRET}'\nBCRYPT_ROUNDS=4\n"
        f"MESSENGER_DATA_DIR={tmp_path / 'data'}\n")
    proc = subprocess.Popen([sys.executable, "-m", "messenger"], cwd=tmp_path, env=BASE_ENV,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(port, proc)  # on .env's PORT
        assert (tmp_path / "data" / "messenger.sqlite3").exists()
    finally:
        assert stop(proc) == 0
