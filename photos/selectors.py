"""Reads for events and photos. Lists never load the binary columns."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from django.db.models import Count, IntegerField, Max, Min, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from rest_framework.authtoken.models import Token

from accounts.models import User
from accounts.selectors import token_expires_at
from core.errors import NotFound
from events.models import Event, Membership

from .models import SORT_TIME, Photo

RENDITIONS = ("thumb", "preview")


def event_list() -> QuerySet[Event]:
    """Every event, newest first."""
    return Event.objects.order_by("-created_at", "-id")


def event_list_for_member(*, user: User) -> QuerySet[Event]:
    """The events this user joined, by name, with only what a list of them shows."""
    return Event.objects.filter(memberships__user=user).only("slug", "name").order_by("name")


def event_slugs_for_member(*, user: User) -> list[str]:
    """The slugs of the events this user joined, in the order they joined them."""
    return list(
        Membership.objects.filter(user=user)
        .order_by("joined_at")
        .values_list("event__slug", flat=True)
    )


def event_get(*, slug: str) -> Event:
    event = Event.objects.filter(slug=slug).first()
    if event is None:
        raise NotFound("No event has this address.")
    return event


def event_get_for_member(*, slug: str, user: User) -> Event:
    qs = Event.objects.filter(slug=slug)
    if not user.is_staff:
        qs = qs.filter(memberships__user=user)
    event = qs.first()
    if event is None:
        raise NotFound("No event has this address, or you have not joined it.")
    return event


def event_photo_counts(*, event: Event) -> dict[str, int]:
    counts = {status: 0 for status in Photo.Status.values}
    for row in event.photos.values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def event_member_count(*, event: Event) -> int:
    return Membership.objects.filter(event=event).count()


def event_photo_count(*, event: Event) -> int:
    """The event's photos so far that a guest could be found in (processed)."""
    return Photo.objects.filter(event=event, status=Photo.Status.DONE).count()


class UploadToken(NamedTuple):
    """A staff user's API token as the event's admin page lists it: never the whole key."""

    user: User
    key_start: str
    created_at: datetime
    expires_at: datetime | None
    photos: int  # of this event, uploaded by this user


def event_upload_tokens(*, event: Event) -> list[UploadToken]:
    """The tokens that can upload to ``event`` (every active staff user's), with how many of
    its photos each user uploaded; the most used first. One query."""
    uploaded = (
        Photo.objects.filter(event=event, uploaded_by=OuterRef("user_id"))
        .order_by()
        .values("uploaded_by")
        .annotate(n=Count("pk"))
        .values("n")
    )
    tokens = (
        Token.objects.filter(user__is_staff=True, user__is_active=True)
        .select_related("user")
        .annotate(photos=Coalesce(Subquery(uploaded, output_field=IntegerField()), 0))
        .order_by("-photos", "user__username")
    )
    return [
        UploadToken(
            user=token.user,
            key_start=token.key[:6],
            created_at=token.created,
            expires_at=token_expires_at(created_at=token.created),
            photos=token.photos,
        )
        for token in tokens
    ]


def membership_exists(*, user: User, event: Event) -> bool:
    return Membership.objects.filter(user=user, event=event).exists()


def photo_list_for_event(*, event: Event, status: str | None = None) -> QuerySet[Photo]:
    qs = Photo.objects.filter(event=event).select_related("event")
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")


def _photos_of_user(*, user: User, event: Event | None) -> QuerySet[Photo]:
    qs = Photo.objects.filter(status=Photo.Status.DONE, matches__user=user, matches__rejected=False)
    if event is not None:
        qs = qs.filter(event=event)
    return qs


def photo_list_for_user(*, user: User, event: Event | None = None) -> QuerySet[Photo]:
    """Photos in which this user was matched and did not say "not me", the most recently taken
    first (upload time stands in for a photo without one; ``photos.models.SORT_TIME``).

    The query starts from the user's matches (index match_user_live_photo) and sorts only
    those rows, so the order needs no index of its own: sorting on an expression costs what
    sorting on created_at did.
    """
    return (
        _photos_of_user(user=user, event=event)
        .select_related("event")
        .order_by(SORT_TIME.desc(), "-id")
    )


class PhotoSpan(NamedTuple):
    count: int
    first: datetime | None  # the earliest SORT_TIME
    last: datetime | None  # the latest


def photo_span_for_user(*, user: User, event: Event | None = None) -> PhotoSpan:
    """How many photos ``photo_list_for_user`` lists, and when the first and the last were
    taken (or uploaded): one query, which also saves the gallery page its paginator's count."""
    span = _photos_of_user(user=user, event=event).aggregate(
        count=Count("pk"), first=Min(SORT_TIME), last=Max(SORT_TIME)
    )
    return PhotoSpan(span["count"], span["first"], span["last"])


def photo_list_for_user_by_ids(*, user: User, ids: set[int]) -> QuerySet[Photo]:
    """Those of ``ids`` that are this user's photos (as ``photo_list_for_user``), in its order.
    Anything else, staff or not, is simply absent: the caller compares the count."""
    return photo_list_for_user(user=user).filter(pk__in=ids)


def photo_get_visible(*, photo_id: int, user: User, fields: tuple[str, ...] = ()) -> Photo:
    """A photo the user may see: staff see all; others only photos they are matched in.

    Anything else is 404, never 403: the photo's existence is not revealed.
    """
    qs = Photo.objects.filter(pk=photo_id)
    if not (user.is_authenticated and user.is_staff):
        if not user.is_authenticated:
            raise NotFound("No photo here.")
        qs = qs.filter(Q(matches__user=user) & Q(matches__rejected=False))
    wanted = [f for f in fields if f in RENDITIONS]
    if wanted:
        # Only the one binary this answer needs, from the renditions table.
        qs = qs.select_related("rendition").only(
            "pk",
            "sha256",
            "content_type",
            "original",
            "original_name",
            *(f"rendition__{f}" for f in wanted),
        )
    photo = qs.first()
    if photo is None:
        raise NotFound("No photo here.")
    return photo


def photos_pending_for_user(*, user: User, event: Event | None = None) -> int:
    """Photos still queued or processing in the events this user joined (in ``event`` alone
    when given). Whose faces they hold is not known until they are processed: this is the
    events' backlog, never a count of the user's own photos."""
    qs = Photo.objects.filter(
        event__memberships__user=user,
        status__in=[Photo.Status.QUEUED, Photo.Status.PROCESSING],
    )
    if event is not None:
        qs = qs.filter(event=event)
    return qs.count()


def photo_list_failed(*, limit: int) -> list[Photo]:
    """The most recently failed photos, with their events."""
    return list(
        Photo.objects.filter(status=Photo.Status.FAILED)
        .select_related("event")
        .order_by("-updated_at")[:limit]
    )
