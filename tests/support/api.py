"""A small HTTP client for the tests: real requests over real sockets to the messenger."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

AsyncHTTPClient.configure(None, max_clients=200)


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def error_code(self) -> str:
        return self.json["error"]["code"]

    def header(self, name: str, default: str = "") -> str:
        """A response header, looked up case-insensitively."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default


@dataclass
class Account:
    user: dict[str, Any]
    access_token: str
    refresh_token: str
    email: str
    password: str

    @property
    def id(self) -> str:
        return self.user["id"]


@dataclass
class Api:
    base_url: str
    client: AsyncHTTPClient = field(default_factory=AsyncHTTPClient)

    async def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        token: str | None = None,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if json is not None:
            body = orjson.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        req = HTTPRequest(
            self.base_url + path,
            method=method,
            headers=hdrs,
            body=body,
            allow_nonstandard_methods=True,
            request_timeout=30,
        )
        resp = await self.client.fetch(req, raise_error=False)
        if resp.code == 599:
            raise ConnectionError(f"{method} {path}: {resp.error}")
        return Response(resp.code, resp.body or b"", dict(resp.headers))

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> Response:
        return await self.request("POST", path, json, **kw)

    async def register(
        self, email: str | None = None, password: str = "correct horse battery", name: str = "Ann"
    ) -> Account:
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
        resp = await self.post(
            "/api/auth/register", {"email": email, "password": password, "display_name": name}
        )
        assert resp.status == 201, resp.body
        body = resp.json
        return Account(body["user"], body["access_token"], body["refresh_token"], email, password)

    async def create_group(
        self, owner: Account, *members: Account, title: str | None = None
    ) -> dict[str, Any]:
        """Create a group chat of ``owner`` and ``members``; asserts 201, returns the chat."""
        body: dict[str, Any] = {"type": "group", "member_ids": [m.id for m in members]}
        if title is not None:
            body["title"] = title
        resp = await self.post("/api/chats", body, token=owner.access_token)
        assert resp.status == 201, resp.body
        return resp.json

    async def get_chat(self, who: Account, chat_id: str) -> dict[str, Any]:
        """One chat as ``who`` sees it; asserts 200."""
        resp = await self.get(f"/api/chats/{chat_id}", token=who.access_token)
        assert resp.status == 200, resp.body
        return resp.json

    async def send_text(
        self, sender: Account, chat_id: str, text: str, client_msg_id: str | None = None
    ) -> dict[str, Any]:
        """Send a message; asserts 201 (a new message), returns it."""
        body: dict[str, Any] = {"text": text}
        if client_msg_id is not None:
            body["client_msg_id"] = client_msg_id
        resp = await self.post(f"/api/chats/{chat_id}/messages", body, token=sender.access_token)
        assert resp.status == 201, resp.body
        return resp.json


def is_json_response(resp: Response) -> bool:
    return resp.header("Content-Type").split(";")[0].strip() == "application/json"


def expect_error(
    resp: Response, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    """Assert an error response: status, JSON content type, the envelope, the code (and field).

    Returns the ``error`` object. ``validation_error`` responses must always name a field.
    """
    assert resp.status == status, (resp.status, resp.body[:500])
    assert is_json_response(resp), resp.header("Content-Type")
    body = resp.json
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error = body["error"]
    assert error.get("code") == code, error
    assert isinstance(error.get("message"), str) and error["message"], error
    if code == "validation_error" or field is not None:
        assert isinstance(error.get("field"), str), error
    if field is not None:
        assert error["field"] == field, error
    if status == 401:
        assert resp.header("WWW-Authenticate").startswith("Bearer"), resp.headers
    return error


async def expect_chat_hidden(api: Api, chat_id: str, token: str) -> None:
    """Every chat route answers 404 ``chat_not_found`` for this chat id and caller."""
    expect_error(await api.get(f"/api/chats/{chat_id}", token=token), 404, "chat_not_found")
    resp = await api.get(f"/api/chats/{chat_id}/messages", token=token)
    expect_error(resp, 404, "chat_not_found")
    resp = await api.post(f"/api/chats/{chat_id}/messages", {"text": "let me in"}, token=token)
    expect_error(resp, 404, "chat_not_found")
    resp = await api.post(f"/api/chats/{chat_id}/read", {"seq": 1}, token=token)
    expect_error(resp, 404, "chat_not_found")
    some_user = "0123456789abcdef01234567"
    resp = await api.post(f"/api/chats/{chat_id}/members", {"user_ids": [some_user]}, token=token)
    expect_error(resp, 404, "chat_not_found")
    resp = await api.request("DELETE", f"/api/chats/{chat_id}/members/{some_user}", token=token)
    expect_error(resp, 404, "chat_not_found")
