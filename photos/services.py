"""Writes for events and photos: creation, ingest, processing, membership."""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify
from django_q.tasks import async_task
from PIL import Image

from accounts.models import User
from core.errors import ApplicationError, NotFound
from core.imaging import ImageRejected, average_colour, decode_upright, encode, inspect, resized
from faces import services as faces_services

from .models import Event, Membership, Photo, Rendition

logger = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
THUMB_MAX_SIDE = 400
PREVIEW_MAX_SIDE = 1600
PHOTO_TASK = "photos.tasks.photo_process"


# --- events -------------------------------------------------------------------------------------
def event_create(*, name: str, slug: str | None, created_by: User | None) -> Event:
    base = slugify(slug or name)[:70] or "event"
    candidate = base
    for attempt in range(2, 50):
        try:
            with transaction.atomic():
                return Event.objects.create(name=name, slug=candidate, created_by=created_by)
        except IntegrityError:
            if slug:  # the caller asked for this slug: do not silently pick another
                raise ApplicationError(
                    f"The slug '{candidate}' is taken; choose another.",
                    code="slug_taken",
                    detail={"slug": ["An event with this slug already exists."]},
                ) from None
            candidate = f"{base}-{attempt}"
    raise ApplicationError("Could not find a free slug; give one explicitly.", code="slug_taken")


def event_join(*, user: User, slug: str, join_code: str) -> Event:
    event = Event.objects.filter(slug=slug).first()
    if event is None or not join_code or join_code.strip() != event.join_code:
        raise NotFound("No event matches this link or code. Check the code you were given.")
    _, created = Membership.objects.get_or_create(user=user, event=event)
    if created:
        user_id, event_id = user.pk, event.pk
        transaction.on_commit(
            lambda: async_task("faces.tasks.member_match_event", user_id, event_id)
        )
    return event


# --- ingest -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IngestResult:
    photo: Photo
    created: bool


def _photo_existing(event: Event, sha256: str) -> Photo | None:
    return Photo.objects.filter(event=event, sha256=sha256).first()


def queue_is_full() -> bool:
    queued = Photo.objects.filter(status=Photo.Status.QUEUED).count()
    return queued >= settings.PHOTO_QUEUE_MAX_SIZE


def photo_ingest(
    *, event: Event, upload: UploadedFile, uploaded_by: User | None, sha256: str | None = None
) -> IngestResult:
    """Store an uploaded photo once per event and queue it.

    The same bytes in the same event give back the existing photo, under a race too: the
    unique constraint decides, and only the row's creator writes the file.
    """
    actual = getattr(upload, "sha256", None)
    if actual is None:  # not through HashingUploadHandler (e.g. an in-memory test upload)
        import hashlib

        hasher = hashlib.sha256()
        for chunk in upload.chunks():
            hasher.update(chunk)
        actual = hasher.hexdigest()
    if upload.size == 0:
        raise ApplicationError("The file is empty.", code="invalid_image")
    if sha256:
        claimed = sha256.strip().lower()
        if not SHA256_RE.match(claimed):
            raise ApplicationError(
                "sha256 must be 64 hexadecimal characters.",
                code="invalid",
                detail={"sha256": ["Not a SHA-256 hex digest."]},
            )
        if claimed != actual:
            raise ApplicationError(
                "The file's SHA-256 does not match the one sent: the upload was damaged. Send it again.",
                code="checksum_mismatch",
                detail={"expected": claimed, "received": actual},
            )

    existing = _photo_existing(event, actual)
    if existing is not None:
        return IngestResult(photo=existing, created=False)

    if queue_is_full():
        raise ApplicationError(
            "The processing queue is full. Wait and send this photo again.",
            code="queue_full",
            status=503,
            headers={"Retry-After": "30"},
        )

    try:
        info = inspect(upload, max_pixels=settings.PHOTO_MAX_PIXELS)
    except ImageRejected as exc:
        raise ApplicationError(exc.message, code=exc.code) from None

    photo = Photo(
        event=event,
        uploaded_by=uploaded_by,
        sha256=actual,
        original_name=_display_name(upload.name),
        content_type=info.content_type,
        size=upload.size,
        width=info.width,
        height=info.height,
        taken_at=info.taken_at,
    )
    stored_name = None
    try:
        with transaction.atomic():
            # The row first: a concurrent upload of the same bytes fails here and writes nothing.
            photo.original.name = photo.original.field.generate_filename(photo, "")
            photo.save()
            upload.seek(0)
            stored_name = photo.original.storage.save(photo.original.name, upload)
            if stored_name != photo.original.name:
                Photo.objects.filter(pk=photo.pk).update(original=stored_name)
                photo.original.name = stored_name
            photo_id = photo.pk
            transaction.on_commit(lambda: async_task(PHOTO_TASK, photo_id))
    except IntegrityError:
        existing = _photo_existing(event, actual)
        if existing is None:
            raise
        return IngestResult(photo=existing, created=False)
    except Exception:
        if stored_name:
            photo.original.storage.delete(stored_name)
        raise
    return IngestResult(photo=photo, created=True)


