"""The offline engine: dlib's HOG detector, 5-point landmarks and ResNet descriptors.

The models come from the face-recognition-models package, loaded with dlib directly:
importing face_recognition_models' own ``__init__`` needs pkg_resources, and importing
face_recognition then calls quit() (the process exits 0 with no message).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
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

DESCRIPTOR_SIZE = 128
# Faces shorter than this (pixels, at the detection size) get their descriptor from the
# full-resolution image when the caller can provide it.
SMALL_FACE_PX = 50
_models_lock = threading.Lock()
# dlib's detector and networks are not safe to call from two threads at once: two selfie checks
# in one threaded web process (gunicorn gthread, runserver) aborted the whole process in
# dlib (SIGABRT). One process runs one dlib computation at a time; across processes, self.cap.
_compute_lock = threading.Lock()
_models: tuple | None = None


def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("The face-recognition-models package is not installed.")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _load_models() -> tuple:
    """Load the three dlib models once per process (about 100 MB, ~0.5 s)."""
    global _models
    if _models is None:
        with _models_lock:
            if _models is None:
                import dlib

                folder = models_dir()
                _models = (
                    dlib.get_frontal_face_detector(),
                    dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
                    dlib.face_recognition_model_v1(
                        str(folder / "dlib_face_recognition_resnet_model_v1.dat")
                    ),
                )
    return _models


def descriptors_matrix(blobs: Sequence[bytes]) -> np.ndarray:
    if not blobs:
        return np.empty((0, DESCRIPTOR_SIZE), dtype=np.float32)
    return np.frombuffer(b"".join(bytes(b) for b in blobs), dtype=np.float32).reshape(
        -1, DESCRIPTOR_SIZE
    )


def distances(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Euclidean distance from one descriptor to every row, vectorised.

    |a - b|^2 = |a|^2 - 2 a.b + |b|^2: one matrix-vector product instead of materialising
    ``matrix - vector`` (25 MB for 50,000 faces).
    """
    if matrix.shape[0] == 0:
        return np.empty(0, dtype=np.float32)
    squared = np.einsum("ij,ij->i", matrix, matrix) - 2.0 * (matrix @ vector) + vector @ vector
    return np.sqrt(np.maximum(squared, 0.0))


