"""Logs (messenger/logs.py, messenger/access_log.py) and request ids (messenger/request_ids.py).

* ``LOG_FORMAT=json``, the real server process: after a conversation — register, verify the
  email (a real SMTP sink, so no email is logged), login, refresh, create a chat, send, a
  WebSocket with ``?token=``, a 404, a failed login — every stderr line is one JSON object with
  ``time`` (ISO 8601 UTC), ``level``, ``logger`` and ``message``; each request's access line has
  its request id (the client's when sane), method, route template, status, duration, client
  address and, when authenticated, user id; and no access token, refresh token, email token,
  password or the JWT secret appears anywhere in the output, nor any query string.
* ``LOG_FORMAT`` unset: the text lines of before, the WebSocket URI redacted as before.
* Every answer (REST, 404, the WebSocket handshake and its refusal) carries ``X-Request-ID``:
  the client's when sane, else 32 new hex digits.
  A request's failure logged on a line of its own (here Tornado's 400 for a query that is not
  UTF-8) names the request's id.
* Below the process: an exception is one line with its traceback in ``exception``; structured
  fields never replace ``time``, ``level`` or ``logger``; each route template is found back
  from its handler and path.
"""

from __future__ import annotations

import io
import logging
import re
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from handlers.routes import ROUTES, to_pattern
from messenger import request_ids
from messenger.access_log import RouteTemplates
from messenger.logs import JsonFormatter, fields, iso_time
from tests.conftest import RELAXED_AUTH_LIMITS, TEST_SECRET
from tests.support.api import Api
from tests.support.processes import MessengerServer
from tests.support.smtp import SmtpSink
from tests.support.ws import WsClient

PASSWORD = "correct horse battery"
WRONG_PASSWORD = "not the password 42"
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
HEX_ID = re.compile(r"[0-9a-f]{32}")


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"ENV": "test", "JWT_SECRET": TEST_SECRET, "BCRYPT_ROUNDS": "4",
            "MESSENGER_DATA_DIR": str(tmp_path), "LOG_LEVEL": "INFO", "ENV_FILE": "/dev/null",
            **RELAXED_AUTH_LIMITS, **extra}


def stopped_log(server: MessengerServer, timeout: float = 20.0) -> list[str]:
    """Stop the server (cleanly) and return every line it wrote to stderr, once the last one
    (``stopped``) has been read."""
    assert server.stop() == 0
    deadline = time.monotonic() + timeout
    while not any("stopped" in line for line in server.log[-3:]):
        assert time.monotonic() < deadline, "".join(server.log[-20:])
        time.sleep(0.02)
    return list(server.log)


async def ws_handshake(base_url: str, token: str, request_id: str) -> tuple[WsClient, str]:
    """A WebSocket session sending ``X-Request-ID``; the id its 101 answer echoed."""
    url = base_url.replace("http://", "ws://", 1) + f"/ws?token={token}"
    conn = await websocket_connect(HTTPRequest(url, headers={"X-Request-ID": request_id}))
    client = WsClient(conn)
    assert (await client.next_frame())["type"] == "ready"
    return client, conn.headers.get("X-Request-ID", "")


