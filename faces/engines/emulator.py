"""A stand-in for boto3's Rekognition client, for tests and the benchmark: real matches, AWS's
documented limits, and throttling on demand.

moto implements none of Rekognition's face operations, and botocore's Stubber checks the shape
of a request, not what the service does with it (MaxFaces=5000 and 6 MB of image bytes pass it).
This object answers the calls FindMe makes with the semantics AWS documents:

- faces are found, and compared, by the local engine (dlib): a face is a 128-d descriptor and
  ``Similarity = 100 - 10 x distance``, so the default threshold of 95 is dlib's distance 0.5
  (FACE_MATCH_THRESHOLD's default): the two engines draw the same line;
- IndexFaces stores up to ``MaxFaces`` (at most 100) faces of an image, the largest first, and
  never a face under 40 x 40 pixels;
- SearchFacesByImage and SearchUsersByImage search the image's largest face only, and say which
  (``SearchedFaceBoundingBox``); no face at all is ``InvalidParameterException``;
- ``MaxFaces`` of a search is at most 4096, ``MaxUsers`` at most 500, DeleteFaces takes at most
  4096 ids and AssociateFaces 100, image bytes at most 5 MB (``ImageTooLargeException``),
  an image at least 80 x 80 pixels (``InvalidParameterException``);
- a missing collection is ``ResourceNotFoundException``; creating one twice, or a user twice,
  is ``ResourceAlreadyExistsException`` / ``ConflictException``;
- ``throttle_rate``: that share of calls (chosen by a seeded generator) fails with
  ``ThrottlingException`` before doing anything, as AWS does past a quota.

Every call is logged (``calls``: time, operation, throttled or not) and the calls in flight are
counted (``peak_in_flight``), so a test can check the pace and the cap the fleet kept. It is
one object in one process: tests run their workers as threads sharing it.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from botocore.exceptions import ClientError
from PIL import Image, UnidentifiedImageError

from .base import DetectedFace
from .local import LocalEngine

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_SEARCH_FACES = 4096
MAX_INDEX_FACES = 100
MAX_DELETE_IDS = 4096
MAX_ASSOCIATE_IDS = 100
MAX_USERS = 500
MIN_FACE_PX = 40
MIN_IMAGE_SIDE = 80
SIMILARITY_PER_DISTANCE = 10.0
MODEL_VERSION = "7.0"


def similarity(distance: float) -> float:
    return float(min(100.0, max(0.0, 100.0 - SIMILARITY_PER_DISTANCE * distance)))


@dataclass
class _Face:
    face_id: str
    vector: np.ndarray
    box: dict[str, float]
    external_image_id: str
    image_id: str
    user_id: str = ""


@dataclass
class _Collection:
    faces: dict[str, _Face] = field(default_factory=dict)
    users: dict[str, set[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    at: float  # when it arrived
    operation: str
    error: str  # the error code it was answered with; "" when it succeeded (and was billed)

    @property
    def throttled(self) -> bool:
        return self.error == "ThrottlingException"


class RekognitionEmulator:
    def __init__(
        self,
        *,
        throttle_rate: float = 0.0,
        seed: int = 0,
        latency_s: float = 0.0,
        detector: LocalEngine | None = None,
    ) -> None:
        self.throttle_rate = throttle_rate
        self.latency_s = latency_s
        self.detector = detector or LocalEngine(threshold=0.5, max_side=1600, upsample=1)
        self.collections: dict[str, _Collection] = {}
        self.calls: list[Call] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._random = random.Random(seed)
        self._lock = threading.RLock()
        # What dlib found in given bytes: a photo sent twice is read once.
        self._seen: dict[str, tuple[list[DetectedFace], tuple[int, int]]] = {}

    # --- bookkeeping ---------------------------------------------------------------------------
    def count(self, operation: str | None = None, *, throttled: bool = False) -> int:
        """Calls that succeeded (what AWS bills), or with ``throttled`` those throttled."""
        with self._lock:
            return sum(
                1
                for c in self.calls
                if (operation is None or c.operation == operation)
                and (c.throttled if throttled else not c.error)
            )

    def _run(self, operation: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        arrived = time.time()
        with self._lock:
            throttled = self.throttle_rate > 0 and self._random.random() < self.throttle_rate
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        error = "InternalError"
        try:
            if self.latency_s:
                time.sleep(self.latency_s)
            if throttled:
                raise _error(operation, "ThrottlingException", "Slow down.")
            answer = work()
            error = ""
            return answer
        except ClientError as exc:
            error = exc.response["Error"]["Code"]
            raise
        finally:
            with self._lock:
                self.in_flight -= 1
                self.calls.append(Call(arrived, operation, error))

    def _collection(self, operation: str, collection_id: str) -> _Collection:
        found = self.collections.get(collection_id)
        if found is None:
            raise _error(
                operation,
                "ResourceNotFoundException",
                f"The collection id: {collection_id} does not exist",
            )
        return found

    def _faces_in(self, operation: str, image: dict[str, Any]) -> list[tuple[DetectedFace, int]]:
        """The faces of an image, largest first, with their height in pixels."""
        data = image.get("Bytes")
        if not isinstance(data, bytes | bytearray):
            raise _error(operation, "InvalidParameterException", "Image.Bytes is required.")
        if len(data) > MAX_IMAGE_BYTES:
            raise _error(operation, "ImageTooLargeException", "Image size is too large.")
        key = hashlib.sha256(data).hexdigest()
        if key not in self._seen:
            try:
                picture = Image.open(io.BytesIO(data))
                picture.load()
            except (UnidentifiedImageError, OSError):
                raise _error(
                    operation, "InvalidImageFormatException", "Request has invalid image format."
                ) from None
            self._seen[key] = (self.detector.faces_detect(picture.convert("RGB")), picture.size)
        found, (width, height) = self._seen[key]
        if min(width, height) < MIN_IMAGE_SIDE:
            raise _error(
                operation, "InvalidParameterException", "The image is under 80 x 80 pixels."
            )
        faces = [(f, round(f.height * height)) for f in found if f.descriptor]
        faces.sort(key=lambda pair: pair[0].width * width * pair[0].height * height, reverse=True)
        return faces

    def _matches(
        self,
        collection: _Collection,
        vector: np.ndarray,
        threshold: float,
        *,
        skip: str = "",
        among: list[_Face] | None = None,
    ) -> list[tuple[float, _Face]]:
        pool = collection.faces.values() if among is None else among
        stored = [f for f in pool if f.face_id != skip]
        if not stored:
            return []
        matrix = np.stack([f.vector for f in stored])
        dist = np.linalg.norm(matrix - vector, axis=1)
        scored = [(similarity(float(d)), f) for d, f in zip(dist.tolist(), stored, strict=True)]
        scored = [pair for pair in scored if pair[0] >= threshold]
        scored.sort(key=lambda pair: (-pair[0], pair[1].face_id))
        return scored

    # --- collections ---------------------------------------------------------------------------
    def create_collection(self, *, CollectionId: str) -> dict[str, Any]:  # noqa: N803
        def work() -> dict[str, Any]:
            with self._lock:
                if CollectionId in self.collections:
                    raise _error(
                        "CreateCollection",
                        "ResourceAlreadyExistsException",
                        f"The collection id: {CollectionId} already exists",
                    )
                self.collections[CollectionId] = _Collection()
            return {
                "StatusCode": 200,
                "CollectionArn": f"aws:rekognition:emulated:collection/{CollectionId}",
                "FaceModelVersion": MODEL_VERSION,
            }

        return self._run("CreateCollection", work)

    def delete_collection(self, *, CollectionId: str) -> dict[str, Any]:  # noqa: N803
        def work() -> dict[str, Any]:
            with self._lock:
                self._collection("DeleteCollection", CollectionId)
                del self.collections[CollectionId]
            return {"StatusCode": 200}

        return self._run("DeleteCollection", work)

    def list_collections(
        self,
        *,
        NextToken: str = "",  # noqa: N803
        MaxResults: int = 1000,  # noqa: N803
    ) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            if not 0 <= MaxResults <= 4096:
                raise _error("ListCollections", "InvalidParameterException", "MaxResults")
            with self._lock:
                names = sorted(self.collections)
            start = int(NextToken or 0)
            page = names[start : start + MaxResults]
            answer: dict[str, Any] = {
                "CollectionIds": page,
                "FaceModelVersions": [MODEL_VERSION] * len(page),
            }
            if start + MaxResults < len(names):
                answer["NextToken"] = str(start + MaxResults)
            return answer

        return self._run("ListCollections", work)

    # --- faces ---------------------------------------------------------------------------------
    def index_faces(
        self,
        *,
        CollectionId: str,  # noqa: N803
        Image: dict[str, Any],  # noqa: N803
        ExternalImageId: str = "",  # noqa: N803
        MaxFaces: int = MAX_INDEX_FACES,  # noqa: N803
        QualityFilter: str = "AUTO",  # noqa: N803, ARG002
    ) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            with self._lock:
                collection = self._collection("IndexFaces", CollectionId)
                if MaxFaces < 1:
                    raise _error("IndexFaces", "InvalidParameterException", "MaxFaces >= 1")
                faces = self._faces_in("IndexFaces", Image)
                image_id = str(uuid.uuid4())
                records, unindexed = [], []
                for face, pixels in faces:
                    box = _box(face)
                    if pixels < MIN_FACE_PX:
                        unindexed.append(_unindexed(box, "SMALL_BOUNDING_BOX"))
                        continue
                    if len(records) >= min(MaxFaces, MAX_INDEX_FACES):
                        unindexed.append(_unindexed(box, "EXCEEDS_MAX_FACES"))
                        continue
                    stored = _Face(
                        face_id=str(uuid.uuid4()),
                        vector=np.frombuffer(face.descriptor, dtype=np.float32),
                        box=box,
                        external_image_id=ExternalImageId,
                        image_id=image_id,
                    )
                    collection.faces[stored.face_id] = stored
                    records.append(
                        {
                            "Face": {
                                "FaceId": stored.face_id,
                                "BoundingBox": box,
                                "ImageId": image_id,
                                "ExternalImageId": ExternalImageId,
                                "Confidence": 99.9,
                            },
                            "FaceDetail": {"BoundingBox": box, "Confidence": 99.9},
                        }
                    )
            return {
                "FaceRecords": records,
                "FaceModelVersion": MODEL_VERSION,
                "UnindexedFaces": unindexed,
            }

        return self._run("IndexFaces", work)

    def delete_faces(self, *, CollectionId: str, FaceIds: list[str]) -> dict[str, Any]:  # noqa: N803
        def work() -> dict[str, Any]:
            if not 1 <= len(FaceIds) <= MAX_DELETE_IDS:
                raise _error(
                    "DeleteFaces",
                    "InvalidParameterException",
                    f"FaceIds must hold 1 to {MAX_DELETE_IDS} ids, not {len(FaceIds)}",
                )
            deleted, failed = [], []
            with self._lock:
                collection = self._collection("DeleteFaces", CollectionId)
                for fid in FaceIds:
                    face = collection.faces.get(fid)
                    if face is None:
                        continue  # AWS answers an unknown id with nothing at all
                    if face.user_id:
                        failed.append(
                            {
                                "FaceId": fid,
                                "UserId": face.user_id,
                                "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"],
                            }
                        )
                        continue
                    del collection.faces[fid]
                    deleted.append(fid)
            answer: dict[str, Any] = {"DeletedFaces": deleted}
            if failed:
                answer["UnsuccessfulFaceDeletions"] = failed
            return answer

        return self._run("DeleteFaces", work)

    def detect_faces(self, *, Image: dict[str, Any], Attributes: Any = None) -> dict[str, Any]:  # noqa: N803, ARG002
        def work() -> dict[str, Any]:
            with self._lock:
                faces = self._faces_in("DetectFaces", Image)
            return {"FaceDetails": [{"BoundingBox": _box(f), "Confidence": 99.9} for f, _ in faces]}

        return self._run("DetectFaces", work)

    def search_faces_by_image(
        self,
        *,
        CollectionId: str,  # noqa: N803
        Image: dict[str, Any],  # noqa: N803
        MaxFaces: int = 80,  # noqa: N803
        FaceMatchThreshold: float = 80.0,  # noqa: N803
        QualityFilter: str = "AUTO",  # noqa: N803, ARG002
    ) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            _max_faces_check("SearchFacesByImage", MaxFaces)
            with self._lock:
                collection = self._collection("SearchFacesByImage", CollectionId)
                faces = self._faces_in("SearchFacesByImage", Image)
                if not faces:
                    raise _error(
                        "SearchFacesByImage",
                        "InvalidParameterException",
                        "There are no faces in the image. Should be at least 1.",
                    )
                largest = faces[0][0]
                vector = np.frombuffer(largest.descriptor, dtype=np.float32)
                found = self._matches(collection, vector, FaceMatchThreshold)[:MaxFaces]
            return {
                "SearchedFaceBoundingBox": _box(largest),
                "SearchedFaceConfidence": 99.9,
                "FaceMatches": [_face_match(s, f) for s, f in found],
                "FaceModelVersion": MODEL_VERSION,
            }

        return self._run("SearchFacesByImage", work)

    def search_faces(
        self,
        *,
        CollectionId: str,  # noqa: N803
        FaceId: str,  # noqa: N803
        MaxFaces: int = 80,  # noqa: N803
        FaceMatchThreshold: float = 80.0,  # noqa: N803
    ) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            _max_faces_check("SearchFaces", MaxFaces)
            with self._lock:
                collection = self._collection("SearchFaces", CollectionId)
                face = collection.faces.get(FaceId)
                if face is None:
                    raise _error("SearchFaces", "InvalidParameterException", "Unknown FaceId")
                found = self._matches(collection, face.vector, FaceMatchThreshold, skip=FaceId)
            return {
                "SearchedFaceId": FaceId,
                "FaceMatches": [_face_match(s, f) for s, f in found[:MaxFaces]],
                "FaceModelVersion": MODEL_VERSION,
            }

        return self._run("SearchFaces", work)

    # --- users ---------------------------------------------------------------------------------
    def create_user(self, *, CollectionId: str, UserId: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        def work() -> dict[str, Any]:
            with self._lock:
                collection = self._collection("CreateUser", CollectionId)
                if UserId in collection.users:
                    raise _error("CreateUser", "ConflictException", f"User {UserId} exists")
                collection.users[UserId] = set()
            return {}

        return self._run("CreateUser", work)

    def list_users(
        self,
        *,
        CollectionId: str,  # noqa: N803
        NextToken: str = "",  # noqa: N803
        MaxResults: int = 500,  # noqa: N803
    ) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            if not 1 <= MaxResults <= 500:
                raise _error("ListUsers", "InvalidParameterException", "MaxResults")
            with self._lock:
                names = sorted(self._collection("ListUsers", CollectionId).users)
            start = int(NextToken or 0)
            answer: dict[str, Any] = {
                "Users": [
                    {"UserId": name, "UserStatus": "ACTIVE"}
                    for name in names[start : start + MaxResults]
                ]
            }
            if start + MaxResults < len(names):
                answer["NextToken"] = str(start + MaxResults)
            return answer

        return self._run("ListUsers", work)

    def delete_user(self, *, CollectionId: str, UserId: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        def work() -> dict[str, Any]:
            with self._lock:
                collection = self._collection("DeleteUser", CollectionId)
                face_ids = collection.users.pop(UserId, None)
                if face_ids is None:
                    raise _error("DeleteUser", "ResourceNotFoundException", f"No user {UserId}")
                for fid in face_ids:
                    if fid in collection.faces:
                        collection.faces[fid].user_id = ""
            return {}

        return self._run("DeleteUser", work)

    def associate_faces(
        self,
        *,
        CollectionId: str,  # noqa: N803
        UserId: str,  # noqa: N803
        FaceIds: list[str],  # noqa: N803
        **_: Any,
    ) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            if not 1 <= len(FaceIds) <= MAX_ASSOCIATE_IDS:
                raise _error("AssociateFaces", "InvalidParameterException", "FaceIds: 1 to 100")
            associated, failed = [], []
            with self._lock:
                collection = self._collection("AssociateFaces", CollectionId)
                if UserId not in collection.users:
                    raise _error("AssociateFaces", "ResourceNotFoundException", f"No {UserId}")
                for fid in FaceIds:
                    face = collection.faces.get(fid)
                    if face is None or (face.user_id and face.user_id != UserId):
                        failed.append({"FaceId": fid, "Reasons": ["FACE_NOT_FOUND"]})
                        continue
                    face.user_id = UserId
                    collection.users[UserId].add(fid)
                    associated.append({"FaceId": fid})
            answer: dict[str, Any] = {"AssociatedFaces": associated, "UserStatus": "ACTIVE"}
            if failed:
                answer["UnsuccessfulFaceAssociations"] = failed
            return answer

        return self._run("AssociateFaces", work)

    def search_users(
        self,
        *,
        CollectionId: str,  # noqa: N803
        FaceId: str = "",  # noqa: N803
        UserId: str = "",  # noqa: N803
        UserMatchThreshold: float = 80.0,  # noqa: N803
        MaxUsers: int = 10,  # noqa: N803
    ) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            if not 1 <= MaxUsers <= MAX_USERS:
                raise _error("SearchUsers", "InvalidParameterException", "MaxUsers: 1 to 500")
            if bool(FaceId) == bool(UserId):
                raise _error("SearchUsers", "InvalidParameterException", "FaceId or UserId")
            with self._lock:
                collection = self._collection("SearchUsers", CollectionId)
                if FaceId:
                    face = collection.faces.get(FaceId)
                    if face is None:
                        raise _error("SearchUsers", "InvalidParameterException", "Unknown FaceId")
                    vectors = [face.vector]
                else:
                    vectors = [collection.faces[f].vector for f in collection.users.get(UserId, ())]
                # Only faces of users can answer: compared with those alone, as AWS does.
                users_faces = [
                    f for f in collection.faces.values() if f.user_id and f.user_id != UserId
                ]
                best: dict[str, float] = {}
                for vector in vectors:
                    for score, stored in self._matches(
                        collection, vector, UserMatchThreshold, among=users_faces
                    ):
                        best[stored.user_id] = max(best.get(stored.user_id, 0.0), score)
            ranked = sorted(best.items(), key=lambda pair: (-pair[1], pair[0]))[:MaxUsers]
            answer: dict[str, Any] = {
                "UserMatches": [
                    {"Similarity": s, "User": {"UserId": u, "UserStatus": "ACTIVE"}}
                    for u, s in ranked
                ],
                "FaceModelVersion": MODEL_VERSION,
            }
            answer["SearchedFace" if FaceId else "SearchedUser"] = (
                {"FaceId": FaceId} if FaceId else {"UserId": UserId}
            )
            return answer

        return self._run("SearchUsers", work)


def _error(operation: str, code: str, message: str) -> ClientError:
    status = 400 if code != "InternalServerError" else 500
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


def _max_faces_check(operation: str, max_faces: int) -> None:
    if not 1 <= max_faces <= MAX_SEARCH_FACES:
        raise _error(
            operation,
            "InvalidParameterException",
            f"MaxFaces must be 1 to {MAX_SEARCH_FACES}, not {max_faces}",
        )


def _box(face: DetectedFace) -> dict[str, float]:
    return {"Left": face.left, "Top": face.top, "Width": face.width, "Height": face.height}


def _unindexed(box: dict[str, float], reason: str) -> dict[str, Any]:
    return {"Reasons": [reason], "FaceDetail": {"BoundingBox": box, "Confidence": 99.9}}


def _face_match(score: float, face: _Face) -> dict[str, Any]:
    return {
        "Similarity": score,
        "Face": {
            "FaceId": face.face_id,
            "BoundingBox": face.box,
            "ImageId": face.image_id,
            "ExternalImageId": face.external_image_id,
            "Confidence": 99.9,
        },
    }
