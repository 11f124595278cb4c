"""A selfie's file lives exactly as long as its row, however the row goes."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import Selfie
from accounts.services import selfie_store
from tests.conftest import jpeg_bytes

pytestmark = pytest.mark.django_db


def selfie_of(user, colour=(180, 140, 120)) -> str:
    upload = SimpleUploadedFile("me.jpg", jpeg_bytes((120, 160), colour), "image/jpeg")
    name = selfie_store(user=user, upload=upload).image.name
    assert default_storage.exists(name)
    return name


def test_deleting_a_user_in_the_admin_deletes_their_selfie_file(
    client, django_user_model, attendee, django_capture_on_commit_callbacks
):
    name = selfie_of(attendee)
    root = django_user_model.objects.create_superuser(username="root", password="root-pass-123")
    client.force_login(root)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(f"/admin/accounts/user/{attendee.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302
    assert not Selfie.objects.exists()
    assert not default_storage.exists(name)


def test_a_new_selfie_replaces_the_old_file(attendee, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        old = selfie_of(attendee)
        new = selfie_of(attendee, colour=(90, 60, 50))
    assert old != new
    assert not default_storage.exists(old)
    assert default_storage.exists(new)


def test_a_rolled_back_deletion_keeps_the_file(attendee, django_capture_on_commit_callbacks):
    from django.db import transaction

    name = selfie_of(attendee)
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        Selfie.objects.filter(user=attendee).delete()
        raise RuntimeError("rolled back")
    assert Selfie.objects.filter(user=attendee).exists()
    assert default_storage.exists(name)
