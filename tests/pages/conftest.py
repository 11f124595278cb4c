from __future__ import annotations

import hashlib
import itertools

import pytest
from django.test import Client

_counter = itertools.count(1)


def photo_make(event, *, status: str = "done", placeholder: str = "#8a7f70"):
    from photos.models import Photo

    sha = hashlib.sha256(f"photo-{next(_counter)}".encode()).hexdigest()
    return Photo.objects.create(
        event=event,
        sha256=sha,
        original=f"photos/{event.pk}/{sha}.jpg",
        original_name=f"{sha[:8]}.jpg",
        content_type="image/jpeg",
        size=1234,
        width=1200,
        height=800,
        thumb_width=400,
        thumb_height=267,
        placeholder=placeholder,
        status=status,
    )


def match_make(photo, user, *, rejected: bool = False):
    from faces.models import Match

    return Match.objects.create(
        photo=photo, event=photo.event, user=user, distance=0.3, rejected=rejected
    )


def join(user, event):
    from events.models import Membership

    return Membership.objects.create(user=user, event=event)


@pytest.fixture
def ann_client(attendee) -> Client:
    client = Client()
    client.force_login(attendee)
    return client


@pytest.fixture
def staff_page_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client
