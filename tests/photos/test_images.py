"""thumb/, preview/, original/: who may fetch them, how browsers cache them, and what they hold."""

from __future__ import annotations

import io

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image
from rest_framework.test import APIClient

from faces.models import Match
from photos.models import Photo, Rendition
from photos.services import photo_ingest, photo_process
from tests.conftest import uploaded

pytestmark = pytest.mark.django_db

VARIANTS = ["thumb", "preview", "original"]
GPS_IFD = 0x8825


def encoded(fmt: str, size: tuple[int, int], colour=(30, 120, 200), **save) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt, **save)
    return buffer.getvalue()


ORIGINAL = encoded("JPEG", (800, 600))
THUMB = encoded("WEBP", (400, 300))
PREVIEW = encoded("JPEG", (800, 600), colour=(200, 100, 0))


@pytest.fixture
def photo(event) -> Photo:
    photo = Photo(
        event=event,
        sha256="c" * 64,
        original_name="IMG_0042.JPG",
        content_type="image/jpeg",
        size=len(ORIGINAL),
        width=800,
        height=600,
        status=Photo.Status.DONE,
    )
    photo.original.save("ignored.jpg", ContentFile(ORIGINAL), save=False)
    photo.save()
    Rendition.objects.create(photo=photo, thumb=THUMB, preview=PREVIEW)
    return photo


@pytest.fixture
def matched(photo, attendee) -> Match:
    return Match.objects.create(photo=photo, event=photo.event, user=attendee, distance=0.3)


def url(photo: Photo, variant: str) -> str:
    return f"/api/photos/{photo.pk}/{variant}/"


def assert_not_found(answer) -> None:
    assert answer.status_code == 404
    body = answer.json()
    assert set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["code"] == "not_found"
    assert "ETag" not in answer and "immutable" not in answer.get("Cache-Control", "")


# --- who may see -------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_matched_member_gets_the_bytes_with_the_right_type(
    variant, photo, matched, attendee_client
):
    answer = attendee_client.get(url(photo, variant))

    assert answer.status_code == 200
    body = b"".join(answer.streaming_content) if answer.streaming else answer.content
    expected = {"thumb": (THUMB, "image/webp"), "preview": (PREVIEW, "image/jpeg")}.get(
        variant, (ORIGINAL, "image/jpeg")
    )
    assert body == expected[0]
    assert answer["Content-Type"] == expected[1]


def test_original_is_an_attachment_named_by_event_time_and_id(photo, matched, attendee_client):
    answer = attendee_client.get(url(photo, "original"))
    # No EXIF time: the upload's. Never the photographer's "IMG_0042.JPG".
    name = f"wedding-{photo.created_at:%Y%m%d-%H%M}-{photo.pk}.jpg"
    assert answer["Content-Disposition"] == f'attachment; filename="{name}"'
    assert int(answer["Content-Length"]) == len(ORIGINAL)


