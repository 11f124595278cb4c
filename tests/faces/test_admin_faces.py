"""Staff's faces and clusters pages (issue 15): a crop of each face, a face or a whole cluster
given to a member through the services (membership checked, galleries refreshed at once), a
match removed as "not me" would, and matches no longer edited raw."""

from __future__ import annotations

import io

import pytest
from django.test import Client
from PIL import Image
from rest_framework.test import APIClient

from events.models import Membership
from faces.models import Cluster, Face, Match
from photos.models import Rendition
from tests.pages.conftest import photo_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(django_user_model) -> Client:
    client = Client()
    client.force_login(
        django_user_model.objects.create_superuser(username="root", password="root-pass-123")
    )
    return client


def photo_with_faces(event, count: int = 1):
    photo = photo_make(event)
    preview = io.BytesIO()
    Image.new("RGB", (1200, 800), (90, 140, 200)).save(preview, format="JPEG")
    Rendition.objects.create(photo=photo, thumb=b"", preview=preview.getvalue())
    faces = [
        Face.objects.create(
            photo=photo,
            event=event,
            index=i,
            left=0.1 + 0.3 * i,
            top=0.2,
            width=0.1,
            height=0.15,
            engine="local",
        )
        for i in range(count)
    ]
    return photo, faces


def gallery_ids(user) -> list[int]:
    client = APIClient()
    client.force_authenticate(user)
    return [p["id"] for p in client.get("/api/my-photos/").json()["results"]]


def test_a_face_crop_is_for_staff(staff_client, event, attendee):
    _, (face,) = photo_with_faces(event)
    crop = staff_client.get(f"/admin/faces/crop/{face.pk}.jpg")
    assert crop.status_code == 200 and crop["Content-Type"] == "image/jpeg"
    image = Image.open(io.BytesIO(crop.content))
    assert max(image.size) <= 160
    # 10% x 15% of 1200 x 800 with a quarter margin each side: 180 x 180, shrunk to 160.
    assert image.size == (160, 160)
    other = Client()
    other.force_login(attendee)
    assert other.get(f"/admin/faces/crop/{face.pk}.jpg").status_code == 302


def test_staff_give_a_face_to_a_member_and_their_gallery_shows_it_at_once(
    staff_client, event, attendee, django_capture_on_commit_callbacks
):
    Membership.objects.create(user=attendee, event=event)
    photo, (face,) = photo_with_faces(event)
    assert gallery_ids(attendee) == []
    page = staff_client.get(f"/admin/faces/face/{face.pk}/change/").content.decode()
    assert f'src="/admin/faces/crop/{face.pk}.jpg"' in page
    assert f'<option value="{attendee.pk}">ann</option>' in page
    with django_capture_on_commit_callbacks(execute=True):
        answer = staff_client.post(
            f"/admin/faces/face/{face.pk}/change/", {"assign_to": attendee.pk}, follow=True
        )
    assert "The face is ann&#x27;s now." in answer.content.decode()
    match = Match.objects.get(face=face, user=attendee)
    assert match.assigned and not match.rejected
    assert gallery_ids(attendee) == [photo.pk]


def test_a_non_member_cannot_be_given_a_face(staff_client, event, django_user_model):
    stranger = django_user_model.objects.create_user("eve", password="eve-pass-1234")
    _, (face,) = photo_with_faces(event)
    answer = staff_client.post(f"/admin/faces/face/{face.pk}/change/", {"assign_to": stranger.pk})
    assert answer.status_code == 200  # the form again, with its error
    assert "Select a valid choice" in answer.content.decode()
    assert not Match.objects.exists()


def test_removing_a_match_keeps_it_rejected_and_empties_the_gallery(
    staff_client, event, attendee, django_capture_on_commit_callbacks
):
    Membership.objects.create(user=attendee, event=event)
    photo, (face,) = photo_with_faces(event)
    Match.objects.create(photo=photo, event=event, user=attendee, face=face, distance=0.4)
    assert gallery_ids(attendee) == [photo.pk]
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(f"/admin/faces/face/{face.pk}/change/", {"remove_match": "on"})
    assert Match.objects.get(face=face, user=attendee).rejected
    assert gallery_ids(attendee) == []


def test_a_cluster_shows_its_strip_and_is_given_to_a_member_in_one_step(
    staff_client, event, attendee
):
    Membership.objects.create(user=attendee, event=event)
    photos, faces = [], []
    for _ in range(3):
        photo, (face,) = photo_with_faces(event)
        photos.append(photo)
        faces.append(face)
    cluster = Cluster.objects.create(event=event, key=faces[0].pk, size=3)
    Face.objects.filter(pk__in=[f.pk for f in faces]).update(cluster=cluster)

    listing = staff_client.get("/admin/faces/cluster/").content.decode()
    assert f"Person {faces[0].pk}" in listing
    assert listing.count('class="findme-crop"') == 3
    answer = staff_client.post(
        f"/admin/faces/cluster/{cluster.pk}/change/", {"assign_to": attendee.pk}, follow=True
    )
    assert "3 faces are ann&#x27;s now" in answer.content.decode()
    assert sorted(gallery_ids(attendee)) == sorted(p.pk for p in photos)
    assert Match.objects.filter(user=attendee, assigned=True).count() == 3


def test_matches_are_listed_as_matches_not_edited_raw_and_deleted_with_the_gallery(
    staff_client, event, attendee, django_capture_on_commit_callbacks
):
    photo, (face,) = photo_with_faces(event)
    match = Match.objects.create(photo=photo, event=event, user=attendee, face=face, distance=0.4)
    index = staff_client.get("/admin/").content.decode()
    assert ">Matches<" in index and "Matchs" not in index
    assert staff_client.get("/admin/faces/match/add/").status_code == 403
    assert staff_client.post(f"/admin/faces/match/{match.pk}/change/", {}).status_code == 403
    Membership.objects.create(user=attendee, event=event)
    assert gallery_ids(attendee) == [photo.pk]
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(f"/admin/faces/match/{match.pk}/delete/", {"post": "yes"})
    assert not Match.objects.filter(pk=match.pk).exists()
    assert gallery_ids(attendee) == []
