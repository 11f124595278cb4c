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
# The second pass, for faces too small for the first (issue 14). At 1600 px a face of 60 px in a
# 4000 px photo is 24 px, and HOG with one upsample finds faces from about 30 px at that size.
# Skin-coloured blobs of a small face's size, outside the faces already found, are looked at
# again, enlarged SMALL_PASS_ZOOM times: on bench/process.py's 100 photos they cover about 1% of
# the picture, and the pass costs about 3% of the first (numbers in bench/README.md).
SMALL_PASS_CELL = 8  # px at the detection size: skin is judged per cell of this side
SMALL_PASS_MAX_BLOB = 120  # px: a larger blob is a big face, a body or a wall, not a small face
SMALL_PASS_MIN_CELLS = 2
SMALL_PASS_GROW = 1.6  # the region around a blob: its long side times this, plus the margin
SMALL_PASS_MARGIN = 16
SMALL_PASS_ZOOM = 3
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


def _skin_cells(pixels: np.ndarray) -> np.ndarray:
    """Which SMALL_PASS_CELL-sided cells of an RGB image are mostly skin-coloured.

    The chrominance box of Chai and Ngan (1999), 77 <= Cb <= 127 and 133 <= Cr <= 173, which
    holds light and dark skin alike: brightness (Y) is left out on purpose.
    """
    ycc = np.asarray(Image.fromarray(pixels).convert("YCbCr"))
    cb, cr = ycc[..., 1], ycc[..., 2]
    skin = (cb >= 77) & (cb <= 127) & (cr >= 133) & (cr <= 173)
    cell = SMALL_PASS_CELL
    rows, cols = skin.shape[0] // cell, skin.shape[1] // cell
    return (
        skin[: rows * cell, : cols * cell].reshape(rows, cell, cols, cell).mean(axis=(1, 3)) >= 0.5
    )


