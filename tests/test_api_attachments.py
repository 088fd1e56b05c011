"""Uploads and attachments end to end (API_CONTRACT.md §9), with the messenger running as its
own process: against a real S3 API (moto's server on loopback) on both stores, and in the
default local-disk mode. Bytes go up and come down through the signed URLs with a real HTTP
client, exactly as a client would send them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse

from tests.conftest import server_env
from tests.support.api import Account, Api, Response, expect_error
from tests.support.moto_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoServer
from tests.support.processes import MessengerServer

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.7\n" + b"x" * 500
NOT_PNG = b"this is text pretending to be an image".ljust(len(PNG), b".")
ID = re.compile(r"^[0-9a-f]{24}$")


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.close()


@pytest.fixture(scope="module", params=["sqlite", "mongo"])
def s3_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, moto: MotoServer
) -> Iterator[MessengerServer]:
    """The messenger with attachments in a bucket of its own on moto (created at start)."""
    tmp_dir = str(tmp_path_factory.mktemp(f"s3-{request.param}"))
    bucket = f"attachments-{uuid.uuid4().hex[:12]}"
    env = {**server_env(request.param, request, tmp_dir), **moto.env(bucket),
           "UPLOAD_MAX_BYTES": "100000"}
    proc = MessengerServer(env).start()
    proc.backend = request.param  # type: ignore[attr-defined]
    proc.bucket = bucket  # type: ignore[attr-defined]
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def s3(moto: MotoServer) -> Any:
    """A plain boto3 client on moto, to look into the bucket from outside."""
    return boto3.client(
        "s3",
        endpoint_url=moto.url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


# -- helpers ---------------------------------------------------------------------------------------
async def raw(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> HTTPResponse:
    """A request with no bearer token and no redirect following (what a client does with a
    signed URL)."""
    return await AsyncHTTPClient().fetch(
        HTTPRequest(url, method=method, body=body, headers=headers or {},
                    follow_redirects=False, request_timeout=30,
                    allow_nonstandard_methods=True),
        raise_error=False,
    )


def as_response(resp: HTTPResponse) -> Response:
    return Response(resp.code, resp.body or b"", dict(resp.headers))


async def start_upload(
    api: Api, who: Account, size: int, content_type: str = "image/png", filename: str = "cat.png"
) -> dict[str, Any]:
    resp = await api.post(
        "/api/uploads",
        {"filename": filename, "content_type": content_type, "size": size},
        token=who.access_token,
    )
    assert resp.status == 201, resp.body
    return resp.json


async def put(ticket: dict[str, Any], data: bytes, content_type: str | None = None) -> HTTPResponse:
    request = ticket["upload_request"]
    headers = dict(request["headers"])
    if content_type is not None:
        headers["Content-Type"] = content_type
    return await raw(request["method"], request["url"], data, headers)


async def complete(api: Api, who: Account, upload_id: str) -> Response:
    return await api.post(f"/api/uploads/{upload_id}/complete", token=who.access_token)


async def ready_upload(
    api: Api, who: Account, data: bytes = PNG, content_type: str = "image/png",
    filename: str = "cat.png",
) -> dict[str, Any]:
    ticket = await start_upload(api, who, len(data), content_type, filename)
    stored = await put(ticket, data)
    assert stored.code == 200, stored.body
    resp = await complete(api, who, ticket["id"])
    assert resp.status == 200, resp.body
    return resp.json


async def send(
    api: Api, who: Account, chat_id: str, body: dict[str, Any]
) -> Response:
    return await api.post(f"/api/chats/{chat_id}/messages", body, token=who.access_token)


async def download_url(api: Api, who: Account, attachment_id: str) -> Response:
    return as_response(await raw(
        "GET", f"{api.base_url}/api/attachments/{attachment_id}",
        headers={"Authorization": f"Bearer {who.access_token}"},
    ))


async def trio(api: Api) -> tuple[Account, Account, Account, str]:
    """ann and bob share a group; eve is in no chat with them."""
    ann, bob, eve = await api.register(), await api.register(), await api.register()
    return ann, bob, eve, (await api.create_group(ann, bob))["id"]


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError:
        return False


def checked_copies(s3: Any, bucket: str, upload_id: str) -> list[str]:
    """The keys of the copies completion made of an upload (``attachments/<id>-<nonce>``)."""
    found = s3.list_objects_v2(Bucket=bucket, Prefix=f"attachments/{upload_id}")
    return [item["Key"] for item in found.get("Contents", [])]


async def swap_after_attaching(api: Api) -> tuple[dict[str, Any], HTTPResponse]:
    """Upload a PNG, complete it, post it — then PUT other bytes of the same length to the
    same, still valid, upload URL. Whatever that PUT answers, the other member downloads the
    bytes completion checked. Returns the ticket and the answer to the second PUT."""
    ann, bob, _eve, chat_id = await trio(api)
    ticket = await start_upload(api, ann, len(PNG))
    assert (await put(ticket, PNG)).code == 200
    assert (await complete(api, ann, ticket["id"])).json["status"] == "ready"
    sent = await send(api, ann, chat_id, {"attachment_ids": [ticket["id"]]})
    assert sent.status == 201, sent.body
    assert len(NOT_PNG) == len(PNG)
    swap = await put(ticket, NOT_PNG)
    again = await complete(api, ann, ticket["id"])  # completing again checks nothing new
    assert again.status == 200 and again.json["status"] == "ready", again.body
    for who in (bob, ann):
        redirect = await download_url(api, who, ticket["id"])
        assert redirect.status == 302, redirect.body
        fetched = await raw("GET", redirect.header("Location"))
        assert fetched.code == 200, fetched.body
        assert fetched.headers["Content-Type"] == "image/png"
        assert fetched.body == PNG
    return ticket, swap


async def full_flow(api: Api) -> tuple[dict[str, Any], HTTPResponse, dict[str, Any]]:
    """Upload, complete, attach, and fetch through the 302 as the other member.

    Returns the ticket, the response of the URL the 302 pointed at, and the message.
    """
    ann, bob, _eve, chat_id = await trio(api)
    ticket = await start_upload(api, ann, len(PNG), filename="Kätzchen 1.png")
    assert set(ticket) == {"id", "filename", "content_type", "size", "status", "created_at",
                           "upload_request"}
    assert ID.match(ticket["id"])
    assert (ticket["status"], ticket["size"], ticket["content_type"]) == (
        "pending", len(PNG), "image/png")
    request = ticket["upload_request"]
    assert request["method"] == "PUT" and request["headers"] == {"Content-Type": "image/png"}
    assert set(request) == {"method", "url", "headers", "expires_at"}

    stored = await put(ticket, PNG)
    assert stored.code == 200, stored.body
    resp = await complete(api, ann, ticket["id"])
    assert resp.status == 200, resp.body
    assert resp.json == {**{k: ticket[k] for k in ticket if k != "upload_request"},
                         "status": "ready"}

    sent = await send(api, ann, chat_id, {"attachment_ids": [ticket["id"]], "client_msg_id": "a"})
    assert sent.status == 201, sent.body
    message = sent.json
    attachment = {"id": ticket["id"], "filename": "Kätzchen 1.png", "content_type": "image/png",
                  "size": len(PNG)}
    assert message["text"] == "" and message["attachments"] == [attachment]
    page = await api.get(f"/api/chats/{chat_id}/messages", token=bob.access_token)
    assert page.json["messages"][-1] == message
    chat = await api.get_chat(bob, chat_id)
    assert chat["last_message"]["attachments"] == [attachment]

    redirect = await download_url(api, bob, ticket["id"])
    assert redirect.status == 302, redirect.body
    location = redirect.header("Location")
    assert redirect.json["url"] == location and "expires_at" in redirect.json
    as_json = await api.get(f"/api/attachments/{ticket['id']}?redirect=false",
                            token=ann.access_token)
    assert as_json.status == 200 and set(as_json.json) == {"url", "expires_at"}
    fetched = await raw("GET", location)
    assert fetched.code == 200, fetched.body
    assert fetched.body == PNG
    assert fetched.headers["Content-Type"] == "image/png"
    disposition = fetched.headers["Content-Disposition"]
    assert disposition.startswith("inline;") and "K%C3%A4tzchen%201.png" in disposition
    return ticket, fetched, message


# -- S3 (moto) -------------------------------------------------------------------------------------
async def test_s3_upload_attach_and_download(s3_server: Any, s3: Any) -> None:
    api = Api(s3_server.base_url)
    ticket, _fetched, _message = await full_flow(api)
    url = urlsplit(ticket["upload_request"]["url"])
    assert f"{url.scheme}://{url.netloc}" == s3.meta.endpoint_url
    assert url.path == f"/{s3_server.bucket}/uploads/{ticket['id']}"
    # Type and length are signed: a real S3 refuses any other with 403.
    signed = parse_qs(url.query)["X-Amz-SignedHeaders"][0].split(";")
    assert {"content-length", "content-type", "host"} <= set(signed)
    # Completion copied the upload to a key of its own and dropped the upload's.
    [copy] = checked_copies(s3, s3_server.bucket, ticket["id"])
    assert copy.startswith(f"attachments/{ticket['id']}-")
    assert s3.get_object(Bucket=s3_server.bucket, Key=copy)["Body"].read() == PNG
    assert not object_exists(s3, s3_server.bucket, f"uploads/{ticket['id']}")


async def test_s3_bytes_put_after_completion_are_not_downloaded(s3_server: Any, s3: Any) -> None:
    api = Api(s3_server.base_url)
    ticket, swap = await swap_after_attaching(api)
    # S3 cannot tell that the upload is complete: the PUT is stored, at the upload's key,
    # which nothing downloads from.
    assert swap.code == 200, swap.body
    bucket = s3_server.bucket
    assert s3.get_object(Bucket=bucket, Key=f"uploads/{ticket['id']}")["Body"].read() == NOT_PNG
    [copy] = checked_copies(s3, bucket, ticket["id"])
    assert s3.get_object(Bucket=bucket, Key=copy)["Body"].read() == PNG


async def test_s3_bucket_was_created_at_start(s3_server: Any, s3: Any) -> None:
    s3.head_bucket(Bucket=s3_server.bucket)


async def test_s3_wrong_size_is_refused_and_the_object_deleted(s3_server: Any, s3: Any) -> None:
    api = Api(s3_server.base_url)
    ann = await api.register()
    ticket = await start_upload(api, ann, len(PNG))
    assert (await put(ticket, PNG + b"extra")).code == 200  # moto does not check signatures
    error = expect_error(await complete(api, ann, ticket["id"]), 422, "upload_size_mismatch")
    assert str(len(PNG)) in error["message"]
    assert not object_exists(s3, s3_server.bucket, f"uploads/{ticket['id']}")
    assert checked_copies(s3, s3_server.bucket, ticket["id"]) == []
    # The same ticket still works for a correct upload.
    assert (await put(ticket, PNG)).code == 200
    assert (await complete(api, ann, ticket["id"])).json["status"] == "ready"


async def test_s3_wrong_type_is_refused(s3_server: Any, s3: Any) -> None:
    api = Api(s3_server.base_url)
    ann = await api.register()
    # Declared image/png, uploaded as image/png, but the bytes are not a PNG.
    ticket = await start_upload(api, ann, len(NOT_PNG))
    assert (await put(ticket, NOT_PNG)).code == 200
    error = expect_error(await complete(api, ann, ticket["id"]), 422, "upload_type_mismatch")
    assert "image/png" in error["message"]
    assert not object_exists(s3, s3_server.bucket, f"uploads/{ticket['id']}")
    assert checked_copies(s3, s3_server.bucket, ticket["id"]) == []
    # A real PNG stored under another Content-Type than the declared one.
    ticket = await start_upload(api, ann, len(PNG))
    assert (await put(ticket, PNG, content_type="text/plain")).code == 200
    expect_error(await complete(api, ann, ticket["id"]), 422, "upload_type_mismatch")
    # The type is checked when the upload starts, too.
    resp = await api.post("/api/uploads", {"filename": "x.svg", "content_type": "image/svg+xml",
                                           "size": 10}, token=ann.access_token)
    expect_error(resp, 422, "content_type_not_allowed", field="content_type")


async def test_s3_complete_before_upload(s3_server: Any) -> None:
    api = Api(s3_server.base_url)
    ann = await api.register()
    ticket = await start_upload(api, ann, 10, "text/plain", "a.txt")
    expect_error(await complete(api, ann, ticket["id"]), 409, "upload_missing")


async def test_s3_someone_elses_upload_is_refused(s3_server: Any) -> None:
    api = Api(s3_server.base_url)
    ann, bob, _eve, chat_id = await trio(api)
    upload = await ready_upload(api, ann)
    resp = await send(api, bob, chat_id, {"text": "mine now", "attachment_ids": [upload["id"]]})
    error = expect_error(resp, 422, "unknown_attachments", field="attachment_ids")
    assert error["attachment_id"] == upload["id"]
    expect_error(await complete(api, bob, upload["id"]), 404, "upload_not_found")
    ticket = await start_upload(api, ann, len(PNG))
    expect_error(await complete(api, bob, ticket["id"]), 404, "upload_not_found")
    expect_error(await complete(api, ann, "not-an-id"), 404, "upload_not_found")


async def test_s3_non_member_download_is_refused(s3_server: Any) -> None:
    api = Api(s3_server.base_url)
    ann, bob, eve, chat_id = await trio(api)
    upload = await ready_upload(api, ann, PDF, "application/pdf", "report.pdf")
    # Not posted yet: nobody may download it, its uploader included.
    expect_error(await download_url(api, ann, upload["id"]), 404, "attachment_not_found")
    assert (await send(api, ann, chat_id, {"text": "the report",
                                            "attachment_ids": [upload["id"]]})).status == 201
    expect_error(await download_url(api, eve, upload["id"]), 404, "attachment_not_found")
    for unknown in ("6745a1f0c2b9e81d4a3f0e41", "nope"):
        expect_error(await download_url(api, bob, unknown), 404, "attachment_not_found")
    redirect = await download_url(api, bob, upload["id"])
    assert redirect.status == 302
    fetched = await raw("GET", redirect.header("Location"))
    assert fetched.code == 200 and fetched.body == PDF
    assert fetched.headers["Content-Disposition"].startswith('attachment; filename="report.pdf"')


async def test_s3_attachment_rules_on_send(s3_server: Any) -> None:
    api = Api(s3_server.base_url)
    ann, _bob, _eve, chat_id = await trio(api)
    upload = await ready_upload(api, ann)
    first = await send(api, ann, chat_id, {"text": "x", "client_msg_id": "c1",
                                           "attachment_ids": [upload["id"]]})
    assert first.status == 201, first.body
    # Retrying the same send answers with the original; another message may not take it.
    retry = await send(api, ann, chat_id, {"text": "x", "client_msg_id": "c1",
                                           "attachment_ids": [upload["id"]]})
    assert retry.status == 200 and retry.json == first.json, retry.body
    resp = await send(api, ann, chat_id, {"text": "again", "attachment_ids": [upload["id"]]})
    expect_error(resp, 409, "attachment_in_use", field="attachment_ids")
    pending = await start_upload(api, ann, len(PNG))
    resp = await send(api, ann, chat_id, {"text": "early", "attachment_ids": [pending["id"]]})
    expect_error(resp, 409, "attachment_not_ready", field="attachment_ids")
    other = await ready_upload(api, ann)
    for bad in ([other["id"], other["id"]], ["nope"], [other["id"]] * 11, "x", [1]):
        resp = await send(api, ann, chat_id, {"text": "x", "attachment_ids": bad})
        expect_error(resp, 422, "validation_error", field="attachment_ids")
    # Text: optional with attachments, required (and not blank) without.
    expect_error(await send(api, ann, chat_id, {"attachment_ids": []}), 422, "validation_error",
                 field="text")
    expect_error(await send(api, ann, chat_id, {"text": " ", "attachment_ids": [other["id"]]}),
                 422, "validation_error", field="text")
    resp = await send(api, ann, chat_id, {"text": None, "attachment_ids": [other["id"]]})
    assert resp.status == 201 and resp.json["text"] == "", resp.body
    plain = await send(api, ann, chat_id, {"text": "no files"})
    assert plain.json["attachments"] == []


async def test_s3_upload_request_validation(s3_server: Any) -> None:
    api = Api(s3_server.base_url)
    ann = await api.register()
    good = {"filename": "a.txt", "content_type": "text/plain", "size": 10}
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({**good, "size": 100_001}, 422, "upload_too_large", "size"),
        ({**good, "size": 0}, 422, "validation_error", "size"),
        ({**good, "size": "10"}, 422, "validation_error", "size"),
        ({**good, "size": True}, 422, "validation_error", "size"),
        ({**good, "filename": "  "}, 422, "validation_error", "filename"),
        ({**good, "filename": "a\nb"}, 422, "validation_error", "filename"),
        ({**good, "filename": "x" * 256}, 422, "validation_error", "filename"),
        ({k: v for k, v in good.items() if k != "content_type"}, 422, "validation_error",
         "content_type"),
        ({**good, "content_type": "text/plain; charset=utf-8"}, 422, "content_type_not_allowed",
         "content_type"),
    ]
    for body, status, code, field in cases:
        expect_error(await api.post("/api/uploads", body, token=ann.access_token), status, code,
                     field=field)
    expect_error(await api.post("/api/uploads", good), 401, "unauthorized")
    expect_error(await api.get(f"/api/attachments/{'0' * 24}"), 401, "unauthorized")
    # Local storage's URLs do not exist when S3 is configured.
    expect_error(await api.get("/api/storage/abc.def"), 404, "not_found")


# -- local disk (the default: no S3 configured) ------------------------------------------------
async def test_local_upload_attach_and_download(server: Any) -> None:
    api = Api(server.base_url)
    ticket, fetched, _message = await full_flow(api)
    assert ticket["upload_request"]["url"].startswith(f"{server.base_url}/api/storage/")
    assert fetched.headers["X-Content-Type-Options"] == "nosniff"
    assert fetched.headers["Content-Security-Policy"] == "sandbox"
    assert fetched.headers["Content-Length"] == str(len(PNG))


async def test_local_bytes_put_after_completion_are_refused(server: Any) -> None:
    api = Api(server.base_url)
    _ticket, swap = await swap_after_attaching(api)
    # Local storage knows the upload is complete: completion ended its URL.
    error = expect_error(as_response(swap), 403, "invalid_signature")
    assert "complete" in error["message"]


async def test_local_wrong_type_and_size(server: Any) -> None:
    api = Api(server.base_url)
    ann = await api.register()
    ticket = await start_upload(api, ann, len(NOT_PNG))
    assert (await put(ticket, NOT_PNG)).code == 200
    expect_error(await complete(api, ann, ticket["id"]), 422, "upload_type_mismatch")
    # The local PUT itself enforces the signed length and type, before reading the body.
    ticket = await start_upload(api, ann, len(PNG))
    expect_error(as_response(await put(ticket, PNG + b"!")), 422, "upload_size_mismatch")
    expect_error(as_response(await put(ticket, PNG[:-1])), 422, "upload_size_mismatch")
    expect_error(as_response(await put(ticket, PNG, content_type="image/gif")), 422,
                 "upload_type_mismatch")
    expect_error(await complete(api, ann, ticket["id"]), 409, "upload_missing")
    assert (await put(ticket, PNG)).code == 200
    assert (await complete(api, ann, ticket["id"])).json["status"] == "ready"


async def test_local_signed_urls_are_checked(server: Any) -> None:
    api = Api(server.base_url)
    ann, bob, _eve, chat_id = await trio(api)
    ticket = await start_upload(api, ann, len(PNG))
    url = ticket["upload_request"]["url"]
    head, _, tail = url.rpartition(".")
    tampered = head[:-1] + ("A" if head[-1] != "A" else "B") + "." + tail
    resp = as_response(await raw("PUT", tampered, PNG, {"Content-Type": "image/png"}))
    expect_error(resp, 403, "invalid_signature")
    expect_error(as_response(await raw("GET", url)), 403, "invalid_signature")  # a PUT grant
    expect_error(as_response(await raw("GET", f"{server.base_url}/api/storage/x.y")), 403,
                 "invalid_signature")
    assert (await put(ticket, PNG)).code == 200
    await complete(api, ann, ticket["id"])
    assert (await send(api, ann, chat_id, {"attachment_ids": [ticket["id"]]})).status == 201
    location = (await download_url(api, bob, ticket["id"])).header("Location")
    resp = as_response(await raw("PUT", location, PNG, {"Content-Type": "image/png"}))
    expect_error(resp, 403, "invalid_signature")  # a GET grant
    assert (await raw("GET", location)).body == PNG


# -- the S3 adapter itself, on moto ----------------------------------------------------------------
async def test_s3_storage_adapter(moto: MotoServer, s3: Any) -> None:
    from messenger.storage.s3 import S3Storage

    bucket = f"adapter-{uuid.uuid4().hex[:12]}"
    storage = S3Storage(
        endpoint=moto.url, public_endpoint="http://files.example.test:9000", region="eu-west-1",
        bucket=bucket, access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_ACCESS_KEY,
        create_bucket=True,
    )
    await storage.start()
    try:
        assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
        await storage.start()  # harmless twice
        request = await storage.presign_upload("attachments/a", content_type="image/png",
                                               size=len(PNG), expires_in=60)
        # URLs name the public endpoint; the server itself talks to the internal one.
        assert request.url.startswith(f"http://files.example.test:9000/{bucket}/attachments/a?")
        assert await storage.head("attachments/a") is None
        assert await storage.read_start("attachments/a", 8) == b""
        s3.put_object(Bucket=bucket, Key="attachments/a", Body=PNG, ContentType="image/png")
        info = await storage.head("attachments/a")
        assert info is not None and (info.size, info.content_type) == (len(PNG), "image/png")
        assert await storage.read_start("attachments/a", 8) == PNG[:8]
        s3.put_object(Bucket=bucket, Key="attachments/empty", Body=b"")
        assert await storage.read_start("attachments/empty", 8) == b""
        # A server-side copy keeps the type and does not follow later writes to its source.
        assert not await storage.copy("uploads/none", "attachments/none")
        assert await storage.copy("attachments/a", "attachments/a-copy")
        s3.put_object(Bucket=bucket, Key="attachments/a", Body=b"other", ContentType="text/plain")
        copied = await storage.head("attachments/a-copy")
        assert copied is not None and (copied.size, copied.content_type) == (len(PNG), "image/png")
        assert await storage.read_start("attachments/a-copy", len(PNG)) == PNG
        await storage.delete("attachments/a")
        await storage.delete("attachments/a")  # missing: fine
        assert await storage.head("attachments/a") is None
    finally:
        await storage.close()
        await storage.close()


async def test_s3_down_answers_storage_unavailable(tmp_path: Any) -> None:
    """With the storage not answering, the calls that need it fail with 503
    ``storage_unavailable`` (presigning needs no round trip and still works)."""
    from messenger import errors
    from messenger.attachments import AttachmentService
    from messenger.storage.s3 import S3Storage
    from messenger.store.sqlite import SQLiteStore
    from tests.support.processes import free_port

    store = SQLiteStore(tmp_path / "db.sqlite3")
    await store.migrate()
    storage = S3Storage(
        endpoint=f"http://127.0.0.1:{free_port()}", public_endpoint=None, region=REGION,
        bucket="nowhere", access_key_id="k", secret_access_key="s", create_bucket=False,
    )
    await storage.start()
    service = AttachmentService(store, storage, max_bytes=100, allowed_types=["text/plain"],
                                url_ttl=60, orphan_age=3600, max_per_message=3)
    try:
        user = await store.create_user("a@example.com", b"x", "A")
        upload, _ = await service.create_upload(user.id, "a.txt", "text/plain", 3)
        with pytest.raises(errors.StorageUnavailable) as caught:
            await service.complete(user.id, upload.id)
        assert (caught.value.status, caught.value.code) == (503, "storage_unavailable")
    finally:
        await storage.close()
        await store.close()
