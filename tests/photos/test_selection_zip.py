"""GET /api/my-photos/selection.zip?ids=...: a zip of the chosen photos, all of them the caller's
own, or nothing at all (404, whoever else's photo was asked for); 400 for ids that are not ids."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from events.models import Event
from faces.models import Match
from photos.api_gallery import SELECTION_MAX
from photos.models import Photo
from photos.naming import photo_download_name
from tests.photos.test_zip import photos_with_originals, received_zip

pytestmark = pytest.mark.django_db

URL = "/api/my-photos/selection.zip"


@pytest.fixture
def mine(attendee, event) -> list[Photo]:
    return photos_with_originals(attendee, event, [b"first", b"second", b"third", b"fourth"])


@pytest.fixture
def theirs(django_user_model) -> Photo:
    bob = django_user_model.objects.create_user(username="bob", password="bob-pass-1234")
    race = Event.objects.create(name="Race", slug="race")
    return photos_with_originals(bob, race, [b"bob's photo"])[0]


def assert_error(answer, status: int, code: str) -> dict:
    assert answer.status_code == status, answer.content[:300]
    assert answer["Content-Type"] == "application/json"
    body = answer.json()
    assert set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["code"] == code
    return body["error"]


def test_the_zip_holds_exactly_the_chosen_photos(mine, attendee_client):
    chosen = [mine[3], mine[1]]

    answer = attendee_client.get(URL, {"ids": [p.pk for p in chosen]})  # ids=..&ids=..

    assert answer.status_code == 200
    assert answer.streaming
    assert answer["Content-Type"] == "application/zip"
    assert answer["Content-Disposition"] == 'attachment; filename="wedding.zip"'
    assert answer["Cache-Control"] == "private, no-store"
    with received_zip(answer) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [photo_download_name(p) for p in chosen]  # gallery order
        assert archive.read(photo_download_name(mine[3])) == b"fourth"
        assert archive.read(photo_download_name(mine[1])) == b"second"


def test_ids_may_come_in_one_comma_separated_value_and_repeat(mine, attendee_client):
    answer = attendee_client.get(f"{URL}?ids={mine[0].pk},{mine[2].pk},{mine[0].pk}")
    with received_zip(answer) as archive:
        assert sorted(archive.namelist()) == sorted(photo_download_name(p) for p in mine[::2])


def test_another_attendees_photo_among_mine_gets_404_and_no_bytes(mine, theirs, attendee_client):
    for ids in ([theirs.pk], [mine[0].pk, theirs.pk]):
        answer = attendee_client.get(URL, {"ids": ids})
        error = assert_error(answer, 404, "not_found")
        assert str(theirs.pk) not in error["message"]  # which one is not said
        assert b"bob's photo" not in answer.content


def test_a_photo_i_said_not_me_to_or_one_unprocessed_or_none_gets_404(
    mine, attendee, attendee_client, event
):
    Match.objects.filter(photo=mine[0], user=attendee).update(rejected=True)
    Photo.objects.filter(pk=mine[1].pk).update(status=Photo.Status.PROCESSING)
    for missing in (mine[0].pk, mine[1].pk, 987654321):
        assert_error(attendee_client.get(URL, {"ids": [mine[2].pk, missing]}), 404, "not_found")
    assert attendee_client.get(URL, {"ids": mine[2].pk}).status_code == 200


def test_staff_get_only_their_own_photos_here_too(mine, theirs, staff_client):
    assert_error(staff_client.get(URL, {"ids": theirs.pk}), 404, "not_found")
    assert_error(staff_client.get(URL, {"ids": mine[0].pk}), 404, "not_found")


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?ids=",
        "?ids=abc",
        "?ids=-1",
        "?ids=1.5",
        "?ids=%EF%BC%91",
        "?ids=1e3",
        f"?ids={'9' * 19}",
    ],
    ids=["none", "empty", "word", "negative", "decimal", "fullwidth-digit", "exponent", "huge"],
)
def test_ids_that_are_not_ids_get_400_with_the_field_named(attendee_client, query):
    error = assert_error(attendee_client.get(f"{URL}{query}"), 400, "invalid")
    assert error["detail"]["ids"]


def test_more_than_the_cap_gets_400(mine, attendee_client):
    ids = ",".join(str(n) for n in range(1, SELECTION_MAX + 2))
    error = assert_error(attendee_client.get(URL, {"ids": ids}), 400, "invalid")
    assert str(SELECTION_MAX) in error["message"]


def test_a_visitor_gets_401(mine):
    assert_error(APIClient().get(URL, {"ids": mine[0].pk}), 401, "not_authenticated")
