"""Writes for accounts and selfies. Imports nothing above accounts: face work is enqueued by path."""

from __future__ import annotations

import contextlib
import logging
import secrets

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token
from sesame.utils import get_token as sesame_token

from core import jobs
from core.errors import ApplicationError, ServiceUnavailable

from .models import Selfie, User
from .selectors import token_expired, user_email_taken

logger = logging.getLogger(__name__)

# The selfie row is the record of its indexing; the face work itself lives above accounts and is
# named by its dotted path.
SELFIE_JOB = jobs.JobKind(
    model=Selfie,
    task="faces.tasks.member_index",
    args=("user_id",),
    queued=Selfie.Status.QUEUED,
    running=Selfie.Status.INDEXING,
    failed=Selfie.Status.FAILED,
)


EMAIL_TAKEN = "A user with that email address already exists."
GALLERY_LINK_SCOPE = "gallery"


def _taken(*, email: str) -> ApplicationError:
    """Which unique field another account took since the form's checks: the address, else the
    name (the database's constraints let only one of two simultaneous sign-ups through)."""
    field = "email" if user_email_taken(email=email) else "username"
    message = EMAIL_TAKEN if field == "email" else "A user with that username already exists."
    return ApplicationError(
        "Some fields are missing or invalid; see detail.", detail={field: [message]}
    )


def user_signup(*, username: str, email: str, password: str) -> tuple[User, str]:
    user_model = get_user_model()
    try:
        with transaction.atomic():
            user = user_model.objects.create_user(username=username, email=email, password=password)
            token = Token.objects.create(user=user)
    except IntegrityError:
        # Two sign-ups with one address (or name) at once: the checks before passed for both,
        # the database's unique constraints let one through.
        raise _taken(email=email) from None
    return user, token.key


def guest_create() -> tuple[User, str]:
    """A guest account: a generated username, no usable password, no email, and an API token.
    The caller makes it a member of its event in the same transaction."""
    user = get_user_model()(username=f"guest-{secrets.token_hex(6)}", is_guest=True)
    user.set_unusable_password()
    user.save()
    return user, Token.objects.create(user=user).key


def guest_link_token(*, user: User) -> str:
    """The signed part of a guest's private gallery link (django-sesame, scope "gallery"): it
    lasts settings.GUEST_LINK_DAYS and ends when the user's password changes."""
    return sesame_token(user, scope=GALLERY_LINK_SCOPE)


def guest_keep(*, user: User, username: str, email: str, password: str) -> tuple[User, str]:
    """Make a guest an ordinary account in place: the same row, so their selfie, memberships,
    matches and "not me" choices all stay. Their old token and links end with the password
    change; the new token is returned. The caller has validated the fields."""
    try:
        with transaction.atomic():
            user = get_user_model().objects.select_for_update().get(pk=user.pk, is_guest=True)
            user.username = username
            user.email = email
            user.is_guest = False
            user.set_password(password)
            user.save()  # accounts.models: a password change deletes the old tokens
            token = Token.objects.create(user=user)
    except IntegrityError:
        raise _taken(email=email) from None
    return user, token.key


def guest_delete(*, user_id: int) -> int:
    """Delete a guest account (never one with a password); its selfie file goes after commit
    (accounts.apps). The caller has deleted the face data. Returns 1 or 0."""
    deleted, _ = get_user_model().objects.filter(pk=user_id, is_guest=True).delete()
    return 1 if deleted else 0


def user_token(*, user: User) -> str:
    """The user's API token; an expired one is replaced by a new one."""
    with transaction.atomic():
        token, created = Token.objects.select_for_update().get_or_create(user=user)
        if not created and token_expired(created_at=token.created):
            token.delete()
            token = Token.objects.create(user=user)
    return token.key


def selfie_store(
    *, user: User, upload: UploadedFile, face_box: tuple[float, float, float, float] | None = None
) -> Selfie:
    """Keep a new selfie (replacing any old one) and queue its indexing after commit.

    The caller has checked the image and the consent; the consent time is now. The file is
    written first, outside the transaction, under a fresh name: the row never points at a file
    that is not there, and the old file is deleted only once the new row is committed.
    """
    image_field = Selfie._meta.get_field("image")
    storage = image_field.storage
    try:
        upload.seek(0)
        new_name = storage.save(image_field.generate_filename(Selfie(user=user), ""), upload)
    except Exception as exc:
        logger.exception("storing the selfie of user %s failed", user.pk)
        raise ServiceUnavailable(
            "Your selfie could not be stored right now. Try again in a minute.", retry_after=30
        ) from exc
    old_name = None
    try:
        with transaction.atomic():
            selfie = Selfie.objects.select_for_update().filter(user=user).first()
            if selfie is None:
                selfie = Selfie(user=user)
            else:
                old_name = selfie.image.name
            selfie.image.name = new_name
            selfie.consent_at = timezone.now()
            selfie.status = Selfie.Status.QUEUED
            selfie.descriptor = None
            selfie.engine_ref = ""
            selfie.engine = ""
            selfie.face_box = list(face_box) if face_box is not None else None
            selfie.attempts = 0
            selfie.error = ""
            selfie.indexed_at = None
            selfie.not_before = None
            selfie.lease_expires_at = None
            selfie.dispatched_at = timezone.now()
            selfie.save()
            jobs.dispatch_on_commit(SELFIE_JOB, selfie.pk)
    except Exception:
        with contextlib.suppress(Exception):
            storage.delete(new_name)
        raise
    if old_name and old_name != new_name:
        transaction.on_commit(lambda: _file_delete_quietly(storage, old_name))
    return selfie


def _file_delete_quietly(storage, name: str) -> None:
    try:
        storage.delete(name)
    except Exception:  # noqa: BLE001 - an orphan file costs disk, never a selfie
        logger.warning("could not delete the replaced selfie file %s", name)


def selfie_indexed(
    *, pk: int, token: int, descriptor: bytes | None, engine: str, engine_ref: str
) -> bool:
    """Record the selfie's vector, if the claim ``token`` still holds it. False when the selfie
    was deleted or replaced meanwhile."""
    return bool(
        jobs.held(SELFIE_JOB, pk, token).update(
            status=Selfie.Status.INDEXED,
            descriptor=descriptor,
            engine=engine,
            engine_ref=engine_ref,
            indexed_at=timezone.now(),
            error="",
            lease_expires_at=None,
            updated_at=timezone.now(),
        )
    )


def selfie_retake(*, user_id: int, reason: str) -> bool:
    """The engine cannot search with this indexed selfie: ask the member for a new photo.
    False when there is no such selfie (deleted or replaced meanwhile)."""
    return bool(
        Selfie.objects.filter(user_id=user_id, status=Selfie.Status.INDEXED).update(
            status=Selfie.Status.RETAKE, error=reason[:500], updated_at=timezone.now()
        )
    )


def selfie_face_box_store(*, user_id: int, face_box: tuple[float, float, float, float]) -> None:
    """Remember the face found in a selfie stored before boxes were kept."""
    Selfie.objects.filter(user_id=user_id, face_box__isnull=True).update(face_box=list(face_box))


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
