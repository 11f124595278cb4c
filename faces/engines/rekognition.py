"""AWS Rekognition behind the engine interface: one collection per event, searched per member.

Calls and what they cost (Rekognition bills per image per call, about $0.001; managing
collections and deleting faces is not billed per call):
- a photo: IndexFaces once, with its preview JPEG (under 5 MB), into the event's collection;
- a member: SearchFacesByImage with their selfie, once at enrolment per event with faces, and
  once per batched re-match round (``faces.services.event_rematch``) that brought new faces.
A selfie's faces are counted offline by the local engine at upload (free, and no cloud call for
a selfie that is then refused); ``faces_detect`` (DetectFaces) is here for completeness.

Selfies are not indexed. Indexing them (or making Rekognition Users) would add a billable call
per member and per event and save none: every search still costs one call, whether by FaceId,
by UserId or by image. So AWS keeps no vector of a member at all, and deleting a member's face
data has nothing to delete there.

Matching is batched (``batched_matching``): ``photo_candidates`` proposes nothing, and the
services run a re-match round of the event instead, so a burst of photos costs one search per
member rather than one per face.

Every call holds a slot of the cap the services hand in (``AWS_CONCURRENT_REQUESTS`` slots of a
semaphore shared by every process and machine), and billable calls are reported through
``on_call``. The engine keeps no records: the services record the ids of the vectors it stores.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from .base import (
    CallCounter,
    Candidate,
    Cap,
    DetectedFace,
    EngineError,
    Enrollment,
    FaceRecord,
    MemberRecord,
    no_cap,
)

logger = logging.getLogger(__name__)

# Operations billed per image (AWS pricing "Group 1" and "Group 2"). Collection management,
# ListFaces and DeleteFaces are not billed per call.
BILLABLE = frozenset(
    {
        "IndexFaces",
        "SearchFacesByImage",
        "SearchFaces",
        "DetectFaces",
        "CompareFaces",
        "AssociateFaces",
        "DisassociateFaces",
        "SearchUsers",
        "SearchUsersByImage",
    }
)
METHODS = {
    "CreateCollection": "create_collection",
    "DeleteCollection": "delete_collection",
    "IndexFaces": "index_faces",
    "DeleteFaces": "delete_faces",
    "DetectFaces": "detect_faces",
    "SearchFacesByImage": "search_faces_by_image",
}
MAX_IMAGE_BYTES = 5 * 1024 * 1024
# Rekognition's own caps: faces stored per IndexFaces call, ids per DeleteFaces call, matches
# returned per search.
MAX_FACES_PER_PHOTO = 100
DELETE_BATCH = 4096
MAX_MATCHES = 4096
SELFIE_MAX_SIDE = 1024
DETECT_MAX_SIDE = 1600


def jpeg_under_limit(image: Image.Image, *, limit: int = MAX_IMAGE_BYTES) -> bytes:
    """The image as JPEG bytes under Rekognition's 5 MB limit for inline images."""
    work = image if image.mode == "RGB" else image.convert("RGB")
    quality = 90
    while True:
        buffer = io.BytesIO()
        work.save(buffer, format="JPEG", quality=quality)
        data = buffer.getvalue()
        if len(data) < limit:
            return data
        if quality > 60:
            quality -= 15
        else:  # a 1600 px preview never gets here; anything larger is scaled down
            work = work.resize((max(1, work.width * 3 // 4), max(1, work.height * 3 // 4)))


def _fit(image: Image.Image, max_side: int) -> Image.Image:
    if max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def _clamp(value: float) -> float:
    return min(max(float(value), 0.0), 1.0)


def _box(box: dict[str, float]) -> tuple[float, float, float, float]:
    """Rekognition's BoundingBox is already in fractions of the image; it may spill past the
    edges for a face cut by the frame, so keep it inside."""
    left, top = _clamp(box.get("Left", 0.0)), _clamp(box.get("Top", 0.0))
    right = _clamp(box.get("Left", 0.0) + box.get("Width", 0.0))
    bottom = _clamp(box.get("Top", 0.0) + box.get("Height", 0.0))
    return left, top, max(right - left, 0.0), max(bottom - top, 0.0)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class RekognitionEngine:
    name = "rekognition"
    # Matches are made by faces.services.event_rematch in batches, not as each photo is stored.
    batched_matching = True
    stores_vectors = True

    def __init__(
        self,
        *,
        region: str,
        collection_prefix: str,
        threshold: float,
        connect_timeout: float,
        read_timeout: float,
        max_retries: int,
        on_call: CallCounter | None = None,
        cap: Cap = no_cap,
    ) -> None:
        self.region = region
        self.collection_prefix = collection_prefix
        # Similarity (0-100) at or above which a face is the member's.
        self.threshold = threshold
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_retries = max_retries
        self.on_call = on_call
        self.cap = cap
        self._client: Any = None
        self._client_pid = 0
        self._client_lock = threading.Lock()

    # --- the client and every call ---------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The boto3 client, built on first use (never at import) and again after a fork."""
        if self._client is None or self._client_pid != os.getpid():
            with self._client_lock:
                if self._client is None or self._client_pid != os.getpid():
                    import boto3
                    from botocore.config import Config

                    self._client = boto3.client(
                        "rekognition",
                        region_name=self.region,
                        config=Config(
                            connect_timeout=self.connect_timeout,
                            read_timeout=self.read_timeout,
                            # Adaptive: retries throttling with back-off and also slows this
                            # client's sending rate when AWS says so.
                            # max_attempts counts retries, not the first attempt.
                            retries={"mode": "adaptive", "max_attempts": self.max_retries},
                        ),
                    )
                    self._client_pid = os.getpid()
        return self._client

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One Rekognition call, inside the shared cap, counted when it was billed.

        A ThrottlingException or ProvisionedThroughputExceededException that outlasts botocore's
        retries propagates: the task fails and its queue retries it; nothing is lost.
        """
        method = getattr(self.client, METHODS[operation])
        with self.cap():
            response = method(**params)
        if operation in BILLABLE and self.on_call is not None:
            self.on_call(operation)
        return response

    def collection_id(self, event_id: int) -> str:
        return f"{self.collection_prefix}-event-{event_id}"

    def _collection_create(self, collection: str) -> None:
        try:
            self._call("CreateCollection", CollectionId=collection)
        except Exception as exc:
            if _error_code(exc) != "ResourceAlreadyExistsException":  # another worker made it
                raise

    # --- detection -------------------------------------------------------------------------------
    def faces_detect(self, image: Image.Image) -> list[DetectedFace]:
        # A selfie arrives at full size; faces of 40 px and more are all Rekognition needs.
        small = _fit(image, DETECT_MAX_SIDE)
        response = self._call("DetectFaces", Image={"Bytes": jpeg_under_limit(small)})
        found = [DetectedFace(*_box(d["BoundingBox"])) for d in response.get("FaceDetails", [])]
        found.sort(key=lambda f: (round(f.top, 2), f.left))
        return found

    def photo_index(
        self,
        *,
        event_id: int,
        photo_id: int,
        image: Image.Image,
        source: Callable[[], Image.Image] | None = None,  # noqa: ARG002 - the preview suffices
    ) -> list[DetectedFace]:
        """IndexFaces once. The services forget what an earlier run of this photo indexed
        first, and record the ids returned here."""
        collection = self.collection_id(event_id)
        params = {
            "CollectionId": collection,
            "Image": {"Bytes": jpeg_under_limit(image)},
            "ExternalImageId": f"photo-{photo_id}",
            "MaxFaces": MAX_FACES_PER_PHOTO,
            "QualityFilter": "AUTO",
        }
        try:
            response = self._call("IndexFaces", **params)
        except Exception as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
            # The event's first photo: its collection is made now, not when the event is.
            self._collection_create(collection)
            response = self._call("IndexFaces", **params)

        records = response.get("FaceRecords", [])
        found = [
            DetectedFace(*_box(r["Face"]["BoundingBox"]), engine_face_id=r["Face"]["FaceId"])
            for r in records
        ]
        found.sort(key=lambda f: (round(f.top, 2), f.left))
        return found

    def faces_forget(self, *, event_id: int, face_ids: Sequence[str]) -> None:
        """DeleteFaces, in batches of Rekognition's limit. A missing collection has no faces."""
        self._faces_delete(self.collection_id(event_id), list(face_ids))

    def _faces_delete(self, collection: str, face_ids: Sequence[str]) -> None:
        for start in range(0, len(face_ids), DELETE_BATCH):
            try:
                self._call(
                    "DeleteFaces",
                    CollectionId=collection,
                    FaceIds=list(face_ids[start : start + DELETE_BATCH]),
                )
            except Exception as exc:
                if _error_code(exc) != "ResourceNotFoundException":  # no collection, no faces
                    raise
                return

    def member_enroll(
        self,
        *,
        user_id: int,  # noqa: ARG002
        event_ids: Sequence[int],  # noqa: ARG002
        image: Image.Image,  # noqa: ARG002
    ) -> Enrollment:
        # Nothing to send: searches use the stored selfie itself. See the module docstring for
        # why selfies are not indexed.
        return Enrollment(descriptor=None, engine_ref="")

    # --- matching --------------------------------------------------------------------------------
    def photo_candidates(
        self,
        *,
        event_id: int,
        faces: Sequence[FaceRecord],
        members: Sequence[MemberRecord],
    ) -> list[Candidate]:
        # Searching each face now would cost a call per face. The members are searched for
        # instead, in one batched round per window (batched_matching).
        return []

    def member_candidates(
        self, *, event_id: int, member: MemberRecord, faces: Sequence[FaceRecord]
    ) -> list[Candidate]:
        """SearchFacesByImage with the member's selfie, mapped onto the given stored faces."""
        by_face_id = {f.engine_face_id: f for f in faces if f.engine_face_id}
        if not by_face_id:
            return []  # nothing indexed in this event yet: no call to pay for
        if member.selfie is None:
            return []
        try:
            selfie = jpeg_under_limit(_fit(member.selfie(), SELFIE_MAX_SIDE))
        except OSError as exc:
            raise EngineError(f"The selfie of user {member.user_id} cannot be read.") from exc
        try:
            response = self._call(
                "SearchFacesByImage",
                CollectionId=self.collection_id(event_id),
                Image={"Bytes": selfie},
                MaxFaces=MAX_MATCHES,
                FaceMatchThreshold=self.threshold,
            )
        except Exception as exc:
            code = _error_code(exc)
            if code == "ResourceNotFoundException":
                return []
            if code == "InvalidParameterException":
                # Rekognition finds no face in the selfie: searching again will not help.
                logger.warning("no face found in the selfie of user %s: %s", member.user_id, exc)
                return []
            raise
        candidates = []
        for match in response.get("FaceMatches", []):
            face = by_face_id.get(match["Face"]["FaceId"])
            if face is None:  # a face whose photo is being (re)stored: the next round has it
                continue
            distance = (100.0 - float(match["Similarity"])) / 100.0
            candidates.append(Candidate(face_id=face.id, user_id=member.user_id, distance=distance))
        return candidates

    # --- forgetting ------------------------------------------------------------------------------
    def member_forget(self, *, user_id: int, engine_ref: str, event_ids: Sequence[int]) -> None:
        # No vector of a member is ever stored at AWS (selfies are searched, never indexed).
        return None

    def event_forget(self, *, event_id: int) -> None:
        """Delete the event's collection, and with it every vector of its photos."""
        try:
            self._call("DeleteCollection", CollectionId=self.collection_id(event_id))
        except Exception as exc:
            if _error_code(exc) != "ResourceNotFoundException":  # never made, or already gone
                raise
