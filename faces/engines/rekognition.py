"""AWS Rekognition behind the engine interface: one collection per event, matched in rounds.

Calls and what they cost (Rekognition bills per image per call, about $0.001, and stores each
indexed face for about $0.00001 a month; managing collections and users, and deleting faces, is
not billed per call):
- a photo: IndexFaces once, with its preview JPEG (under 5 MB), into the event's collection;
- a member: SearchFacesByImage with their selfie, cropped to the face dlib found in it, once at
  enrolment per event with faces, and once per re-match round that brought them new faces
  (``faces.services.rounds`` decides when rounds run, and so what they cost).
A selfie's faces are counted offline by the local engine at upload (free, and no cloud call for
a selfie that is then refused); ``faces_detect`` (DetectFaces) is used by no FindMe path.

Limits AWS documents and this engine keeps (the emulator in ``emulator.py`` enforces them):
- SearchFacesByImage returns at most 4096 faces and cannot page. A member whose search comes
  back full may have more: the faces it did not return are searched one by one against the
  member as a Rekognition User (IndexFaces of the selfie, CreateUser, AssociateFaces, then
  SearchUsers per face), and that user and its face are deleted at once afterwards. So a bride
  in 5,000 photos gets all 5,000, at one call per face past the first 4096. The user's name
  holds when it was made: one a killed worker left behind is deleted by a later sweep.
- An image under 80 px on a side is refused: a selfie's face crop is enlarged to 80 px, and so
  is a small photo; a strip too thin to enlarge within 4096 px is not sent.
- It searches the largest face of the image only. The selfie sent is the dlib face with a
  margin, not the whole photo, and the ``SearchedFaceBoundingBox`` of the answer must lie on
  that face; otherwise the search was for someone else and ``SelfieUnusable`` is raised.
- A selfie in which Rekognition finds no face is ``SelfieUnusable`` too, never a silent miss.
- DeleteFaces takes at most 4096 ids per call; image bytes at most 5 MB.

Every call waits for its turn of the fleet-wide rate (``pace``: AWS_REQUESTS_PER_SECOND across
every process and machine), then holds a slot of the cap on calls in flight (``cap``:
AWS_CONCURRENT_REQUESTS). A throttled call releases its slot, backs off (exponential, with
jitter) and waits for a new turn; botocore makes a single attempt, so every attempt is paced.
Billable calls are reported through ``on_call``. The engine keeps no records: the services
record the ids of the vectors it stores.
"""

from __future__ import annotations

import io
import logging
import os
import random
import re
import threading
import time
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
    SelfieUnusable,
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
    "ListCollections": "list_collections",
    "IndexFaces": "index_faces",
    "DeleteFaces": "delete_faces",
    "DetectFaces": "detect_faces",
    "SearchFacesByImage": "search_faces_by_image",
    "CreateUser": "create_user",
    "DeleteUser": "delete_user",
    "ListUsers": "list_users",
    "AssociateFaces": "associate_faces",
    "SearchUsers": "search_users",
}
# Answers that mean "not now": the call is tried again after a back-off, at a new paced turn.
RETRYABLE = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ServiceUnavailableException",
        "InternalServerError",
    }
)
MAX_IMAGE_BYTES = 5 * 1024 * 1024
# Rekognition's own caps: faces stored per IndexFaces call, ids per DeleteFaces call, matches
# returned per search.
MAX_FACES_PER_PHOTO = 100
DELETE_BATCH = 4096
MAX_MATCHES = 4096
MAX_USERS = 500
SELFIE_MAX_SIDE = 1024
DETECT_MAX_SIDE = 1600
# AWS refuses an image under 80 px on either side (InvalidParameterException). A selfie's face
# crop can be that small; it is enlarged. A photo is enlarged too, unless that would make it
# longer than this: a strip that thin holds no face Rekognition finds (its least is 40 px).
MIN_IMAGE_SIDE = 80
MAX_ENLARGED_SIDE = 4096


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


# The name of a search's own user (see _member_search_per_face): member, made at, selfie face.
_SEARCH_USER = re.compile(r"member-(?P<member>\d+)-(?P<made>\d+)-(?P<face>[0-9a-f-]{36})")


def _fit(image: Image.Image, max_side: int) -> Image.Image:
    """The image within ``max_side``, and at least MIN_IMAGE_SIDE on its short side."""
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    return _enlarged(image) or image


