"""The uploads-and-attachments part of the OpenAPI document (API_CONTRACT.md §9).

Kept apart from ``api_spec`` like the real-time part; ``build_spec`` merges these paths and
schemas. ``Message.attachments`` and the send body's ``attachment_ids`` live in ``api_spec``.
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings
from messenger import api_spec_parts as parts

_EXAMPLE_UPLOAD_ID = "6745a1f0c2b9e81d4a3f0e41"
_EXAMPLE_EXPIRY = "2026-11-26T12:39:56.789Z"
_S3_URL = (
    "https://s3.example.com/messenger-attachments/uploads/6745a1f0c2b9e81d4a3f0e41"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost"
)


def _upload_example(status: str) -> dict[str, Any]:
    return {
        "id": _EXAMPLE_UPLOAD_ID,
        "filename": "cat.png",
        "content_type": "image/png",
        "size": 48213,
        "status": status,
        "created_at": parts.EXAMPLE_TIME,
    }


def _filename() -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": parts.FILENAME_MAX}


def _content_type(settings: Settings) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "examples": list(settings.upload_allowed_types),
        "description": "One of UPLOAD_ALLOWED_TYPES (default: "
        f"{', '.join(settings.upload_allowed_types)}); compared lower-cased, no parameters.",
    }


def _size(settings: Settings, description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "integer",
        "minimum": 1,
        "maximum": settings.upload_max_bytes,
    }
    if description:
        schema["description"] = description
    return schema


def _upload_properties(settings: Settings) -> dict[str, Any]:
    return {
        "id": parts.id_schema("The upload's id; also the attachment's id once posted."),
        "filename": _filename(),
        "content_type": {"type": "string"},
        "size": _size(settings, "Bytes."),
        "status": {
            "type": "string",
            "enum": ["pending", "ready"],
            "description": "pending until completed, then ready.",
        },
        "created_at": parts.timestamp(),
    }


def attachment_schemas(settings: Settings) -> dict[str, Any]:
    ticket = _upload_properties(settings)
    ticket["upload_request"] = parts.ref("SignedRequest")
    return {
        "Attachment": parts.object_schema(
            {
                "id": parts.id_schema("The upload's id."),
                "filename": _filename(),
                "content_type": {"type": "string"},
                "size": {"type": "integer", "minimum": 1, "description": "Bytes."},
            },
            description="A file a message carries; download it with GET "
            "/api/attachments/{id}.",
            examples=[
                {"id": _EXAMPLE_UPLOAD_ID, "filename": "cat.png", "content_type": "image/png",
                 "size": 48213}
            ],
        ),
        "Upload": parts.object_schema(
            _upload_properties(settings),
            description="A file the caller uploads, before it is attached to a message.",
            examples=[_upload_example("ready")],
        ),
        "SignedRequest": parts.object_schema(
            {
                "method": {"type": "string", "const": "PUT"},
                "url": {
                    "type": "string",
                    "format": "uri",
                    "description": "Presigned S3 URL, or /api/storage/{token} on this server "
                    "(local storage). No bearer token: the URL is the credential.",
                },
                "headers": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "Send exactly these (Content-Type); the body must be "
                    "exactly `size` bytes.",
                },
                "expires_at": parts.timestamp(),
            },
            description="How to send the file's bytes (UPLOAD_URL_TTL_SECONDS).",
        ),
        "UploadTicket": parts.object_schema(
            ticket,
            description="A new upload and the signed request that uploads its bytes.",
            examples=[
                {
                    **_upload_example("pending"),
                    "upload_request": {
                        "method": "PUT",
                        "url": _S3_URL,
                        "headers": {"Content-Type": "image/png"},
                        "expires_at": _EXAMPLE_EXPIRY,
                    },
                }
            ],
        ),
        "AttachmentUrl": parts.object_schema(
            {
                "url": {
                    "type": "string",
                    "format": "uri",
                    "description": "Short-lived download URL (UPLOAD_URL_TTL_SECONDS).",
                },
                "expires_at": parts.timestamp(),
            },
            examples=[{"url": _S3_URL, "expires_at": _EXAMPLE_EXPIRY}],
        ),
        "Stored": parts.object_schema(
            {"status": {"type": "string", "const": "stored"}},
            examples=[{"status": "stored"}],
        ),
    }


def attachment_paths(settings: Settings) -> dict[str, Any]:
    auth, body, server = parts.AUTH_ERRORS, parts.BODY_ERRORS, parts.SERVER_ERRORS
    upload_param = parts.path_param(
        "upload_id", "Upload id; unknown, malformed, expired or someone else's -> 404."
    )
    attachment_param = parts.path_param(
        "attachment_id", "Attachment (upload) id; unknown or not visible to the caller -> 404."
    )
    token_param = {
        "name": "token",
        "in": "path",
        "required": True,
        "description": "The signed grant (base64url payload '.' base64url HMAC).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 4096},
    }
    storage = "storage_unavailable"
    return {
        "/api/uploads": {
            "post": parts.operation(
                "createUpload",
                "attachments",
                "Start an upload: a pending upload and a signed PUT for its bytes",
                {
                    "201": parts.ok("The upload and how to send its bytes.",
                                    parts.ref("UploadTicket")),
                    **parts.error_responses(
                        *auth, *body, "upload_too_large", "content_type_not_allowed", *server,
                        storage, field="size",
                    ),
                },
                description="Then PUT the bytes as upload_request says and complete the "
                "upload (API_CONTRACT.md §9).",
                request_body=parts.json_body(
                    parts.request_object(
                        {
                            "filename": _filename(),
                            "content_type": _content_type(settings),
                            "size": _size(settings, "Bytes (UPLOAD_MAX_BYTES)."),
                        },
                        ["filename", "content_type", "size"],
                    ),
                    {"filename": "cat.png", "content_type": "image/png", "size": 48213},
                ),
            )
        },
        "/api/uploads/{upload_id}/complete": {
            "post": parts.operation(
                "completeUpload",
                "attachments",
                "Check the uploaded object and mark the upload ready",
                {
                    "200": parts.ok("The upload, status ready.", parts.ref("Upload")),
                    **parts.error_responses(
                        *auth, "upload_not_found", "upload_missing", "upload_size_mismatch",
                        "upload_type_mismatch", *server, storage,
                    ),
                },
                description="Copies the uploaded object to a key no upload URL points at and "
                "checks that copy's size, type and, for images and PDF, its first bytes; the "
                "checked copy is what recipients download. A refused object is deleted. "
                "No body.",
                parameters=[upload_param],
            )
        },
        "/api/attachments/{attachment_id}": {
            "get": parts.operation(
                "getAttachment",
                "attachments",
                "Redirect to a short-lived download URL",
                {
                    "200": parts.ok("With ?redirect=false: the download URL.",
                                    parts.ref("AttachmentUrl")),
                    "302": {
                        "description": "Location: the download URL (also in the body).",
                        "headers": {
                            "Location": {
                                "description": "The download URL.",
                                "schema": {"type": "string", "format": "uri"},
                            }
                        },
                        "content": parts.json_content(parts.ref("AttachmentUrl")),
                    },
                    **parts.error_responses(
                        *auth, "attachment_not_found", "validation_error", *server, storage,
                        field="redirect",
                    ),
                },
                description="Only for members of a chat where a message carrying it was "
                "posted; to anyone else 404, as for an unknown id.",
                parameters=[
                    attachment_param,
                    {
                        "name": "redirect",
                        "in": "query",
                        "required": False,
                        "description": "false: answer 200 with the URL instead of a 302.",
                        "schema": {"type": "string", "enum": ["true", "false", "1", "0"],
                                   "default": "true"},
                    },
                ],
            )
        },
        "/api/storage/{token}": {
            "put": parts.operation(
                "putStoredObject",
                "attachments",
                "Upload a file's bytes (local storage only; signed URL)",
                {
                    "200": parts.ok("Stored.", parts.ref("Stored")),
                    **parts.error_responses(
                        "invalid_signature", "not_found", "upload_size_mismatch",
                        "upload_type_mismatch", *server,
                    ),
                },
                auth=False,
                description="The URL of an UploadTicket when no S3 is configured. "
                "Content-Length and Content-Type must be the declared ones. Once the upload "
                "is complete the URL takes no more bytes (403 invalid_signature).",
                parameters=[token_param],
                request_body={
                    "required": True,
                    "content": {
                        "*/*": {"schema": {"type": "string", "format": "binary"}}
                    },
                },
            ),
            "get": parts.operation(
                "getStoredObject",
                "attachments",
                "Download a file (local storage only; signed URL)",
                {
                    "200": {
                        "description": "The file, with its Content-Type and "
                        "Content-Disposition.",
                        "content": {
                            "*/*": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    **parts.error_responses("invalid_signature", "not_found", "internal_error"),
                },
                auth=False,
                description="The URL GET /api/attachments/{id} redirects to when no S3 is "
                "configured.",
                parameters=[token_param],
            ),
        },
    }
