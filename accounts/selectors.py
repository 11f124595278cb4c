from __future__ import annotations

from django.db.models import QuerySet
from PIL import Image

from core.imaging import decode_upright

from .models import Selfie


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


def selfies_indexed_for_event(*, event_id: int) -> QuerySet[Selfie]:
    """Indexed selfies of the members of one event: the only people its photos may match."""
    return Selfie.objects.filter(
        status=Selfie.Status.INDEXED, user__memberships__event_id=event_id
    ).only("user_id", "descriptor", "engine_ref")
