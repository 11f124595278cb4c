from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce

from core.jobs import JobFields
from events.models import (
    Event,
    join_code_new,  # noqa: F401 - named by migration 0001
)


def photo_upload_to(instance: Photo, filename: str) -> str:  # noqa: ARG001
    # Never the client's name: the event and the content hash decide where the bytes live.
    return (
        f"photos/{instance.event_id}/{instance.sha256[:2]}/{instance.sha256}.{instance.extension}"
    )


# When the photo was taken (EXIF DateTimeOriginal), else when it was uploaded: what the gallery
# is ordered and grouped by. A camera's clock has no zone and is stored as if it were UTC
# (core.imaging), so both are read back in UTC, as the clock showed them.
SORT_TIME = Coalesce("taken_at", "created_at")


class Photo(JobFields):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="photos")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sha256 = models.CharField(max_length=64)
    original = models.FileField(upload_to=photo_upload_to, max_length=255)
    original_name = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=32)
    size = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    taken_at = models.DateTimeField(null=True, blank=True)
    thumb_width = models.PositiveIntegerField(null=True, blank=True)
    thumb_height = models.PositiveIntegerField(null=True, blank=True)
    # Average colour of the photo, shown while its thumbnail loads.
    placeholder = models.CharField(max_length=7, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    face_count = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    EXTENSIONS = {
        "image/jpeg": "jpg",
        "image/png": "png",
        "image/webp": "webp",
        "image/heic": "heic",
    }

    class Meta(JobFields.Meta):
        abstract = False
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "sha256"], name="photo_unique_sha256_per_event"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["queued", "processing", "done", "failed"]),
                name="photo_status_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["event", "status"], name="photo_event_status"),
            models.Index(fields=["status", "updated_at"], name="photo_status_updated"),
        ]

    def __str__(self) -> str:
        return f"photo {self.pk} ({self.status})"

    @property
    def extension(self) -> str:
        return self.EXTENSIONS.get(self.content_type, "bin")

    @property
    def etag(self) -> str:
        return self.sha256

    @property
    def sort_time(self) -> datetime:
        """``SORT_TIME`` of this row, in UTC."""
        return (self.taken_at or self.created_at).astimezone(UTC)


class Rendition(models.Model):
    """A photo's thumbnail and preview, made by the worker.

    They live apart from the photo row so that no list ever reads them: SQLite stores a row's
    values inline, and large binaries in the photo row slowed every gallery query ten-fold
    even when deferred (bench/gallery.py).
    """

    photo = models.OneToOneField(
        Photo, on_delete=models.CASCADE, primary_key=True, related_name="rendition"
    )
    thumb = models.BinaryField()
    preview = models.BinaryField()

    def __str__(self) -> str:
        return f"renditions of photo {self.photo_id}"