def _enlarged(image: Image.Image) -> Image.Image | None:
    """The image, enlarged to MIN_IMAGE_SIDE on its short side where it is shorter; None when
    that would make it longer than MAX_ENLARGED_SIDE."""
    short, long = min(image.size), max(image.size)
    if short >= MIN_IMAGE_SIDE:
        return image
    scale = MIN_IMAGE_SIDE / max(short, 1)
    if long * scale > MAX_ENLARGED_SIDE:
        return None
    size = (
        max(MIN_IMAGE_SIDE, round(image.width * scale)),
        max(MIN_IMAGE_SIDE, round(image.height * scale)),
    )
    return image.resize(size, Image.Resampling.BICUBIC)


def _clamp(value: float) -> float:
    return min(max(float(value), 0.0), 1.0)


def _box(box: dict[str, float]) -> tuple[float, float, float, float]:
    """Rekognition's BoundingBox is already in fractions of the image; it may spill past the
    edges for a face cut by the frame, so keep it inside."""
    left, top = _clamp(box.get("Left", 0.0)), _clamp(box.get("Top", 0.0))
    right = _clamp(box.get("Left", 0.0) + box.get("Width", 0.0))
    bottom = _clamp(box.get("Top", 0.0) + box.get("Height", 0.0))
    return left, top, max(right - left, 0.0), max(bottom - top, 0.0)


