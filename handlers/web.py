"""The web client (``/app/``) and the API docs page (``/api/docs``): static files from
``messenger/web/`` (API_CONTRACT.md §12).

Only the files listed when the process starts are served, by name, from one flat folder per
route (``WebFiles``): a name that is not listed — a folder, a hidden file, ``..``, anything
with a slash — is 404 ``not_found`` in the JSON envelope, as for any unknown path, without
touching the disk. Every answer is ``Cache-Control: no-cache`` with an ETag made of the file's
modification time and size, so a browser revalidates each load (a deploy, or an edit while
developing, is seen at once; an unchanged file is a 304). HTML pages carry a
Content-Security-Policy that allows scripts from this server only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import tornado.web

from handlers.base import BaseHandler
from messenger.errors import ApiError, InternalError, MethodNotAllowed, NotFound
from messenger.jsonutil import dumps

if TYPE_CHECKING:
    from config import Settings

WEB_ROOT = Path(__file__).resolve().parents[1] / "messenger" / "web"
APP_DIR = WEB_ROOT / "app"
DOCS_DIR = WEB_ROOT / "docs"
SWAGGER_DIR = WEB_ROOT / "vendor" / "swagger-ui"
#: The vendored Swagger UI files the docs page loads (the rest of the folder is its licence).
SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
#: Types served with ``; charset=utf-8``.
TEXT_TYPES = ("text/", "application/json", "application/manifest+json", "image/svg+xml")


class WebFiles:
    """The files one route serves: URL name -> path relative to ``WEB_ROOT``. No I/O after
    construction."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = dict(files)

    @classmethod
    def folder(cls, folder: Path, *, only: Iterable[str] | None = None) -> WebFiles:
        """Every regular, non-hidden file directly in ``folder`` (or just those in ``only``)."""
        names = set(only) if only is not None else None
        found = {
            path.name: str(path.relative_to(WEB_ROOT))
            for path in (sorted(folder.iterdir()) if folder.is_dir() else [])
            if path.is_file() and not path.name.startswith(".")
            and (names is None or path.name in names)
        }
        return cls(found)

    def __or__(self, other: WebFiles) -> WebFiles:
        return WebFiles({**self.files, **other.files})

    def lookup(self, name: str) -> str:
        """The relative path of ``name``; ``NotFound`` when it is not one of the files."""
        try:
            return self.files[name]
        except KeyError:
            raise NotFound("no such resource") from None


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def storage_origins(settings: Settings) -> list[str]:
    """Origins the client PUTs uploads to and loads attachment previews from, besides this
    server: the S3 endpoint clients see (``S3_PUBLIC_ENDPOINT``, else ``S3_ENDPOINT``, else
    AWS's), or ``PUBLIC_BASE_URL`` for local storage (its signed URLs start with it)."""
    if settings.uses_s3:
        endpoint = settings.s3_public_endpoint or settings.s3_endpoint
        origin = _origin(endpoint) if endpoint else "https://*.amazonaws.com"
    else:
        origin = _origin(settings.public_base_url) if settings.public_base_url else None
    return [origin] if origin else []


def client_csp(settings: Settings, host: str) -> str:
    """The client page's policy: its own scripts and styles only; the API, this host's
    WebSocket and the storage origins for connections; images also from ``blob:``/``data:``."""
    extra = " ".join(storage_origins(settings))
    connect = f"'self' ws://{host} wss://{host} {extra}".strip()
    images = f"'self' data: blob: {extra}".strip()
    return (
        f"default-src 'self'; script-src 'self'; style-src 'self'; img-src {images}; "
        f"connect-src {connect}; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


#: The docs page's policy: Swagger UI sets inline styles and shows data: images.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


class WebFileHandler(tornado.web.StaticFileHandler):
    """Serve the file ``{path}`` names among ``files`` (subclasses set them), or ``page`` for
    a route without ``{path}``. Errors are the API's JSON envelope."""

    files = WebFiles({})
    page: str | None = None

    def initialize(self) -> None:  # type: ignore[override]
        super().initialize(path=str(WEB_ROOT))

    @property
    def messenger_settings(self) -> Settings:
        return self.application.services.settings  # type: ignore[attr-defined]

    async def get(self, path: str | None = None, include_body: bool = True) -> None:
        await super().get(path if path is not None else (self.page or ""), include_body)

    def head(self, path: str | None = None) -> Any:  # type: ignore[override]
        return self.get(path, include_body=False)

    def parse_url_path(self, url_path: str) -> str:
        return self.files.lookup(url_path)

    def compute_etag(self) -> str | None:
        modified = self.get_modified_time()
        stamp = int(modified.timestamp() * 1_000_000) if modified else 0
        return f'"{stamp:x}-{self.get_content_size():x}"'

    def get_content_type(self) -> str:
        content_type = super().get_content_type()
        if content_type.startswith(TEXT_TYPES):
            return f"{content_type}; charset=utf-8"
        return content_type

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")
        if path.endswith(".html"):
            self.set_header("Content-Security-Policy", self.policy())
            self.set_header("X-Frame-Options", "DENY")
            self.set_header("Referrer-Policy", "no-referrer")

    def policy(self) -> str:
        return client_csp(self.messenger_settings, self.request.host)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        error: ApiError
        if isinstance(exc, ApiError):
            error = exc
        elif status_code == 405:
            error = MethodNotAllowed("method not allowed on this resource")
        elif 400 <= status_code < 500:  # a path outside the folder (403), a missing file
            error = NotFound("no such resource")
        else:
            error = InternalError("internal server error")
        self.clear()
        self.set_status(error.status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        if error.status == 405:
            self.set_header("Allow", "GET, HEAD")
        self.finish(dumps(error.to_json()))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, ApiError | tornado.web.HTTPError):
            return  # a 404 or 405 is the answer, not an incident
        super().log_exception(typ, value, tb)


class AppPage(WebFileHandler):
    """``/app/``: the client's page."""

    files = WebFiles.folder(APP_DIR)
    page = "index.html"


class AppFiles(AppPage):
    """``/app/{path}``: the client's modules, styles and icons."""


class AppRedirect(BaseHandler):
    """``/app`` -> ``/app/`` (relative URLs in the page resolve under ``/app/``)."""

    requires_auth = False

    def get(self) -> None:
        self.clear_header("Content-Type")
        self.redirect("/app/", permanent=True)


class DocsPage(WebFileHandler):
    """``/api/docs``: Swagger UI showing ``/api/openapi.json``."""

    files = WebFiles.folder(DOCS_DIR) | WebFiles.folder(SWAGGER_DIR, only=SWAGGER_FILES)
    page = "index.html"

    def policy(self) -> str:
        return DOCS_CSP


class DocsFiles(DocsPage):
    """``/api/docs/{path}``: the docs page's script and the vendored Swagger UI files."""
