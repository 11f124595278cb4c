"""Writes for events and photos: creation, ingest, processing, membership."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import secrets
import shutil
from dataclasses import dataclass

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from PIL import Image, ImageOps, UnidentifiedImageError

from accounts import services as accounts_services
from accounts.models import User
from core import jobs
from core.errors import ApplicationError, NotFound, ServiceUnavailable
from core.imaging import ImageRejected, average_colour, decode_upright, encode, inspect, resized
from core.logging import log_context
from events.models import Event, Membership
from events.selectors import guest_ids_without_events
from faces import services as faces_services

from .models import Photo, Rendition

logger = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
THUMB_MAX_SIDE = 400
PREVIEW_MAX_SIDE = 1600
PHOTO_TASK = "photos.tasks.photo_process"
PHOTO_JOB = jobs.JobKind(
    model=Photo,
    task=PHOTO_TASK,
    args=("pk",),
    queued=Photo.Status.QUEUED,
    running=Photo.Status.PROCESSING,
    failed=Photo.Status.FAILED,
)


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


def event_by_code(*, slug: str, join_code: str) -> Event:
    """The event this slug and code open; NotFound for either wrong, alike."""
    event = Event.objects.filter(slug=slug).first()
    if (
        event is None
        or not join_code
        or not secrets.compare_digest(join_code.strip().encode(), event.join_code.encode())
    ):
        raise NotFound("No event matches this link or code. Check the code you were given.")
    return event


def event_join(*, user: User, slug: str, join_code: str) -> Event:
    event = event_by_code(slug=slug, join_code=join_code)
    with transaction.atomic():
        _, created = Membership.objects.get_or_create(user=user, event=event)
        if created:
            faces_services.member_backmatch_request(user_id=user.pk, event_id=event.pk)
    return event


def event_guest_join(*, slug: str, join_code: str) -> tuple[User, str, Event]:
    """A new guest, already a member of the event: the user, their API token and the event.
    Nothing is made for a wrong slug or code (NotFound)."""
    event = event_by_code(slug=slug, join_code=join_code)
    with transaction.atomic():
        user, token = accounts_services.guest_create()
        Membership.objects.create(user=user, event=event)
    return user, token, event


BRANDING = {
    # kind: (longest side, format, file extension)
    "cover": (1600, "JPEG", "jpg"),
    "logo": (400, "PNG", "png"),
}


def event_branding_image(*, kind: str, upload: UploadedFile) -> tuple[str, bytes]:
    """A cover or logo as it is stored: bounded, upright, re-encoded without metadata, named
    after its kind and content. Raises ImageRejected with the API's code for a bad file."""
    max_side, fmt, extension = BRANDING[kind]
    inspect(upload, max_pixels=settings.PHOTO_MAX_PIXELS)
    upload.seek(0)
    if fmt == "JPEG":
        image = resized(decode_upright(upload, max_side=max_side), max_side)
        data = encode(image, fmt, quality=85)
    else:
        # A logo keeps its transparency: decode_upright would flatten it to RGB.
        try:
            with Image.open(upload) as opened:
                image = ImageOps.exif_transpose(opened)
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise ImageRejected("invalid_image", "The file could not be read as an image.") from exc
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        data = encode(image, fmt, quality=0)
    digest = hashlib.sha256(data).hexdigest()[:16]
    return f"{kind}-{digest}.{extension}", data


