import pytest
from django.db import IntegrityError, transaction

from events.models import Event, Membership
from photos.models import Photo

pytestmark = pytest.mark.django_db


def make_photo(event: Event, sha: str = "a" * 64) -> Photo:
    return Photo.objects.create(
        event=event, sha256=sha, original=f"photos/{sha}.jpg", content_type="image/jpeg", size=10
    )


def test_same_sha256_twice_in_one_event_is_refused(event):
    make_photo(event)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_photo(event)
    assert Photo.objects.filter(event=event).count() == 1


def test_same_sha256_in_two_events_is_fine(event):
    other = Event.objects.create(name="Race", slug="race")
    make_photo(event)
    make_photo(other)
    assert Photo.objects.filter(sha256="a" * 64).count() == 2


def test_membership_is_unique_per_user_and_event(event, attendee):
    Membership.objects.create(user=attendee, event=event)
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user=attendee, event=event)


def test_photo_status_outside_the_four_states_is_refused(event):
    photo = make_photo(event)
    with pytest.raises(IntegrityError), transaction.atomic():
        Photo.objects.filter(pk=photo.pk).update(status="lost")


def test_one_live_match_per_face_and_one_per_member_and_photo(event, attendee, django_user_model):
    from faces.models import Face, Match

    other = django_user_model.objects.create_user(username="bob", password="x")
    photo = make_photo(event)
    face = Face.objects.create(
        photo=photo, event=event, index=0, left=0, top=0, width=0.1, height=0.1, engine="local"
    )
    Match.objects.create(photo=photo, event=event, user=attendee, face=face, distance=0.3)
    with pytest.raises(IntegrityError), transaction.atomic():
        Match.objects.create(photo=photo, event=event, user=other, face=face, distance=0.4)
    with pytest.raises(IntegrityError), transaction.atomic():
        Match.objects.create(photo=photo, event=event, user=attendee, face=None, distance=0.4)
    with pytest.raises(IntegrityError), transaction.atomic():
        Face.objects.create(
            photo=photo, event=event, index=0, left=0, top=0, width=0.1, height=0.1, engine="local"
        )


def test_list_querysets_never_load_image_bytes(event, attendee):
    from photos.selectors import photo_list_for_event, photo_list_for_user

    make_photo(event)
    binary = [f.name for f in Photo._meta.concrete_fields if f.get_internal_type() == "BinaryField"]
    assert binary == []  # thumbnails and previews live in their own table
    for qs in (photo_list_for_event(event=event), photo_list_for_user(user=attendee)):
        assert "photos_rendition" not in str(qs.query)