def _display_name(name: str | None) -> str:
    """The client's file name, for display only: never used as a path."""
    if not name:
        return ""
    name = name.replace("\x00", "").replace("\\", "/").rsplit("/", 1)[-1]
    return name.strip()[:255]


def photos_existing(*, event: Event, hashes: list[str]) -> list[str]:
    wanted = {h.strip().lower() for h in hashes}
    return sorted(
        Photo.objects.filter(event=event, sha256__in=wanted).values_list("sha256", flat=True)
    )


# --- processing ---------------------------------------------------------------------------------
def photo_process(*, photo_id: int) -> str:
    """Process one photo: claim, decode once, thumbnail and preview, faces, matches, done.

    Idempotent: a worker that loses the claim returns; a rerun replaces faces and matches.
    Returns the status the photo was left in (or 'skipped' when another worker has it).
    """
    now = timezone.now()
    claimed = Photo.objects.filter(pk=photo_id, status=Photo.Status.QUEUED).update(
        status=Photo.Status.PROCESSING, attempts=F("attempts") + 1, updated_at=now
    )
    if not claimed:
        return "skipped"
    photo = Photo.objects.get(pk=photo_id)
    try:
        with photo.original.open("rb") as fh:
            image = decode_upright(fh, max_side=PREVIEW_MAX_SIDE)
        preview_image = resized(image, PREVIEW_MAX_SIDE)
        del image
        thumb_image = resized(preview_image, THUMB_MAX_SIDE)
        preview = encode(preview_image, "JPEG", quality=85)
        thumb = encode(thumb_image, "WEBP", quality=80)
        detected = faces_services.faces_detect_for_photo(
            event_id=photo.event_id,
            photo_id=photo.pk,
            image=preview_image,
            source=lambda: _decode_full(photo),
        )
        with transaction.atomic():
            faces_services.faces_store(
                event_id=photo.event_id, photo_id=photo.pk, detected=detected
            )
            finished = Photo.objects.filter(pk=photo.pk, status=Photo.Status.PROCESSING).update(
                status=Photo.Status.DONE,
                thumb_width=thumb_image.width,
                thumb_height=thumb_image.height,
                width=preview_image.width if not photo.width else photo.width,
                height=preview_image.height if not photo.height else photo.height,
                placeholder=average_colour(thumb_image),
                face_count=len(detected),
                error="",
                processed_at=timezone.now(),
                updated_at=timezone.now(),
            )
            if not finished:
                # Swept back to the queue meanwhile: leave the row to the newer run.
                transaction.set_rollback(True)
                return "skipped"
            Rendition.objects.update_or_create(
                photo_id=photo.pk, defaults={"thumb": thumb, "preview": preview}
            )
        return Photo.Status.DONE
    except Exception as exc:
        return _photo_failed(photo, exc)


def _decode_full(photo: Photo) -> Image.Image:
    """The photo at full resolution, decoded only when the engine asks for it (small faces)."""
    with photo.original.open("rb") as fh:
        return decode_upright(fh)


def _photo_failed(photo: Photo, exc: Exception) -> str:
    attempts = Photo.objects.filter(pk=photo.pk).values_list("attempts", flat=True).first() or 0
    message = f"{exc.__class__.__name__}: {exc}"[:2000]
    if attempts >= settings.PHOTO_QUEUE_RETRIES:
        logger.exception("photo %s failed for good after %s attempts", photo.pk, attempts)
        Photo.objects.filter(pk=photo.pk, status=Photo.Status.PROCESSING).update(
            status=Photo.Status.FAILED, error=message, updated_at=timezone.now()
        )
        return Photo.Status.FAILED
    logger.warning("photo %s attempt %s failed, queued again: %s", photo.pk, attempts, message)
    with transaction.atomic():
        requeued = Photo.objects.filter(pk=photo.pk, status=Photo.Status.PROCESSING).update(
            status=Photo.Status.QUEUED, error=message, updated_at=timezone.now()
        )
        if requeued:
            photo_id = photo.pk
            transaction.on_commit(lambda: async_task(PHOTO_TASK, photo_id))
    return Photo.Status.QUEUED


