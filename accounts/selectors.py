from __future__ import annotations

from collections.abc import Iterable

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


def selfies_indexed(*, user_ids: QuerySet | Iterable[int]) -> QuerySet[Selfie]:
    """The indexed selfies of these users (a list or a subquery of user ids), with what matching
    needs."""
    return Selfie.objects.filter(status=Selfie.Status.INDEXED, user_id__in=user_ids).only(
        "user_id", "descriptor", "engine_ref"
    )
