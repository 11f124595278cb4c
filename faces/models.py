from __future__ import annotations

from django.conf import settings
from django.db import models

from core.jobs import JobFields
from events.models import Event


class Face(models.Model):
    """One face found in one photo. Boxes are fractions of the upright photo (0..1)."""

    photo = models.ForeignKey("photos.Photo", on_delete=models.CASCADE, related_name="faces")
    # Denormalised from the photo so that an event's descriptors load with one indexed query.
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")
    index = models.PositiveSmallIntegerField()
    left = models.FloatField()
    top = models.FloatField()
    width = models.FloatField()
    height = models.FloatField()
    # Local engine: 128 float32 values (512 bytes).
    descriptor = models.BinaryField(null=True, blank=True, editable=False)
    engine = models.CharField(max_length=32)
    engine_face_id = models.CharField(max_length=128, blank=True)
    # The unknown-face cluster this face is in, while no member claims it (faces.services.settle).
    cluster = models.ForeignKey(
        "Cluster", null=True, blank=True, on_delete=models.SET_NULL, related_name="faces"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["photo_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["photo", "index"], name="face_unique_photo_index"),
        ]
        indexes = [
            models.Index(fields=["event", "engine"], name="face_event_engine"),
            models.Index(fields=["engine_face_id"], name="face_engine_face_id"),
        ]

    def __str__(self) -> str:
        return f"face {self.index} of photo {self.photo_id}"


class Match(models.Model):
    """A member seen in a photo. At most one per member and photo.

    A rejected match ("not me") is kept, face or not, so that no reprocessing ever re-creates it.
    It keeps its face too, so that the member can undo the rejection shortly after it
    (``faces.services.match_restore``); the face is free for another member meanwhile.
    """

    photo = models.ForeignKey("photos.Photo", on_delete=models.CASCADE, related_name="matches")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="face_matches"
    )
    face = models.ForeignKey(
        Face, null=True, blank=True, on_delete=models.SET_NULL, related_name="matches"
    )
    distance = models.FloatField()
    # Made by staff (a cluster or face assigned in the admin): every re-match keeps it.
    assigned = models.BooleanField(default=False)
    rejected = models.BooleanField(default=False)
    rejected_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "matches"
        constraints = [
            models.UniqueConstraint(fields=["photo", "user"], name="match_unique_photo_user"),
            # A face belongs to at most one member.
            models.UniqueConstraint(
                fields=["face"],
                condition=models.Q(rejected=False, face__isnull=False),
                name="match_unique_live_face",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "rejected", "photo"], name="match_user_live_photo"),
        ]

    def __str__(self) -> str:
        return f"user {self.user_id} in photo {self.photo_id}"


class EngineCall(models.Model):
    """Billable face-engine calls by operation, summed across every worker process."""

    engine = models.CharField(max_length=32)
    operation = models.CharField(max_length=64)
    count = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["engine", "operation"], name="enginecall_unique_op"),
        ]

    def __str__(self) -> str:
        return f"{self.engine}.{self.operation}: {self.count}"


class CollectionFace(models.Model):
    """A vector that Rekognition holds in an event's collection, recorded as soon as IndexFaces
    returns: before the photo's Face rows are written, so that a rerun, or a crash between
    indexing and storing, can delete it instead of leaving a duplicate in the collection.

    ``photo_id`` is no foreign key on purpose: the record must outlive a deleted photo until its
    vectors are deleted too.
    """

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")
    photo_id = models.BigIntegerField()
    face_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event", "face_id"], name="collectionface_unique"),
        ]
        indexes = [models.Index(fields=["photo_id"], name="collectionface_photo")]

    def __str__(self) -> str:
        return f"{self.face_id} of photo {self.photo_id}"


class MemberSearch(JobFields):
    """A member in an event: the record of their back-match, and how far they were searched.

    Every face of the event up to ``faces_through`` (a Face id) was searched for this member.
    A batched re-match searches only members behind the newest face, so each search call is spent
    once per member and batch.

    It is also the queued row of the member's back-match (``faces.tasks.member_match_event``):
    a selfie indexed, or an event joined, queues one per member and event, and the job sweep
    completes any that was lost or failed (core/jobs.py).
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DONE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")
    faces_through = models.BigIntegerField(default=0)
    searched_at = models.DateTimeField(null=True, blank=True)
    # Rekognition: the member's selfie face in the event's collection, associated with a User
    # there, once rounds search per new face (faces.services.rounds); "" while not. It is
    # deleted at AWS with the member's face data, or when they give a new selfie.
    user_face_id = models.CharField(max_length=64, blank=True, default="")

    class Meta(JobFields.Meta):
        abstract = False
        constraints = [
            models.UniqueConstraint(fields=["user", "event"], name="membersearch_unique"),
        ]
        indexes = [models.Index(fields=["status", "user"], name="membersearch_status_user")]

    def __str__(self) -> str:
        return f"user {self.user_id} in event {self.event_id} through face {self.faces_through}"


class Cluster(models.Model):
    """Faces of one event that no member claims and that look like one person, never two faces
    of one photo. Rebuilt by ``faces.services.settle``; staff can give one to a member
    (``faces.services.cluster_assign``).

    ``key`` is the smallest id of its faces: a rebuild that finds the same faces keeps the row.
    """

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")
    key = models.BigIntegerField()
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event", "key"], name="cluster_unique_event_key"),
        ]
        indexes = [models.Index(fields=["event", "-size"], name="cluster_event_size")]

    def __str__(self) -> str:
        return f"cluster {self.key} of event {self.event_id} ({self.size} faces)"


class FaceSettle(models.Model):
    """What an event's faces were last settled for (references and clusters): the sweep settles
    the event again when this no longer describes it (faces.services.settle)."""

    event = models.OneToOneField(Event, on_delete=models.CASCADE, related_name="+")
    signature = models.CharField(max_length=200, blank=True)
    # When the sweep first saw the event differ from its signature: the debounce's clock.
    stale_since = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"faces of event {self.event_id} settled at {self.settled_at}"
