"""Uploads and attachments (API_CONTRACT.md §9): POST /api/uploads, POST
/api/uploads/{upload_id}/complete and GET /api/attachments/{attachment_id}."""

from __future__ import annotations

from handlers.base import BaseHandler
from messenger import validation
from messenger.storage import SignedRequest

CONTENT_TYPE_MAX = 255


class UploadUrlMixin(BaseHandler):
    def absolute_url(self, url: str) -> str:
        """Local storage hands out paths on this server; clients get absolute URLs."""
        if not url.startswith("/"):
            return url
        base = self.services.settings.public_base_url
        if base is None:
            base = f"{self.request.protocol}://{self.request.host}"
        return base + url

    def signed_json(self, request: SignedRequest) -> dict[str, object]:
        return request.to_json(self.absolute_url(request.url))


class UploadsHandler(UploadUrlMixin):
    async def post(self) -> None:
        body = self.json_body()
        filename = validation.filename(body)
        content_type = validation.string(body, "content_type", max_len=CONTENT_TYPE_MAX)
        assert content_type is not None
        size = validation.integer(body, "size", minimum=1)
        upload, request = await self.services.attachments.create_upload(
            self.user_id, filename, content_type, size
        )
        self.send_json({**upload.to_json(), "upload_request": self.signed_json(request)}, 201)


class UploadCompleteHandler(BaseHandler):
    async def post(self, upload_id: str) -> None:
        upload = await self.services.attachments.complete(self.user_id, upload_id)
        self.send_json(upload.to_json())


class AttachmentHandler(UploadUrlMixin):
    async def get(self, attachment_id: str) -> None:
        redirect = self.get_query_argument("redirect", "true").strip().lower()
        if redirect not in ("true", "false", "1", "0"):
            raise validation.ValidationFailed("redirect", "redirect must be true or false")
        request = await self.services.attachments.download(self.user_id, attachment_id)
        body = {
            "url": self.absolute_url(request.url),
            "expires_at": request.to_json()["expires_at"],
        }
        if redirect in ("false", "0"):
            self.send_json(body)
            return
        self.set_header("Location", body["url"])
        self.send_json(body, status=302)