def guests_orphaned_delete() -> int:
    """Delete guests whose every event was deleted, with their face data (the engine's vectors
    included). An account with a password stays. Runs after each event deletion and in the
    periodic sweep, so a lost task is caught up. Returns how many guests it deleted."""
    deleted = 0
    for user_id in guest_ids_without_events():
        faces_services.member_forget(user_id=user_id)
        deleted += accounts_services.guest_delete(user_id=user_id)
    if deleted:
        logger.info("deleted %s guests whose events were deleted", deleted)
    return deleted


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

    ``upload`` is a file as core.uploads.HashingUploadHandler gives it: its ``sha256`` was
    computed while it arrived (``core.uploads.upload_as_received`` does the same for bytes
    from elsewhere). ``sha256`` is the hash the client says it sent, checked against that.

    The same bytes in the same event give back the existing photo, under a race too: the
    unique constraint decides, and only the row's creator writes the file.
    """
    actual: str = upload.sha256
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
        dispatched_at=timezone.now(),
    )
    # The file first, outside any transaction: a long copy (or an upload to S3) holds no
    # database lock, and a row never exists without its file. The name is the content's hash
    # within the event, so a concurrent upload of the same bytes writes the same bytes there.
    storage = photo.original.storage
    try:
        upload.seek(0)
        stored_name = storage.save(photo.original.field.generate_filename(photo, ""), upload)
    except Exception as exc:
        logger.exception("storing the original of a photo for event %s failed", event.pk)
        raise ServiceUnavailable(
            "The photo could not be stored right now. Send it again in a minute.",
            retry_after=30,
        ) from exc
    photo.original.name = stored_name
    try:
        with transaction.atomic():
            photo.save()
            # Handed to the broker after commit; if the broker is down, the row stays queued and
            # the job sweep hands it over later. The answer does not depend on the broker.
            jobs.dispatch_on_commit(PHOTO_JOB, photo.pk)
    except IntegrityError:
        existing = _photo_existing(event, actual)
        if existing is None:
            _file_delete_unless_owned(event, actual, stored_name)
            raise
        # The same bytes arrived at once: the stored file is the other row's, and stays.
        return IngestResult(photo=existing, created=False)
    except Exception:
        _file_delete_unless_owned(event, actual, stored_name)
        raise
    return IngestResult(photo=photo, created=True)


def _file_delete_unless_owned(event: Event, sha256: str, name: str) -> None:
    """The row was not stored: remove its file, unless a row of the same bytes owns it (a
    concurrent upload). When the database cannot say, the file stays: a file without a row
    costs disk; a row without its file loses a photo."""
    try:
        if not Photo.objects.filter(event=event, sha256=sha256).exists():
            Photo._meta.get_field("original").storage.delete(name)
    except Exception:  # noqa: BLE001 - the database or storage is down: keep the file
        logger.warning("could not tell whether %s is still needed; it stays", name)


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

    The message names a photo, but a rescued photo (its worker died, or it failed before) goes
    first, and a message whose photo is gone or taken starts the oldest due one: see
    core.jobs.claim_next. Idempotent: a rerun replaces faces and matches. A failed attempt is
    retried by the one policy of core/jobs.py. Returns the status the photo it worked on was
    left in ('skipped' when no photo was due).
    """
    claimed = jobs.claim_next(PHOTO_JOB, photo_id)
    if claimed is None:
        jobs.sweep_soon(jobs_sweep)
        return "skipped"
    photo_id, token = claimed
    with log_context(photo_id=photo_id, attempt=token):
        try:
            with jobs.lease_kept(PHOTO_JOB, photo_id, token):
                status = _photo_work(photo_id, token)
        except (ImageRejected, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            # The bytes themselves are bad: another attempt would fail the same way.
            status = jobs.attempt_failed(PHOTO_JOB, photo_id, token, exc, final=True)
        except Exception as exc:
            logger.exception("photo %s: attempt %s failed", photo_id, token)
            status = jobs.attempt_failed(PHOTO_JOB, photo_id, token, exc)
        logger.info("photo %s: %s", photo_id, status, extra={"status": status})
    jobs.sweep_soon(jobs_sweep)
    return status


def _photo_work(photo_id: int, token: int) -> str:
    photo = Photo.objects.get(pk=photo_id)
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
        faces_services.faces_store(event_id=photo.event_id, photo_id=photo.pk, detected=detected)
        finished = jobs.held(PHOTO_JOB, photo.pk, token).update(
            status=Photo.Status.DONE,
            thumb_width=thumb_image.width,
            thumb_height=thumb_image.height,
            width=preview_image.width if not photo.width else photo.width,
            height=preview_image.height if not photo.height else photo.height,
            placeholder=average_colour(thumb_image),
            face_count=len(detected),
            error="",
            lease_expires_at=None,
            processed_at=timezone.now(),
            updated_at=timezone.now(),
        )
        if not finished:
            # This run lost its lease and the row went to a newer run: leave it to that one.
            transaction.set_rollback(True)
            return "skipped"
        Rendition.objects.update_or_create(
            photo_id=photo.pk, defaults={"thumb": thumb, "preview": preview}
        )
    return Photo.Status.DONE


def _decode_full(photo: Photo) -> Image.Image:
    """The photo at full resolution, decoded only when the engine asks for it (small faces)."""
    with photo.original.open("rb") as fh:
        return decode_upright(fh)


def photo_reprocess(*, photo_id: int) -> bool:
    """Staff: scan a photo again (after a failure, or a change of engine or threshold)."""
    with transaction.atomic():
        updated = Photo.objects.filter(
            pk=photo_id, status__in=[Photo.Status.DONE, Photo.Status.FAILED]
        ).update(
            status=Photo.Status.QUEUED,
            attempts=0,
            error="",
            not_before=None,
            dispatched_at=timezone.now(),
            updated_at=timezone.now(),
        )
        if updated:
            # It leaves the galleries until it is done again: they must not wait for the cache.
            faces_services.photos_viewers_refresh(photo_ids=[photo_id])
            jobs.dispatch_on_commit(PHOTO_JOB, photo_id)
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


def events_delete(*, event_ids: list[int]) -> int:
    """Delete events with everything of theirs, however the deletion is started (the admin's
    page or action, a script): their members' galleries empty at once, and after commit their
    photo files and the face engine's vectors are deleted in the background.

    An event deleted behind this service's back (a queryset in a shell) loses its files and
    vectors later, through the sweeps (``event_files_sweep``, the vector sweep).
    """
    with transaction.atomic():
        event_ids = list(Event.objects.filter(pk__in=event_ids).values_list("pk", flat=True))
        for event_id in event_ids:
            faces_services.event_viewers_refresh(event_id=event_id)
        Event.objects.filter(pk__in=event_ids).delete()
        for event_id in event_ids:
            transaction.on_commit(
                lambda e=event_id: jobs.enqueue("photos.tasks.event_files_delete", e)
            )
            faces_services.event_deleted(event_id=event_id)
        if event_ids:
            transaction.on_commit(lambda: jobs.enqueue("photos.tasks.guests_orphaned_delete"))
    return len(event_ids)


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


def event_files_sweep() -> int:
    """Delete the folders of events that no longer exist.

    The safety net for a lost ``event_files_delete`` (the broker was down when the event was
    deleted, or the task died): a deleted event leaves no row to be the record, so the folders
    in storage are. Returns how many files it deleted.
    """
    storage = Photo._meta.get_field("original").storage
    try:
        folders, _ = storage.listdir("photos")
    except FileNotFoundError:
        return 0
    ids = {int(name) for name in folders if name.isdigit()}
    gone = ids - set(Event.objects.filter(pk__in=ids).values_list("pk", flat=True))
    deleted = sum(event_files_delete(event_id=event_id) for event_id in sorted(gone))
    if deleted:
        logger.info("event files sweep: %s files of %s deleted events", deleted, len(gone))
    return deleted


def _folder_delete(storage, folder: str) -> int:
    try:
        folders, files = storage.listdir(folder)
    except FileNotFoundError:
        return 0
    for name in files:
        storage.delete(f"{folder}/{name}")
    return len(files) + sum(_folder_delete(storage, f"{folder}/{sub}") for sub in folders)


def jobs_sweep() -> dict[str, jobs.SweepResult]:
    """Find every queued row whose task was lost and hand it over again (core/jobs.py): photos,
    selfies and back-matches. Runs every minute, and sooner while work is finishing."""
    kinds = [PHOTO_JOB, *faces_services.JOB_KINDS]
    broker_size = jobs.broker_queue_size()
    frontier = jobs.claimed_frontier(kinds)
    results = {}
    for kind in kinds:
        result = jobs.kind_sweep(kind, broker_size=broker_size, frontier=frontier)
        results[kind.task] = result
        if result.expired or result.failed or result.dispatched or result.redispatched:
            logger.info("sweep of %s: %s", kind.task, result)
    return results