# -- LOG_FORMAT=json, the real process ------------------------------------------------------------
@pytest.mark.timeout(90)
async def test_json_lines_carry_the_fields_and_never_a_secret(tmp_path: Path) -> None:
    sink = SmtpSink().start()
    server = MessengerServer(env_for(
        tmp_path, LOG_FORMAT="json", SMTP_HOST="127.0.0.1", SMTP_PORT=str(sink.port),
        SMTP_TLS="none", MAIL_POLL_INTERVAL_SECONDS="0.1")).start()
    secrets: list[str] = [TEST_SECRET, PASSWORD, WRONG_PASSWORD]
    try:
        api = Api(server.base_url)
        ann = await api.register(f"ann-{uuid.uuid4().hex[:8]}@example.com", PASSWORD, "Ann")
        bob = await api.register(f"bob-{uuid.uuid4().hex[:8]}@example.com", PASSWORD, "Bob")
        secrets += [ann.access_token, ann.refresh_token, bob.access_token, bob.refresh_token]
        [mail] = await sink.wait_for(ann.email, subject="Confirm your email")
        secrets.append(mail.token)
        assert (await api.post("/api/auth/verify", {"token": mail.token})).status == 200

        login = await api.post("/api/auth/login", {"email": ann.email, "password": PASSWORD},
                               headers={"X-Request-ID": "client-login-1"})
        assert login.status == 200 and login.header("X-Request-ID") == "client-login-1"
        secrets += [login.json["access_token"], login.json["refresh_token"]]
        refreshed = await api.post("/api/auth/refresh",
                                   {"refresh_token": login.json["refresh_token"]})
        assert refreshed.status == 200
        secrets += [refreshed.json["access_token"], refreshed.json["refresh_token"]]
        token = refreshed.json["access_token"]

        chat = await api.create_group(ann, bob, title="logs")
        sent = await api.post(f"/api/chats/{chat['id']}/messages", {"text": "hello"},
                              token=token, headers={"X-Request-ID": "has a space"})
        assert sent.status == 201 and HEX_ID.fullmatch(sent.header("X-Request-ID"))
        generated_id = sent.header("X-Request-ID")
        client, ws_echo = await ws_handshake(server.base_url, token, "ws-handshake.7")
        assert ws_echo == "ws-handshake.7"
        client.close()
        missing = await api.get("/api/chats/0123456789abcdef01234567", token=token)
        assert missing.status == 404
        failed = await api.post("/api/auth/login",
                                {"email": ann.email, "password": WRONG_PASSWORD})
        assert failed.status == 401
        undecodable = await api.get(f"/api/chats/{chat['id']}/messages?limit=%ff", token=token)
        assert undecodable.status == 400  # Tornado's HTTPError, logged on a line of its own
    finally:
        log = stopped_log(server)
        sink.stop()

    output = "".join(log)
    for secret in secrets:
        assert secret not in output
    records = [orjson.loads(line) for line in log]  # every line is one JSON object
    for record in records:
        assert isinstance(record, dict)
        assert ISO_UTC.fullmatch(record["time"]), record
        assert record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), record
        assert isinstance(record["logger"], str) and isinstance(record["message"], str)

    access = [record for record in records if record["logger"] == "messenger.access"]
    by_id = {record["request_id"]: record for record in access}
    assert len(by_id) == len(access)  # one id per request
    for record in access:
        assert {"request_id", "method", "route", "status", "duration_ms",
                "client_address"} <= record.keys(), record
        assert record["client_address"] == "127.0.0.1"
        assert isinstance(record["duration_ms"], float) and record["duration_ms"] >= 0
        assert "?" not in record["message"] and "token" not in record["message"]
        assert record["message"].startswith(f"{record['method']} {record['route']} "
                                            f"{record['status']} ")
    assert {record["route"] for record in access} >= {
        "/api/auth/register", "/api/auth/verify", "/api/auth/login", "/api/auth/refresh",
        "/api/chats", "/api/chats/{chat_id}/messages", "/api/chats/{chat_id}", "/ws"}

    assert by_id["client-login-1"]["route"] == "/api/auth/login"
    assert "user_id" not in by_id["client-login-1"]  # not an authenticated request
    send = by_id[generated_id]
    assert (send["method"], send["route"], send["status"], send["user_id"]) == (
        "POST", "/api/chats/{chat_id}/messages", 201, ann.id)
    handshake = by_id["ws-handshake.7"]
    assert (handshake["route"], handshake["status"], handshake["user_id"], handshake["level"]) == (
        "/ws", 101, ann.id, "INFO")
    [not_found] = [r for r in access if r["status"] == 404]
    assert (not_found["route"], not_found["level"], not_found["user_id"]) == (
        "/api/chats/{chat_id}", "WARNING", ann.id)
    [refused] = [r for r in access if r["status"] == 401]
    assert refused["route"] == "/api/auth/login" and "user_id" not in refused
    [failure] = [r for r in records if r["logger"] == "messenger.http"]
    assert failure["request_id"] == undecodable.header("X-Request-ID"), failure
    assert failure["level"] == "WARNING" and "Invalid unicode" in failure["message"]
    assert by_id[failure["request_id"]]["status"] == 400


# -- LOG_FORMAT unset: text as before ----------------------------------------------------------
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL)"
                       r" [\w.]+: .*")


async def test_text_lines_stay_as_before(tmp_path: Path) -> None:
    server = MessengerServer(env_for(tmp_path)).start()
    try:
        api = Api(server.base_url)
        ann = await api.register(password=PASSWORD)
        missing = await api.get("/api/chats/0123456789abcdef01234567?limit=5",
                                token=ann.access_token)
        assert missing.status == 404 and HEX_ID.fullmatch(missing.header("X-Request-ID"))
        client, _ = await ws_handshake(server.base_url, ann.access_token, "text-ws")
        client.close()
    finally:
        log = stopped_log(server)
    # a record is a text line (its traceback, or a log-mode email, continues on the next ones)
    records = [line.rstrip("\n") for line in log if re.match(r"\d{4}-\d\d-\d\d ", line)]
    assert records[0] == log[0].rstrip("\n") and all(TEXT_LINE.fullmatch(r) for r in records)
    assert not any(line.startswith("{") for line in log)
    access = [line.split(" messenger.access: ", 1)[1].rstrip("\n") for line in log
              if " messenger.access: " in line]
    assert re.fullmatch(r"101 GET /ws\?token=\[redacted\] \d+\.\dms", access[-1]), access
    assert re.fullmatch(r"404 GET /api/chats/0123456789abcdef01234567\?limit=5 \d+\.\dms",
                        access[-2]), access
    assert ann.access_token not in "".join(log)