def _searched_face_ok(box: dict[str, float], expected: tuple[float, float, float, float]) -> bool:
    """The face Rekognition searched is the expected one: its centre lies on that face."""
    left, top, width, height = expected
    centre_x = box.get("Left", 0.0) + box.get("Width", 0.0) / 2
    centre_y = box.get("Top", 0.0) + box.get("Height", 0.0) / 2
    return left <= centre_x <= left + width and top <= centre_y <= top + height


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
        pace: Callable[[], object] | None = None,
        client_factory: Callable[[], Any] | None = None,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 10.0,
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
        # Waits for this call's turn of the fleet-wide rate; given by the services.
        self.pace = pace
        # Builds what answers the calls: boto3's client unless given (tests and the benchmark
        # hand in the emulator).
        self.client_factory = client_factory
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        # Wall-clock seconds, for the time a search's own user was made (tests fix it).
        self.clock: Callable[[], float] = time.time
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
                    if self.client_factory is not None:
                        self._client = self.client_factory()
                        self._client_pid = os.getpid()
                        return self._client
                    import boto3
                    from botocore.config import Config

                    self._client = boto3.client(
                        "rekognition",
                        region_name=self.region,
                        config=Config(
                            connect_timeout=self.connect_timeout,
                            read_timeout=self.read_timeout,
                            # One attempt: _call retries, so that every attempt waits for a
                            # turn of the fleet-wide rate (botocore's retries would not).
                            retries={"mode": "standard", "total_max_attempts": 1},
                        ),
                    )
                    self._client_pid = os.getpid()
        return self._client

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One Rekognition call: at its turn of the fleet's rate, inside the shared cap, counted
        when it was billed.

        Throttling and AWS's own transient errors are tried again ``max_retries`` times, each
        after an exponential back-off with full jitter (workers throttled together must not
        come back together) and a new turn of the rate; the slot of the cap is not held while
        waiting. An error that outlasts them propagates: the task fails and its queue retries
        it; nothing is lost.
        """
        method = getattr(self.client, METHODS[operation])
        attempt = 0
        while True:
            if self.pace is not None:
                self.pace()
            try:
                with self.cap():
                    response = method(**params)
            except Exception as exc:
                if _error_code(exc) not in RETRYABLE or attempt >= self.max_retries:
                    raise
                delay = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
                attempt += 1
                logger.info(
                    "%s: %s, attempt %d in %.2f s", operation, _error_code(exc), attempt, delay
                )
                time.sleep(random.uniform(0, delay))  # noqa: S311 - jitter, not a secret
                continue
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
        sent = _enlarged(image)
        if sent is None:
            logger.info(
                "photo %s: %s px is too thin for Rekognition, no faces", photo_id, image.size
            )
            return []
        params = {
            "CollectionId": collection,
            "Image": {"Bytes": jpeg_under_limit(sent)},
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
        """SearchFacesByImage with the member's selfie face, mapped onto the given stored faces;
        a search that comes back full goes on face by face (see the module docstring)."""
        by_face_id = {f.engine_face_id: f for f in faces if f.engine_face_id}
        if not by_face_id:
            return []  # nothing indexed in this event yet: no call to pay for
        if member.selfie is None:
            return []
        try:
            selfie = jpeg_under_limit(_fit(member.selfie(), SELFIE_MAX_SIDE))
        except OSError as exc:
            raise EngineError(f"The selfie of user {member.user_id} cannot be read.") from exc
        collection = self.collection_id(event_id)
        try:
            response = self._call(
                "SearchFacesByImage",
                CollectionId=collection,
                Image={"Bytes": selfie},
                MaxFaces=MAX_MATCHES,
                FaceMatchThreshold=self.threshold,
            )
        except Exception as exc:
            code = _error_code(exc)
            if code == "ResourceNotFoundException":
                return []
            if code == "InvalidParameterException":
                raise SelfieUnusable("Rekognition finds no face in this selfie.") from exc
            raise
        searched = response.get("SearchedFaceBoundingBox")
        if searched and member.selfie_face and not _searched_face_ok(searched, member.selfie_face):
            raise SelfieUnusable("Rekognition searched another face than the one in this selfie.")
        similarities = {
            m["Face"]["FaceId"]: float(m["Similarity"]) for m in response.get("FaceMatches", [])
        }
        if len(response.get("FaceMatches", [])) >= MAX_MATCHES:
            rest = sorted(fid for fid in by_face_id if fid not in similarities)
            similarities.update(
                self._member_search_per_face(collection, member.user_id, selfie, rest)
            )
        candidates = []
        for fid, similarity in similarities.items():
            face = by_face_id.get(fid)
            if face is None:  # a face whose photo is being (re)stored: the next round has it
                continue
            distance = (100.0 - similarity) / 100.0
            candidates.append(Candidate(face_id=face.id, user_id=member.user_id, distance=distance))
        return candidates

    def _member_search_per_face(
        self, collection: str, user_id: int, selfie: bytes, face_ids: Sequence[str]
    ) -> dict[str, float]:
        """Which of these stored faces are the member: the member as a Rekognition User for the
        time of the searches (one SearchUsers per face), deleted again at the end.

        The user is this run's alone (named after the selfie face this run indexed): a second
        run of the same search (django-q2 may run a task twice) never deletes it under it. A
        worker killed before the end leaves the user and the face; search_users_leftover_delete
        finds them by the time in the user's name."""
        if not face_ids:
            return {}
        indexed = self._call(
            "IndexFaces",
            CollectionId=collection,
            Image={"Bytes": selfie},
            ExternalImageId=f"member-{user_id}",
            MaxFaces=1,
            QualityFilter="AUTO",
        ).get("FaceRecords", [])
        if not indexed:
            raise SelfieUnusable("Rekognition finds no face in this selfie.")
        selfie_face = indexed[0]["Face"]["FaceId"]
        # When it was made is in its name: the sweep deletes one a killed worker left behind.
        user = f"member-{user_id}-{int(self.clock())}-{selfie_face}"
        found: dict[str, float] = {}
        try:
            try:
                self._call("CreateUser", CollectionId=collection, UserId=user)
            except Exception as exc:
                if _error_code(exc) != "ConflictException":  # this run's own, made before a retry
                    raise
            self._call(
                "AssociateFaces", CollectionId=collection, UserId=user, FaceIds=[selfie_face]
            )
            for fid in face_ids:
                response = self._call(
                    "SearchUsers",
                    CollectionId=collection,
                    FaceId=fid,
                    UserMatchThreshold=self.threshold,
                    MaxUsers=MAX_USERS,
                )
                for match in response.get("UserMatches", []):
                    if match["User"]["UserId"] == user:
                        found[fid] = float(match["Similarity"])
        finally:
            try:
                self._call("DeleteUser", CollectionId=collection, UserId=user)
            except Exception as exc:
                if _error_code(exc) != "ResourceNotFoundException":
                    raise
            self._faces_delete(collection, [selfie_face])
        return found

    # --- per new face: the members as Rekognition Users ------------------------------------------
    def member_user_enroll(self, *, event_id: int, member: MemberRecord) -> str:
        """Make the member a User of the event's collection, holding their selfie face: the
        IndexFaces and AssociateFaces (two billed calls) that searching per face needs. Returns
        the selfie's FaceId there, for the services to record (and forget)."""
        if member.selfie is None:
            raise SelfieUnusable("There is no selfie to search with.")
        collection = self.collection_id(event_id)
        indexed = self._call(
            "IndexFaces",
            CollectionId=collection,
            Image={"Bytes": jpeg_under_limit(_fit(member.selfie(), SELFIE_MAX_SIDE))},
            ExternalImageId=f"member-{member.user_id}",
            MaxFaces=1,
            QualityFilter="AUTO",
        ).get("FaceRecords", [])
        if not indexed:
            raise SelfieUnusable("Rekognition finds no face in this selfie.")
        face = indexed[0]["Face"]
        if member.selfie_face and not _searched_face_ok(face["BoundingBox"], member.selfie_face):
            self._faces_delete(collection, [face["FaceId"]])
            raise SelfieUnusable("Rekognition indexed another face than the one in this selfie.")
        user = f"member-{member.user_id}"
        try:
            self._call("CreateUser", CollectionId=collection, UserId=user)
        except Exception as exc:
            if _error_code(exc) != "ConflictException":  # made by an earlier, failed attempt
                raise
        self._call("AssociateFaces", CollectionId=collection, UserId=user, FaceIds=[face["FaceId"]])
        return face["FaceId"]

    def member_user_forget(self, *, event_id: int, user_id: int, face_id: str) -> None:
        """Delete the member's User and selfie face from the event's collection. Gone already
        is no error."""
        collection = self.collection_id(event_id)
        try:
            self._call("DeleteUser", CollectionId=collection, UserId=f"member-{user_id}")
        except Exception as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
        if face_id:
            self._faces_delete(collection, [face_id])

    def faces_candidates(
        self, *, event_id: int, faces: Sequence[FaceRecord], user_ids: set[int]
    ) -> list[Candidate]:
        """SearchUsers once per stored face: which of these members (Users of the event's
        collection) each face may be, under the threshold."""
        collection = self.collection_id(event_id)
        candidates = []
        for face in faces:
            if not face.engine_face_id:
                continue
            try:
                response = self._call(
                    "SearchUsers",
                    CollectionId=collection,
                    FaceId=face.engine_face_id,
                    UserMatchThreshold=self.threshold,
                    MaxUsers=MAX_USERS,
                )
            except Exception as exc:
                code = _error_code(exc)
                if code == "ResourceNotFoundException":
                    return []
                if code == "InvalidParameterException":  # the face was re-stored meanwhile
                    continue
                raise
            for match in response.get("UserMatches", []):
                name = match["User"]["UserId"]
                if not name.startswith("member-") or not name[7:].isdigit():
                    continue  # a search past 4096's own user, not a member's
                if int(name[7:]) in user_ids:
                    candidates.append(
                        Candidate(
                            face_id=face.id,
                            user_id=int(name[7:]),
                            distance=(100.0 - float(match["Similarity"])) / 100.0,
                        )
                    )
        return candidates

    def collections_list(self) -> list[int]:
        """The ids of the events that have a collection at AWS (for the sweep of orphans)."""
        prefix = f"{self.collection_prefix}-event-"
        found: list[int] = []
        token = ""
        while True:
            params: dict[str, Any] = {"MaxResults": 1000}
            if token:
                params["NextToken"] = token
            response = self._call("ListCollections", **params)
            for name in response.get("CollectionIds", []):
                if name.startswith(prefix) and name[len(prefix) :].isdigit():
                    found.append(int(name[len(prefix) :]))
            token = response.get("NextToken", "")
            if not token:
                return found

    def search_users_leftover_delete(self, *, event_id: int, older_than_s: float) -> int:
        """Delete the users (and their selfie faces) that searches past 4096 made more than
        ``older_than_s`` ago in the event's collection: a search deletes its own at its end, so
        an old one is a killed worker's. Returns how many were deleted."""
        collection = self.collection_id(event_id)
        cutoff = self.clock() - older_than_s
        leftovers: list[tuple[str, str]] = []
        token = ""
        while True:
            params: dict[str, Any] = {"CollectionId": collection, "MaxResults": 500}
            if token:
                params["NextToken"] = token
            try:
                response = self._call("ListUsers", **params)
            except Exception as exc:
                if _error_code(exc) == "ResourceNotFoundException":
                    return 0
                raise
            for user in response.get("Users", []):
                found = _SEARCH_USER.fullmatch(user.get("UserId", ""))
                if found and int(found["made"]) < cutoff:
                    leftovers.append((found[0], found["face"]))
            token = response.get("NextToken", "")
            if not token:
                break
        for user, _face in leftovers:
            try:
                self._call("DeleteUser", CollectionId=collection, UserId=user)
            except Exception as exc:
                if _error_code(exc) != "ResourceNotFoundException":
                    raise
        self._faces_delete(collection, [face for _user, face in leftovers])
        return len(leftovers)

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
