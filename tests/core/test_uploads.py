"""core.uploads: bytes from outside a request go through the same hashing upload handler."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from core.uploads import HashingUploadHandler, upload_as_received


def test_bytes_arrive_spooled_to_disk_and_hashed_across_chunks():
    data = os.urandom(HashingUploadHandler.chunk_size * 3 + 17)

    upload = upload_as_received("big.jpg", data, "image/jpeg")
    try:
        assert upload.sha256 == hashlib.sha256(data).hexdigest()
        assert (upload.name, upload.size, upload.content_type) == (
            "big.jpg",
            len(data),
            "image/jpeg",
        )
        assert Path(upload.temporary_file_path()).read_bytes() == data
        assert upload.read() == data  # at the start, as a view receives it
    finally:
        upload.close()


def test_empty_content_is_an_empty_upload():
    upload = upload_as_received("empty.jpg", b"")
    assert (upload.size, upload.sha256) == (0, hashlib.sha256(b"").hexdigest())
    upload.close()


def test_content_over_the_upload_limit_is_refused(settings):
    settings.PHOTO_MAX_UPLOAD_MB = 1
    with pytest.raises(ValueError, match="PHOTO_MAX_UPLOAD_MB"):
        upload_as_received("huge.jpg", b"x" * (1024 * 1024 + 1))
