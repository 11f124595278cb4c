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

    class Meta:
        db_table = "photos_event"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def join_path(self) -> str:
        return f"{reverse('event-join', kwargs={'slug': self.slug})}?code={self.join_code}"


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