@pytest.mark.parametrize("variant", VARIANTS)
def test_another_member_gets_404(variant, photo, matched, django_user_model):
    stranger = django_user_model.objects.create_user(username="eve", password="x")
    client = APIClient()
    client.force_authenticate(stranger)
    assert_not_found(client.get(url(photo, variant)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_anonymous_visitor_gets_404_not_401(variant, photo, matched):
    assert_not_found(APIClient().get(url(photo, variant)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_member_who_said_not_me_gets_404(variant, photo, matched, attendee_client):
    Match.objects.filter(pk=matched.pk).update(rejected=True, face=None)
    assert_not_found(attendee_client.get(url(photo, variant)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_missing_photo_gets_the_same_404(variant, attendee_client):
    assert_not_found(attendee_client.get(f"/api/photos/999999/{variant}/"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_staff_see_every_photo(variant, photo, staff_client):
    assert staff_client.get(url(photo, variant)).status_code == 200


def test_unprocessed_photo_has_no_thumbnail_yet(photo, matched, attendee_client):
    Rendition.objects.filter(photo=photo).delete()
    assert_not_found(attendee_client.get(url(photo, "thumb")))


def test_an_img_tag_accept_header_is_not_refused(photo, matched, attendee_client):
    answer = attendee_client.get(url(photo, "thumb"), HTTP_ACCEPT="image/avif,image/webp")
    assert answer.status_code == 200
    assert answer.content == THUMB


# --- browser caching ---------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_for_a_year_privately_with_an_etag_and_304_on_if_none_match(
    variant, photo, matched, attendee_client
):
    first = attendee_client.get(url(photo, variant))
    assert first["Cache-Control"] == "private, max-age=31536000, immutable"
    etag = first["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and photo.sha256 in etag

    again = attendee_client.get(url(photo, variant), HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag
    assert again["Cache-Control"] == "private, max-age=31536000, immutable"

    weak_in_a_list = attendee_client.get(
        url(photo, variant), HTTP_IF_NONE_MATCH=f'"other", W/{etag}'
    )
    assert weak_in_a_list.status_code == 304
    stale = attendee_client.get(url(photo, variant), HTTP_IF_NONE_MATCH='"something-else"')
    assert stale.status_code == 200


def test_a_failed_if_match_is_412_and_not_cached(photo, matched, attendee_client):
    etag = attendee_client.get(url(photo, "thumb"))["ETag"]
    assert attendee_client.get(url(photo, "thumb"), HTTP_IF_MATCH=etag).status_code == 200

    refused = attendee_client.get(url(photo, "thumb"), HTTP_IF_MATCH='"something-else"')
    assert refused.status_code == 412
    assert "immutable" not in refused.get("Cache-Control", "")


def test_each_variant_has_its_own_etag(photo, matched, attendee_client):
    tags = {attendee_client.get(url(photo, v))["ETag"] for v in VARIANTS}
    assert len(tags) == 3


def test_a_stranger_with_the_etag_still_gets_404(
    photo, matched, attendee_client, django_user_model
):
    etag = attendee_client.get(url(photo, "thumb"))["ETag"]
    stranger = django_user_model.objects.create_user(username="eve", password="x")
    client = APIClient()
    client.force_authenticate(stranger)
    assert_not_found(client.get(url(photo, "thumb"), HTTP_IF_NONE_MATCH=etag))


# --- only the needed column --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variant", "wanted", "unwanted"),
    [("thumb", ["thumb"], ["preview"]), ("preview", ["preview"], ["thumb"]),
     ("original", [], ["thumb", "preview"])],
)  # fmt: skip
def test_reads_only_the_binary_column_it_serves(
    variant, wanted, unwanted, photo, matched, attendee_client
):
    with CaptureQueriesContext(connection) as ctx:
        assert attendee_client.get(url(photo, variant)).status_code == 200
    selects = [q["sql"] for q in ctx.captured_queries if 'FROM "photos_photo"' in q["sql"]]
    assert len(selects) == 1
    for column in wanted:
        assert f'"photos_rendition"."{column}"' in selects[0]
    for column in unwanted:
        assert f'"photos_rendition"."{column}"' not in selects[0]


# --- no location leaves the server -------------------------------------------------------------
def jpeg_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    # Large enough that both the preview (1600 px) and the thumbnail are resized copies.
    return encoded("JPEG", (2400, 1800), colour=(90, 160, 60), exif=exif.tobytes(), quality=80)


def test_thumbnail_and_preview_of_a_photo_with_gps_carry_no_exif(
    event, staff_user, attendee, attendee_client
):
    data = jpeg_with_gps()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD)  # the fixture has a location
    result = photo_ingest(
        event=event,
        upload=uploaded("gps.jpg", data, content_type="image/jpeg"),
        uploaded_by=staff_user,
    )
    assert photo_process(photo_id=result.photo.pk) == Photo.Status.DONE
    Match.objects.create(photo=result.photo, event=event, user=attendee, distance=0.3)

    for variant, max_side in [("thumb", 400), ("preview", 1600)]:
        answer = attendee_client.get(url(result.photo, variant))
        assert answer.status_code == 200
        image = Image.open(io.BytesIO(answer.content))
        assert max(image.size) == max_side
        assert not image.getexif().get_ifd(GPS_IFD), variant
        assert len(image.getexif()) == 0, variant
        assert "exif" not in image.info, variant
        assert b"Exif\x00\x00" not in answer.content, variant