# -- request ids ------------------------------------------------------------------------------
async def test_every_answer_carries_a_request_id(tmp_path: Path) -> None:
    server = MessengerServer(env_for(tmp_path)).start()
    try:
        api = Api(server.base_url)
        longest = "a" * request_ids.MAX_LENGTH
        for sent, echoed in [("abc-123", "abc-123"), ("A.b_c:d=e+f/g-1", "A.b_c:d=e+f/g-1"),
                             (longest, longest), (longest + "a", None), ("a b", None),
                             ("a;b", None), ("", None), ("é", None), ("one,two", None)]:
            resp = await api.get("/api/healthz", headers={"X-Request-ID": sent})
            got = resp.header("X-Request-ID")
            assert got == echoed if echoed else HEX_ID.fullmatch(got), (sent, got)
        ids = {(await api.get(path)).header("X-Request-ID")
               for path in ("/api/healthz", "/no/such/path", "/api/users/me", "/ws")}
        assert len(ids) == 4 and all(HEX_ID.fullmatch(value) for value in ids)
    finally:
        server.stop()


def test_accepted_request_ids() -> None:
    assert request_ids.accepted("0f8fad5b-d9cb-469f-a165-70867728950e")
    assert request_ids.accepted("Root=1-5759e988-bd862e3fe1be46a994272793") is not None
    for bad in (None, "", "x" * 129, "a\nb", "a\tb", "a\"b", "<script>", "ü"):
        assert request_ids.accepted(bad) is None, bad
    assert HEX_ID.fullmatch(request_ids.new_request_id())


# -- the formatter ----------------------------------------------------------------------------
def json_lines(emit: Any) -> list[dict[str, Any]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"test.logs.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    emit(logger)
    lines = stream.getvalue().splitlines()
    return [orjson.loads(line) for line in lines]


def test_an_exception_is_one_line_with_its_traceback() -> None:
    def emit(logger: logging.Logger) -> None:
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            logger.exception("failed:\n  %s", "two lines")

    [record] = json_lines(emit)
    assert record["message"] == "failed:\n  two lines" and record["level"] == "ERROR"
    assert record["exception"].startswith("Traceback (most recent call last):")
    assert record["exception"].endswith("ValueError: bad\nthing")


def test_fields_never_replace_the_fixed_keys() -> None:
    calls: list[int] = []

    def lazy() -> dict[str, Any]:
        calls.append(1)
        return {"level": "FAKE", "time": "then", "logger": "other", "message": "replaced",
                "status": 201}

    def emit(logger: logging.Logger) -> None:
        logger.info("plain")
        logger.warning("with %s", "fields", extra=fields({"count": 3, "path": None}))
        logger.info("lazy", extra=fields(lazy))

    plain, with_fields, lazy_record = json_lines(emit)
    assert set(plain) == {"time", "level", "logger", "message"}
    assert with_fields["message"] == "with fields" and with_fields["count"] == 3
    assert with_fields["path"] is None
    assert calls == [1]
    assert (lazy_record["level"], lazy_record["logger"], lazy_record["message"],
            lazy_record["status"]) == ("INFO", plain["logger"], "replaced", 201)
    assert ISO_UTC.fullmatch(lazy_record["time"])


def test_iso_time_is_utc_with_milliseconds() -> None:
    assert iso_time(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(1_790_000_000.1234) == "2026-09-21T14:13:20.123Z"


# -- route templates --------------------------------------------------------------------------
def test_every_route_template_is_found_from_its_handler_and_path() -> None:
    templates = RouteTemplates(ROUTES, to_pattern)
    for template, handler_class in ROUTES:
        path = re.sub(r"\{\w+\}", "0123456789abcdef01234567", template)
        assert templates.template(handler_class, path) == template


def test_a_handler_on_several_routes_is_told_apart_by_path() -> None:
    class Pages:
        pass

    class Other:
        pass

    templates = RouteTemplates([("/app/", Pages), ("/app/{path}", Pages), ("/x", Other)],
                               to_pattern)
    assert templates.template(Pages, "/app/") == "/app/"
    assert templates.template(Pages, "/app/main.js") == "/app/{path}"
    assert templates.template(Pages, "/elsewhere") is None
    assert templates.template(Other, "/x") == "/x"
    assert templates.template(object, "/x") is None

