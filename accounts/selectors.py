from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from PIL import Image

from core.imaging import decode_upright

from .models import Selfie, User


def selfie_get(*, user_id: int) -> Selfie | None:
    return Selfie.objects.filter(user_id=user_id).first()


def selfie_indexed_get(*, user_id: int) -> Selfie | None:
    """The member's indexed selfie with what matching needs, or None."""
    return (
        Selfie.objects.filter(user_id=user_id, status=Selfie.Status.INDEXED)
        .only("user_id", "descriptor", "engine_ref")
        .first()
    )


def selfie_is_indexed(*, user_id: int) -> bool:
    return Selfie.objects.filter(user_id=user_id, status=Selfie.Status.INDEXED).exists()


def selfie_image(*, user_id: int) -> Image.Image:
    """The member's stored selfie, decoded upright. OSError when it is gone or unreadable."""
    selfie = Selfie.objects.filter(user_id=user_id).only("image").first()
    if selfie is None or not selfie.image:
        raise FileNotFoundError(f"user {user_id} has no selfie")
    with selfie.image.open("rb") as fh:
        return decode_upright(fh)


def selfie_face_boxes(*, user_ids: Iterable[int]) -> dict[int, list[float] | None]:
    """Each member's selfie face box (fractions of the stored image), None where not known."""
    return dict(
        Selfie.objects.filter(user_id__in=list(user_ids)).values_list("user_id", "face_box")
    )


def selfies_indexed(*, user_ids: QuerySet | Iterable[int]) -> QuerySet[Selfie]:
    """The indexed selfies of these users (a list or a subquery of user ids), with what matching
    needs."""
    return Selfie.objects.filter(status=Selfie.Status.INDEXED, user_id__in=user_ids).only(
        "user_id", "descriptor", "engine_ref"
    )


def user_email_taken(*, email: str) -> bool:
    """Whether another account already uses this address, compared case-insensitively (as the
    database's constraint compares it)."""
    return bool(email) and User.objects.filter(email__iexact=email.strip()).exists()


def token_expires_at(*, created_at: datetime) -> datetime | None:
    """When an API token made at ``created_at`` stops working: settings.TOKEN_TTL_DAYS later,
    or never (None) when that is 0."""
    ttl_days = settings.TOKEN_TTL_DAYS
    return created_at + timedelta(days=ttl_days) if ttl_days else None


def token_expired(*, created_at: datetime) -> bool:
    """Whether an API token made at ``created_at`` has outlived settings.TOKEN_TTL_DAYS (0: never)."""
    expires_at = token_expires_at(created_at=created_at)
    return expires_at is not None and expires_at <= timezone.now()
