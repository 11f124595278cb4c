"""The selfie page: consent, one face, clear messages, and deleting every bit of face data."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from accounts.models import Selfie
from faces.models import Match
from tests.pages.conftest import join, match_make, photo_make

pytestmark = pytest.mark.django_db


def upload(path, name: str | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes())


def test_anonymous_visitors_are_sent_to_log_in(client):
    for path in ("/me/selfie/", "/me/face-data/delete/"):
        answer = client.get(path)
        assert answer.status_code == 302
        assert answer["Location"].startswith("/accounts/login/?next=")


def test_the_page_offers_the_camera_and_explains_consent(ann_client):
    page = ann_client.get("/me/selfie/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'enctype="multipart/form-data"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'accept="image/*" capture="user"' in html
    assert '<label for="selfie-camera"' in html and '<label for="selfie-file"' in html
    assert 'type="checkbox" name="consent" id="consent" value="true" required' in html
    assert '<label for="consent">' in html
    for text in ("What we store:", "Why:", "How to delete it:"):
        assert text in html


def test_no_consent_is_refused_with_a_message_and_nothing_is_kept(ann_client, attendee):
    page = ann_client.post("/me/selfie/", {"file": SimpleUploadedFile("me.jpg", b"x")})
    assert page.status_code == 400
    assert "Tick the consent box" in page.content.decode()
    assert 'role="alert"' in page.content.decode()
    assert not Selfie.objects.filter(user=attendee).exists()


def test_a_text_file_is_refused_with_a_message(ann_client, attendee):
    page = ann_client.post(
        "/me/selfie/",
        {"file": SimpleUploadedFile("notes.txt", b"just some words\n"), "consent": "true"},
    )
    assert page.status_code == 400
    assert "Only JPEG, PNG, WebP and HEIC photos are accepted." in page.content.decode()
    assert not Selfie.objects.filter(user=attendee).exists()


def test_a_missing_photo_is_asked_for(ann_client, attendee):
    page = ann_client.post("/me/selfie/", {"consent": "true"})
    assert page.status_code == 400
    assert "Choose a photo of your face, or take one." in page.content.decode()


@pytest.mark.faces
@pytest.mark.parametrize(
    ("photo", "message"),
    [
        ("no_faces/dogs.jpg", "No face was found."),
        ("groups/two_people.jpg", "2 faces were found. Use a photo with only your face in it."),
    ],
    ids=["no-face", "two-faces"],
)
def test_a_photo_without_exactly_one_face_is_refused(
    ann_client, attendee, faces_dir, photo, message
):
    page = ann_client.post("/me/selfie/", {"file": upload(faces_dir / photo), "consent": "true"})
    assert page.status_code == 400
    assert message in page.content.decode()
    assert not Selfie.objects.filter(user=attendee).exists()


@pytest.mark.faces
def test_a_good_selfie_is_kept_and_its_status_shown(ann_client, attendee, faces_dir):
    answer = ann_client.post(
        "/me/selfie/",
        {
            "file": upload(faces_dir / "people" / "obama" / "obama_1.jpg"),
            "consent": "true",
        },
    )
    assert answer.status_code == 302
    selfie = Selfie.objects.get(user=attendee)
    assert selfie.status == Selfie.Status.QUEUED
    page = ann_client.get(answer["Location"]).content.decode()
    assert "Your selfie is being read" in page
    assert "Waiting to be read" in page
    assert "You gave your consent on" in page
    assert selfie.consent_at.isoformat()[:19] in page
    assert "Replace your selfie" in page


@pytest.mark.faces
def test_an_iphone_heic_selfie_is_accepted(ann_client, attendee, faces_dir):
    import pillow_heif

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    Image.open(faces_dir / "people" / "obama" / "obama_1.jpg").save(buffer, format="HEIF")
    heic = SimpleUploadedFile("IMG_0001.HEIC", buffer.getvalue(), content_type="image/heic")
    answer = ann_client.post("/me/selfie/", {"file": heic, "consent": "true"})
    assert answer.status_code == 302
    assert Selfie.objects.filter(user=attendee).exists()


def test_indexed_and_failed_states_are_explained(ann_client, attendee):
    from accounts.services import selfie_store
    from tests.conftest import jpeg_bytes

    selfie_store(user=attendee, upload=SimpleUploadedFile("s.jpg", jpeg_bytes()))
    Selfie.objects.filter(user=attendee).update(status="failed")
    assert "Could not be read" in ann_client.get("/me/selfie/").content.decode()
    from django.utils import timezone

    Selfie.objects.filter(user=attendee).update(status="indexed", indexed_at=timezone.now())
    assert (
        "We are finding you in the event photos" in ann_client.get("/me/selfie/").content.decode()
    )


def test_deleting_face_data_asks_first_then_removes_everything(ann_client, attendee, event):
    from accounts.services import selfie_store
    from tests.conftest import jpeg_bytes

    join(attendee, event)
    selfie_store(user=attendee, upload=SimpleUploadedFile("s.jpg", jpeg_bytes()))
    match_make(photo_make(event), attendee)
    match_make(photo_make(event), attendee, rejected=True)

    confirm = ann_client.get("/me/face-data/delete/")
    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert "Delete all my face data?" in html
    assert "Yes, delete my face data" in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert Selfie.objects.filter(user=attendee).exists()  # looking is not deleting

    done = ann_client.post("/me/face-data/delete/")
    assert done.status_code == 302
    assert not Selfie.objects.filter(user=attendee).exists()
    assert not Match.objects.filter(user=attendee).exists()
    page = ann_client.get(done["Location"]).content.decode()
    assert "Your selfie, your face data and your matches are deleted." in page
    assert "Add a selfie" in page
