"""Reads about events and their members, for the apps above."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from .models import Membership


def member_ids(*, event_id: int) -> QuerySet:
    """The user ids of the event's members, as a subquery."""
    return Membership.objects.filter(event_id=event_id).values("user_id")


def member_event_ids(*, user_id: int) -> list[int]:
    return list(Membership.objects.filter(user_id=user_id).values_list("event_id", flat=True))


def member_is_in(*, user_id: int, event_id: int) -> bool:
    return Membership.objects.filter(user_id=user_id, event_id=event_id).exists()


def member_has_events(*, user_id: int) -> bool:
    return Membership.objects.filter(user_id=user_id).exists()


def guest_ids_without_events() -> list[int]:
    """Guests who belong to no event any more. A guest is made in one transaction with their
    membership (photos.services.event_guest_join), so no guest is ever seen without one until
    their event is deleted."""
    return list(
        get_user_model()
        .objects.filter(is_guest=True, memberships__isnull=True)
        .values_list("pk", flat=True)
    )
