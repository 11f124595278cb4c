"""Events and who attends them: below faces and photos, so that both read them by import.

The tables keep the names they had when these models lived in ``photos`` (``photos_event``,
``photos_membership``): the move changed no row.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.urls import reverse


def join_code_new() -> str:
    return secrets.token_urlsafe(6)


def branding_upload_to(instance: Event, filename: str) -> str:
    # The branding service names the file (kind and content hash): never the client's name.
    return f"events/{filename}"


class Event(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    join_code = models.CharField(max_length=32, default=join_code_new)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Off: originals and zips are served with GPS and other location tags removed.
    keep_location = models.BooleanField(
        default=False,
        help_text="Serve originals with their GPS and other location tags, as uploaded.",
    )

    # What the event's landing page and poster show; all optional, set in the admin.
    date = models.DateField(null=True, blank=True, help_text="Shown on the landing page.")
    organiser = models.CharField(
        max_length=120,
        blank=True,
        help_text='Who hosts or photographs it, as guests should read it: "Photos by Ana Silva".',
    )
    cover = models.FileField(
        upload_to=branding_upload_to,
        max_length=255,
        blank=True,
        help_text="A photo for the top of the landing page (stored at most 1600 px, as JPEG).",
    )
    logo = models.FileField(
        upload_to=branding_upload_to,
        max_length=255,
        blank=True,
        help_text="The organiser's or photographer's logo (stored at most 400 px, as PNG).",
    )

    class Meta:
        db_table = "photos_event"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def join_path(self) -> str:
        """Where the QR code and the join link lead: the event's landing page, with its code."""
        return f"{reverse('event-landing', kwargs={'slug': self.slug})}?code={self.join_code}"


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="memberships")
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "photos_membership"
        constraints = [
            models.UniqueConstraint(fields=["user", "event"], name="membership_unique_user_event")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.event_id}"
