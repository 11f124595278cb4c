"""An upload handler that hashes each file while it streams to a temporary file.

The body is never held whole in memory: chunks go to disk as they arrive (Django's temporary
file handler) and through SHA-256 on the way, so the hash costs no second read. A file over
PHOTO_MAX_UPLOAD_MB is cut off and flagged on the request; the view answers 413.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.files.uploadhandler import SkipFile, TemporaryFileUploadHandler


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