def _blobs(cells: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """8-connected groups of true cells: (left, top, right, bottom) in cells, and their count."""
    height, width = cells.shape
    seen = np.zeros_like(cells, dtype=bool)
    blobs = []
    for y, x in zip(*(a.tolist() for a in np.nonzero(cells)), strict=True):
        if seen[y, x]:
            continue
        seen[y, x] = True
        stack = [(y, x)]
        top = bottom = y
        left = right = x
        count = 0
        while stack:
            cy, cx = stack.pop()
            count += 1
            top, bottom, left, right = min(top, cy), max(bottom, cy), min(left, cx), max(right, cx)
            for ny in (cy - 1, cy, cy + 1):
                for nx in (cx - 1, cx, cx + 1):
                    if 0 <= ny < height and 0 <= nx < width and cells[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        blobs.append((left, top, right + 1, bottom + 1, count))
    return blobs


def small_face_regions(pixels: np.ndarray, known: Sequence) -> list[tuple[int, int, int, int]]:
    """Where a face too small for the first pass may be: (left, top, right, bottom) in pixels.

    Skin-coloured blobs no larger than a small face (SMALL_PASS_MAX_BLOB), away from the faces
    ``known`` (dlib rectangles) and the neck and shoulders below them, each grown into a square
    region around it. Larger blobs (big faces, arms, a wall the colour of skin) are left out:
    scanning them enlarged would cost what a full second pass costs.
    """
    cells = _skin_cells(pixels)
    cell = SMALL_PASS_CELL
    for rect in known:
        margin = 0.6 * rect.width()
        cells[
            max(0, int((rect.top() - margin) // cell)) : max(
                0, int((rect.bottom() + 2 * margin) // cell) + 1
            ),
            max(0, int((rect.left() - margin) // cell)) : max(
                0, int((rect.right() + margin) // cell) + 1
            ),
        ] = False
    height, width = pixels.shape[:2]
    regions = []
    for left, top, right, bottom, count in _blobs(cells):
        side = max(right - left, bottom - top) * cell
        if count < SMALL_PASS_MIN_CELLS or side > SMALL_PASS_MAX_BLOB:
            continue
        half = (side * SMALL_PASS_GROW + SMALL_PASS_MARGIN) / 2
        cx, cy = (left + right) * cell / 2, (top + bottom) * cell / 2
        regions.append(
            (
                max(0, int(cx - half)),
                max(0, int(cy - half)),
                min(width, int(cx + half)),
                min(height, int(cy + half)),
            )
        )
    return regions


def _small_faces_find(detector, pixels: np.ndarray, grey: Image.Image, known: list) -> list:
    """The second pass: HOG on each small-face region, enlarged. Returns dlib rectangles at the
    detection size, none of them a face already ``known`` or found in an overlapping region."""
    import dlib

    zoom = SMALL_PASS_ZOOM
    found: list = []
    for left, top, right, bottom in small_face_regions(pixels, known):
        crop = grey.crop((left, top, right, bottom))
        crop = crop.resize((crop.width * zoom, crop.height * zoom), Image.Resampling.BILINEAR)
        for r in detector(np.asarray(crop), 0):
            rect = dlib.rectangle(
                left + round(r.left() / zoom),
                top + round(r.top() / zoom),
                left + round(r.right() / zoom),
                top + round(r.bottom() / zoom),
            )
            centre = rect.center()
            # Regions overlap, and a face the first pass found may reach into one: a face whose
            # centre lies in a face already kept is that face.
            if not any(other.contains(centre) for other in (*known, *found)):
                found.append(rect)
    return found


def _face_crop(image: Image.Image, rect, ratio: float) -> tuple[np.ndarray, object]:
    """The pixels around a face of the detection size in ``image`` (``ratio`` times larger),
    and the face's rectangle in them. Only the face and a margin of its own size on each side
    (what the landmarks and the descriptor's aligned chip read) become an array: with the
    second pass, most event photos have a small face, and the full 12 MP picture as an array
    would be a second copy of 36 MB beside the decoded image."""
    import dlib

    size = rect.height() * ratio
    left = max(0, round(rect.left() * ratio - size))
    top = max(0, round(rect.top() * ratio - size))
    right = min(image.width, round(rect.right() * ratio + size))
    bottom = min(image.height, round(rect.bottom() * ratio + size))
    pixels = np.asarray(image.crop((left, top, right, bottom)))
    return pixels, dlib.rectangle(
        round(rect.left() * ratio) - left,
        round(rect.top() * ratio) - top,
        round(rect.right() * ratio) - left,
        round(rect.bottom() * ratio) - top,
    )


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
        small_faces: bool = True,
    ) -> None:
        self.threshold = threshold
        # The second pass for small faces in event photos (faces_detect's small_faces).
        self.small_faces = small_faces
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
        self,
        image: Image.Image,
        *,
        source: Callable[[], Image.Image] | None = None,
        small_faces: bool = False,
    ) -> list[DetectedFace]:
        """Faces of an upright image, found at ``max_side`` px.

        ``small_faces``: also look for faces too small for HOG at that size, in a second pass
        over skin-coloured regions (see small_face_regions). For event photos; a selfie's
        check keeps to the first pass, so that nothing in its background becomes a second face.

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
            found = self._faces_find(pixels, width, height, source, small_faces)
        # Reading order, so that a face's index is stable across runs.
        found.sort(key=lambda f: (round(f.top, 2), f.left))
        return found

    def _faces_find(
        self,
        pixels: np.ndarray,
        width: int,
        height: int,
        source: Callable[[], Image.Image] | None,
        small_faces: bool = False,
    ) -> list[DetectedFace]:
        detector, predictor, encoder = _load_models()
        found: list[DetectedFace] = []
        detail: Image.Image | None = None
        # HOG on the grey image: 30% less CPU than on the three colour channels, with the same
        # faces found on the bench's 100 photos and on ../shared/faces (landmarks and
        # descriptors still read the colour pixels).
        grey_image = Image.fromarray(pixels).convert("L")
        grey = np.asarray(grey_image)
        rects = list(detector(grey, self.upsample))
        if small_faces:
            rects += _small_faces_find(detector, pixels, grey_image, rects)
        for rect in rects:
            left, top = max(rect.left(), 0), max(rect.top(), 0)
            right, bottom = min(rect.right(), width), min(rect.bottom(), height)
            if right <= left or bottom <= top:
                continue
            if source is not None and rect.height() < SMALL_FACE_PX:
                if detail is None:
                    detail = source()
                    if detail.mode != "RGB":
                        detail = detail.convert("RGB")
                face_pixels, big = _face_crop(detail, rect, detail.width / width)
                shape = predictor(face_pixels, big)
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
        found = self.faces_detect(image, source=source, small_faces=self.small_faces)
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
