"""The fleet's storage: photos in an S3 bucket (moto), with the app's own S3 settings.

Upload, processing, the original's bytes, the zip, deleting a photo and deleting an event all
go through django-storages to the bucket and leave exactly the objects they should."""

from __future__ import annotations

import io
import zipfile

import boto3
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from moto import mock_aws

from config.settings import s3_storage
from events.models import Event
from faces.models import Match
from photos import tasks as photos_tasks
from photos.models import Photo
from photos.services import photo_process, photos_delete
from tests.conftest import jpeg_bytes

pytestmark = pytest.mark.django_db

BUCKET = "findme-test-photos"


@pytest.fixture
def bucket(settings, monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        settings.STORAGES = {**settings.STORAGES, "default": s3_storage(BUCKET)}
        yield client


def keys(client) -> set[str]:
    listed = client.list_objects_v2(Bucket=BUCKET)
    return {item["Key"] for item in listed.get("Contents", [])}


def body(client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def upload(staff_client, event: Event, data: bytes, name: str):
    return staff_client.post(
        f"/api/events/{event.slug}/photos/",
        {"file": SimpleUploadedFile(name, data, "image/jpeg")},
        format="multipart",
    )


def test_photos_live_in_the_bucket_from_upload_to_deletion(
    bucket, staff_client, attendee_client, attendee, event, django_capture_on_commit_callbacks
):
    first, second = jpeg_bytes((800, 600), (200, 40, 40)), jpeg_bytes((800, 600), (40, 40, 200))
    with django_capture_on_commit_callbacks(execute=False):
        answers = [
            upload(staff_client, event, first, "a.jpg"),
            upload(staff_client, event, second, "b.jpg"),
        ]
        again = upload(staff_client, event, first, "a-again.jpg")
    assert [a.status_code for a in answers] == [201, 201]
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    photos = [Photo.objects.get(pk=a.json()["id"]) for a in answers]
    assert keys(bucket) == {p.original.name for p in photos}  # the duplicate stored nothing
    assert all(name.startswith(f"photos/{event.pk}/") for name in keys(bucket))
    assert body(bucket, photos[0].original.name) == first

    # The worker reads the original from the bucket.
    for photo in photos:
        assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
        Match.objects.create(photo=photo, event=event, user=attendee, distance=0.3)

    original = attendee_client.get(f"/api/photos/{photos[0].pk}/original/")
    assert original.status_code == 200
    assert b"".join(original.streaming_content) == first
    archive = attendee_client.get("/api/my-photos/download.zip")
    with zipfile.ZipFile(io.BytesIO(b"".join(archive.streaming_content))) as opened:
        assert opened.testzip() is None
        assert sorted(opened.read(n) for n in opened.namelist()) == sorted([first, second])

    # Deleting a photo deletes its object, after the commit.
    with django_capture_on_commit_callbacks(execute=True):
        photos_delete(photo_ids=[photos[0].pk])
    assert keys(bucket) == {photos[1].original.name}


def test_deleting_an_event_empties_its_folder_of_the_bucket(
    bucket, staff_client, staff_user, event, monkeypatch, django_capture_on_commit_callbacks
):
    other = Event.objects.create(name="Race", slug="race", created_by=staff_user)
    kept = upload(staff_client, other, jpeg_bytes(colour=(10, 200, 10)), "k.jpg").json()["id"]
    for n in range(3):
        assert (
            upload(staff_client, event, jpeg_bytes(colour=(70 * n, 20, 20)), f"{n}.jpg").status_code
            == 201
        )
    assert len(keys(bucket)) == 4

    from core import jobs
    from photos import services as photos_services

    queued = []
    monkeypatch.setattr(jobs, "enqueue", lambda *args: queued.append(args) or True)
    event_id = event.pk
    with django_capture_on_commit_callbacks(execute=True):
        photos_services.events_delete(event_ids=[event_id])
    assert ("photos.tasks.event_files_delete", event_id) in queued
    assert photos_tasks.event_files_delete(event_id) == 3
    assert keys(bucket) == {Photo.objects.get(pk=kept).original.name}
    assert photos_tasks.event_files_delete(event_id) == 0


def test_a_bucket_that_refuses_the_write_answers_503_and_stores_nothing(
    staff_client, event, bucket
):
    # The bucket is gone (or its policy denies the write): S3 answers with an error.
    bucket.delete_bucket(Bucket=BUCKET)
    answer = upload(staff_client, event, jpeg_bytes(), "a.jpg")
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "unavailable"
    assert int(answer["Retry-After"]) > 0
    assert not Photo.objects.exists()  # no row without its file
    # Once the bucket is back, the same photo goes in.
    bucket.create_bucket(Bucket=BUCKET)
    answer = upload(staff_client, event, jpeg_bytes(), "a.jpg")
    assert answer.status_code == 201
    assert keys(bucket) == {Photo.objects.get().original.name}