def photo_reprocess(*, photo_id: int) -> bool:
    """Staff: scan a photo again (after a failure, or a change of engine or threshold)."""
    with transaction.atomic():
        updated = Photo.objects.filter(
            pk=photo_id, status__in=[Photo.Status.DONE, Photo.Status.FAILED]
        ).update(status=Photo.Status.QUEUED, attempts=0, error="", updated_at=timezone.now())
        if updated:
            # It leaves the galleries until it is done again: they must not wait for the cache.
            faces_services.photos_viewers_refresh(photo_ids=[photo_id])
            transaction.on_commit(lambda: async_task(PHOTO_TASK, photo_id))
    return bool(updated)


def photos_delete(*, photo_ids: list[int]) -> int:
    """Delete photos with their files; their viewers' galleries refresh at once."""
    with transaction.atomic():
        faces_services.photos_viewers_refresh(photo_ids=photo_ids)
        faces_services.photos_deleting(photo_ids=photo_ids)
        photos = list(Photo.objects.filter(pk__in=photo_ids).only("pk", "original"))
        names = [(p.original.storage, p.original.name) for p in photos]
        Photo.objects.filter(pk__in=photo_ids).delete()
        for storage, name in names:
            transaction.on_commit(lambda s=storage, n=name: s.delete(n))
    return len(photos)


def event_deleted(*, event_id: int) -> None:
    """An event row is being deleted: after commit, delete its photo files in the background."""
    transaction.on_commit(lambda: async_task("photos.tasks.event_files_delete", event_id))


def event_files_delete(*, event_id: int) -> int:
    """Delete every file under the deleted event's folder (``photos/<event id>/``), in whatever
    storage holds them. Returns how many files it deleted; a rerun deletes nothing.

    Refuses while the event exists. Ids are never reused (PostgreSQL sequences, SQLite's
    AUTOINCREMENT), so the folder cannot be another event's.
    """
    if Event.objects.filter(pk=event_id).exists():
        return 0
    storage = Photo._meta.get_field("original").storage
    deleted = _folder_delete(storage, f"photos/{event_id}")
    with contextlib.suppress(NotImplementedError):  # S3 has no folders to remove
        shutil.rmtree(storage.path(f"photos/{event_id}"), ignore_errors=True)
    return deleted


def _folder_delete(storage, folder: str) -> int:
    try:
        folders, files = storage.listdir(folder)
    except FileNotFoundError:
        return 0
    for name in files:
        storage.delete(f"{folder}/{name}")
    return len(files) + sum(_folder_delete(storage, f"{folder}/{sub}") for sub in folders)


def photos_sweep() -> int:
    """Hand back to the queue every photo stuck in queued or processing past the deadline.

    The broker can lose a task (Redis has no delivery receipts; a killed worker loses what it
    held); the photo row is the record of what is left to do.
    """
    deadline = timezone.now() - timedelta(seconds=settings.PHOTO_STUCK_AFTER_S)
    stuck = Photo.objects.filter(
        Q(status=Photo.Status.QUEUED) | Q(status=Photo.Status.PROCESSING), updated_at__lt=deadline
    )
    # A photo that keeps killing its worker (out of memory, say) fails instead of looping.
    Photo.objects.filter(
        status=Photo.Status.PROCESSING,
        updated_at__lt=deadline,
        attempts__gte=settings.PHOTO_QUEUE_RETRIES,
    ).update(
        status=Photo.Status.FAILED,
        error="The worker processing this photo stopped (killed or timed out) on every attempt.",
        updated_at=timezone.now(),
    )
    count = 0
    for photo_id in stuck.values_list("pk", flat=True)[:5000]:
        with transaction.atomic():
            moved = Photo.objects.filter(
                Q(status=Photo.Status.QUEUED) | Q(status=Photo.Status.PROCESSING),
                pk=photo_id,
                updated_at__lt=deadline,
            ).update(status=Photo.Status.QUEUED, updated_at=timezone.now())
            if moved:
                count += 1
                transaction.on_commit(lambda pid=photo_id: async_task(PHOTO_TASK, pid))
    if count:
        logger.info("sweep handed %s stuck photos back to the queue", count)
    return count
