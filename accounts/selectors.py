from __future__ import annotations

from django.db.models import QuerySet

from .models import Selfie


def selfie_get(*, user_id: int) -> Selfie | None:
    return Selfie.objects.filter(user_id=user_id).first()


def selfies_indexed_for_event(*, event_id: int) -> QuerySet[Selfie]:
    """Indexed selfies of the members of one event: the only people its photos may match."""
    return Selfie.objects.filter(
        status=Selfie.Status.INDEXED, user__memberships__event_id=event_id
    ).only("user_id", "descriptor", "engine_ref")
