"""Writes for accounts and selfies. Imports nothing above accounts: face work is enqueued by path."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task
from rest_framework.authtoken.models import Token

from core.errors import ApplicationError

from .models import Selfie, User

logger = logging.getLogger(__name__)


def user_signup(*, username: str, email: str, password: str) -> tuple[User, str]:
    user_model = get_user_model()
    with transaction.atomic():
        user = user_model.objects.create_user(username=username, email=email, password=password)
        token = Token.objects.create(user=user)
    return user, token.key


def user_token(*, user: User) -> str:
    token, _ = Token.objects.get_or_create(user=user)
    return token.key


def selfie_store(*, user: User, upload: UploadedFile) -> Selfie:
    """Keep a new selfie (replacing any old one) and queue its indexing after commit.

    The caller has checked the image and the consent; the consent time is now.
    """
    old_name = None
    with transaction.atomic():
        selfie = Selfie.objects.select_for_update().filter(user=user).first()
        if selfie is None:
            selfie = Selfie(user=user)
        else:
            old_name = selfie.image.name
        selfie.consent_at = timezone.now()
        selfie.status = Selfie.Status.QUEUED
        selfie.descriptor = None
        selfie.engine_ref = ""
        selfie.engine = ""
        selfie.attempts = 0
        selfie.error = ""
        selfie.indexed_at = None
        upload.seek(0)
        selfie.image.save("selfie.jpg", upload, save=False)
        new_name = selfie.image.name
        try:
            selfie.save()
        except Exception:
            selfie.image.storage.delete(new_name)
            raise
        user_id = user.pk
        transaction.on_commit(lambda: async_task("faces.tasks.member_index", user_id))
    if old_name and old_name != new_name:
        transaction.on_commit(lambda: selfie.image.storage.delete(old_name))
    return selfie


def selfie_delete(*, user_id: int) -> None:
    """Delete the selfie row and, after commit, its file (accounts.apps deletes the file of
    every deleted selfie). Face vectors are the caller's job."""
    with transaction.atomic():
        selfie = Selfie.objects.select_for_update().filter(user_id=user_id).first()
        if selfie is not None:
            selfie.delete()


def credentials_check(*, user: User | None) -> User:
    if user is None or not user.is_active:
        raise ApplicationError(
            "The username or password is wrong.", code="invalid_credentials", status=400
        )
    return user
