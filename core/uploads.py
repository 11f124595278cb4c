"""An upload handler that hashes each file while it streams to a temporary file.

The body is never held whole in memory: chunks go to disk as they arrive (Django's temporary
file handler) and through SHA-256 on the way, so the hash costs no second read. A file over
PHOTO_MAX_UPLOAD_MB is cut off and flagged on the request; the view answers 413.

Bytes from outside a request (a test, a bench) become the same kind of upload through the same
handler: ``upload_as_received``.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import SkipFile, TemporaryFileUploadHandler
from django.http import HttpRequest


class HashingUploadHandler(TemporaryFileUploadHandler):
    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.hasher = hashlib.sha256()
        self.received = 0
        self.limit = settings.PHOTO_MAX_UPLOAD_MB * 1024 * 1024

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.request.upload_too_large = True
            self.file.close()
            raise SkipFile()
        self.hasher.update(raw_data)
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size: int):
        uploaded = super().file_complete(file_size)
        if uploaded is not None:
            uploaded.sha256 = self.hasher.hexdigest()
        return uploaded


def upload_as_received(
    name: str, content: bytes, content_type: str = "application/octet-stream"
) -> UploadedFile:
    """``content`` as a view receives an uploaded file: streamed in chunks through
    HashingUploadHandler to a temporary file, carrying its ``sha256``. Raises ValueError for
    content over PHOTO_MAX_UPLOAD_MB, which a request would have answered with 413."""
    handler = HashingUploadHandler(HttpRequest())
    handler.new_file("file", name, content_type, len(content))
    try:
        for start in range(0, len(content), handler.chunk_size):
            handler.receive_data_chunk(content[start : start + handler.chunk_size], start)
    except SkipFile:
        raise ValueError(f"{name} is over PHOTO_MAX_UPLOAD_MB") from None
    return handler.file_complete(len(content))


def upload_size_check(request) -> None:
    """Answer 413 when the handler above cut the upload off."""
    from .errors import ApplicationError

    if hasattr(request, "_request"):
        request.data  # noqa: B018 - parsing the body is what runs the upload handlers
    django_request = getattr(request, "_request", request)
    if getattr(django_request, "upload_too_large", False):
        raise ApplicationError(
            f"The file is larger than the server accepts ({settings.PHOTO_MAX_UPLOAD_MB} MB).",
            code="file_too_large",
            status=413,
        )
