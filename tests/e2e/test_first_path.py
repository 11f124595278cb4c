"""The spine, end to end: staff upload, a real worker cluster finds the faces, attendees see
exactly the photos they are in."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.cluster import running_cluster, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster, pytest.mark.faces]


def signup(username: str) -> APIClient:
    client = APIClient()
    answer = client.post(
        "/api/auth/signup/",
        {"username": username, "email": f"{username}@example.com", "password": "a-long-passphrase"},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    client.credentials(HTTP_AUTHORIZATION=f"Token {answer.json()['token']}")
    return client


def my_photo_ids(client: APIClient) -> list[int]:
    answer = client.get("/api/my-photos/")
    assert answer.status_code == 200
    return [p["id"] for p in answer.json()["results"]]


def test_group_photo_reaches_exactly_the_people_in_it(faces_dir, django_user_model):
    django_user_model.objects.create_user(username="boss", password="boss-pass-123", is_staff=True)
    staff = APIClient()
    token = staff.post(
        "/api/auth/token/", {"username": "boss", "password": "boss-pass-123"}, format="json"
    )
    assert token.status_code == 200
    staff.credentials(HTTP_AUTHORIZATION=f"Token {token.json()['token']}")
    created = staff.post("/api/events/", {"name": "Inauguration"}, format="json")
    assert created.status_code == 201, created.content
    event = created.json()

    with running_cluster(workers=2) as cluster:
        attendees = {}
        for name, selfie in [
            ("obama", "people/obama/obama_1.jpg"),
            ("biden", "people/biden/biden_1.jpg"),
            ("kit", "people/kit_harington/kit_1.jpg"),
        ]:
            client = signup(name)
            joined = client.post(
                f"/api/events/{event['slug']}/join/",
                {"join_code": event["join_code"]},
                format="json",
            )
            assert joined.status_code == 200
            with open(faces_dir / selfie, "rb") as fh:
                answer = client.put(
                    "/api/me/selfie/", {"file": fh, "consent": "true"}, format="multipart"
                )
            assert answer.status_code == 201, answer.content
            assert answer.json()["faces_found"] == 1
            attendees[name] = client

        with open(faces_dir / "groups" / "two_people.jpg", "rb") as fh:
            upload = staff.post(
                f"/api/events/{event['slug']}/photos/", {"file": fh}, format="multipart"
            )
        assert upload.status_code == 201, upload.content
        photo_id = upload.json()["id"]
        assert upload.json()["status"] == "queued"

        wait_until(
            lambda: (
                photo_id in my_photo_ids(attendees["obama"])
                and photo_id in my_photo_ids(attendees["biden"])
            ),
            timeout=180,
            proc=cluster,
            what="Obama's and Biden's galleries to list the photo",
        )
        status = staff.get(f"/api/photos/{photo_id}/status/").json()
        assert status["status"] == "done"
        assert status["faces"] == 2
        assert my_photo_ids(attendees["kit"]) == []