class LocalEngine:
    name = "local"
    batched_matching = False
    stores_vectors = False  # the descriptors live in our own Face rows

    def __init__(
        self,
        *,
        threshold: float,
        max_side: int = 1600,
        upsample: int = 1,
        on_call: CallCounter | None = None,
        cap: Cap = no_cap,
    ) -> None:
        self.threshold = threshold
        self.max_side = max_side
        self.upsample = upsample
        # Counted like the paid engine's calls, so staff statistics see the work done.
        self.on_call = on_call
        # Bounds dlib computations across processes (each holds ~270 MB at its peak).
        self.cap = cap

    def _count(self, operation: str) -> None:
        if self.on_call is not None:
            self.on_call(operation)

    # --- detection ---------------------------------------------------------------------------
    def faces_detect(
        self, image: Image.Image, *, source: Callable[[], Image.Image] | None = None
    ) -> list[DetectedFace]:
        """Faces of an upright image, found at ``max_side`` px.

        ``source``, if given, returns the same picture at full resolution: a small face's
        descriptor is computed from it, where the face has the pixels the detection size took
        away (bench/process.py: 53 of 53 small member faces matched instead of 52). It is
        called only when such a face was found.
        """
        work = image if image.mode == "RGB" else image.convert("RGB")
        scale = 1.0
        if max(work.size) > self.max_side:
            scale = self.max_side / max(work.size)
            work = work.resize(
                (max(1, round(work.width * scale)), max(1, round(work.height * scale))),
                Image.Resampling.BILINEAR,
            )
        pixels = np.asarray(work)
        width, height = work.size
        with self.cap(), _compute_lock:
            found = self._faces_find(pixels, width, height, source)
        # Reading order, so that a face's index is stable across runs.
        found.sort(key=lambda f: (round(f.top, 2), f.left))
        return found

    def _faces_find(
        self,
        pixels: np.ndarray,
        width: int,
        height: int,
        source: Callable[[], Image.Image] | None,
    ) -> list[DetectedFace]:
        import dlib

        detector, predictor, encoder = _load_models()
        found: list[DetectedFace] = []
        detail: np.ndarray | None = None
        # HOG on the grey image: 30% less CPU than on the three colour channels, with the same
        # faces found on the bench's 100 photos and on ../shared/faces (landmarks and
        # descriptors still read the colour pixels).
        grey = np.asarray(Image.fromarray(pixels).convert("L"))
        for rect in detector(grey, self.upsample):
            left, top = max(rect.left(), 0), max(rect.top(), 0)
            right, bottom = min(rect.right(), width), min(rect.bottom(), height)
            if right <= left or bottom <= top:
                continue
            if source is not None and rect.height() < SMALL_FACE_PX:
                if detail is None:
                    detail = np.asarray(source().convert("RGB"))
                ratio = detail.shape[1] / width
                big = dlib.rectangle(
                    round(rect.left() * ratio),
                    round(rect.top() * ratio),
                    round(rect.right() * ratio),
                    round(rect.bottom() * ratio),
                )
                shape = predictor(detail, big)
                face_pixels = detail
            else:
                shape = predictor(pixels, rect)
                face_pixels = pixels
            vector = np.asarray(
                encoder.compute_face_descriptor(face_pixels, shape), dtype=np.float32
            )
            found.append(
                DetectedFace(
                    left=left / width,
                    top=top / height,
                    width=(right - left) / width,
                    height=(bottom - top) / height,
                    descriptor=vector.tobytes(),
                )
            )
        return found

    def photo_index(
        self,
        *,
        event_id: int,  # noqa: ARG002
        photo_id: int,  # noqa: ARG002
        image: Image.Image,
        source: Callable[[], Image.Image] | None = None,
    ) -> list[DetectedFace]:
        found = self.faces_detect(image, source=source)
        self._count("photo_index")
        return found

    def member_enroll(
        self,
        *,
        user_id: int,
        event_ids: Sequence[int],
        image: Image.Image,  # noqa: ARG002
    ) -> Enrollment:
        faces = self.faces_detect(image)
        self._count("member_enroll")
        if len(faces) != 1:
            raise EngineError(f"The selfie must show exactly one face; {len(faces)} were found.")
        return Enrollment(descriptor=faces[0].descriptor, engine_ref="")

    # --- matching ----------------------------------------------------------------------------
    def photo_candidates(
        self,
        *,
        event_id: int,  # noqa: ARG002
        faces: Sequence[FaceRecord],
        members: Sequence[MemberRecord],
    ) -> list[Candidate]:
        faces = [f for f in faces if f.descriptor]
        members = [m for m in members if m.descriptor]
        if not faces or not members:
            return []
        face_matrix = descriptors_matrix([f.descriptor for f in faces])
        member_matrix = descriptors_matrix([m.descriptor for m in members])
        # All pairs at once: (faces x members) distances.
        table = np.linalg.norm(face_matrix[:, None, :] - member_matrix[None, :, :], axis=2)
        rows, cols = np.nonzero(table <= self.threshold)
        return [
            Candidate(face_id=faces[r].id, user_id=members[c].user_id, distance=float(table[r, c]))
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
        ]

    def member_candidates(
        self,
        *,
        event_id: int,  # noqa: ARG002
        member: MemberRecord,
        faces: Sequence[FaceRecord],
    ) -> list[Candidate]:
        if not member.descriptor:
            return []
        faces = [f for f in faces if f.descriptor]
        return self.member_candidates_from_matrix(
            member=member,
            face_ids=[f.id for f in faces],
            matrix=descriptors_matrix([f.descriptor for f in faces]),
        )

    def member_candidates_from_matrix(
        self, *, member: MemberRecord, face_ids: Sequence[int], matrix: np.ndarray
    ) -> list[Candidate]:
        vector = np.frombuffer(bytes(member.descriptor), dtype=np.float32)
        dist = distances(matrix, vector)
        hits = np.nonzero(dist <= self.threshold)[0]
        return [
            Candidate(face_id=face_ids[i], user_id=member.user_id, distance=float(dist[i]))
            for i in hits.tolist()
        ]

    # --- forgetting: the vectors live only in our own tables ---------------------------------
    def member_forget(self, *, user_id: int, engine_ref: str, event_ids: Sequence[int]) -> None:
        return None

    def event_forget(self, *, event_id: int) -> None:
        return None

    def faces_forget(self, *, event_id: int, face_ids: Sequence[str]) -> None:
        return None
