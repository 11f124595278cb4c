from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower

from core.jobs import JobFields


class User(AbstractUser):
    """A FindMe account: staff run events, attendees find themselves in photos.

    A guest came from an event's QR code with a selfie alone: no password, no email, a generated
    username, signed in by their private gallery link. Adding a password (and an email) makes
    the same row an ordinary account, with everything it had.
    """

    is_guest = models.BooleanField(
        default=False,
        help_text="Joined from the event's page without a password; removed with their face "
        "data when their events are deleted.",
    )

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        constraints = [
            # One account per address, whatever its case: the address is how a password is reset.
            # Accounts without one (staff made with createsuperuser) may be many.
            models.UniqueConstraint(
                Lower("email"),
                condition=~models.Q(email=""),
                name="user_email_ci_unique",
                violation_error_message="A user with that email address already exists.",
            )
        ]

    def save(self, *args, **kwargs) -> None:
        # set_password() keeps the new password in _password until AbstractBaseUser.save()
        # stores it. On an existing account that is a change or a reset, whatever the path
        # (the reset and change forms, the admin, `changepassword`), and the API tokens handed
        # out under the old password must stop working with it, as the sessions do.
        password_changed = self._password is not None and not self._state.adding
        super().save(*args, **kwargs)
        if password_changed:
            from rest_framework.authtoken.models import Token

            Token.objects.filter(user_id=self.pk).delete()


def selfie_upload_to(instance: Selfie, filename: str) -> str:  # noqa: ARG001
    # The server chooses every stored name: the client's file name never reaches the disk.
    return f"selfies/{instance.user_id}/{uuid.uuid4().hex}.jpg"


class Selfie(JobFields):
    """An attendee's reference face: the photo they gave, their consent, and its descriptor."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        INDEXING = "indexing", "Indexing"
        INDEXED = "indexed", "Indexed"
        FAILED = "failed", "Failed"
        # The face engine finds no usable face in it (Rekognition saw none, or another face):
        # the member must give a new photo; until then they are searched for no more.
        RETAKE = "retake", "Needs a new photo"

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="selfie")
    image = models.FileField(upload_to=selfie_upload_to, max_length=255)
    consent_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # Local engine: 128 float32 values. Empty for engines that keep the vector themselves.
    descriptor = models.BinaryField(null=True, blank=True, editable=False)
    # The engine's own handle for this face (e.g. a Rekognition FaceId / UserId).
    engine = models.CharField(max_length=32, blank=True)
    engine_ref = models.CharField(max_length=128, blank=True)
    # The face dlib found at upload, as fractions of the stored image: [left, top, width, height].
    # An engine that searches with the image sends this face alone, with a margin.
    face_box = models.JSONField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    indexed_at = models.DateTimeField(null=True, blank=True)

    class Meta(JobFields.Meta):
        abstract = False
        indexes = [models.Index(fields=["status", "updated_at"], name="selfie_status_updated")]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status="indexed") | models.Q(indexed_at__isnull=False),
                name="selfie_indexed_has_time",
            )
        ]

    def __str__(self) -> str:
        return f"selfie of {self.user_id} ({self.status})"
