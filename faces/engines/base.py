"""The small interface every face engine implements.

An engine is a leaf: it takes images, vectors and ids, and returns faces, descriptors or search
results. It knows nothing of the database, the queue or the other apps. The services
(faces/services/) own the rules (who may match whom, one face per member, rejected matches stay
rejected) and the bookkeeping: which vectors an engine holds, selfie loading, call counting and
scheduling. What an engine needs from outside is handed to it when it is built: a callback to
count its calls, and the cap that bounds its concurrent work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from PIL import Image


class EngineError(Exception):
    """The engine could not process this input. The message is safe to show to a person."""


class SelfieUnusable(EngineError):
    """The engine cannot search with this selfie (it finds no face in it, or another face than
    the one dlib found at upload): the member needs a new photo. Trying again will not help."""


@dataclass(frozen=True)
class DetectedFace:
    # Box as fractions of the upright image, so it holds at any resolution.
    left: float
    top: float
    width: float
    height: float
    descriptor: bytes | None = None
    engine_face_id: str = ""


@dataclass(frozen=True)
class FaceRecord:
    """A face already stored, as the matching step sees it."""

    id: int
    photo_id: int
    descriptor: bytes | None
    engine_face_id: str


@dataclass(frozen=True)
class MemberRecord:
    user_id: int
    descriptor: bytes | None
    engine_ref: str
    # The member's selfie, upright, loaded only by an engine that searches with it.
    selfie: Callable[[], Image.Image] | None = None
    # Where the member's face is in the image ``selfie`` returns (left, top, width, height, as
    # fractions), when known: an engine that searches with the image checks it searched that face.
    selfie_face: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class Candidate:
    face_id: int
    user_id: int
    distance: float


@dataclass(frozen=True)
class Enrollment:
    descriptor: bytes | None
    engine_ref: str


# Counts one call of an operation (for billing and statistics); given by the services.
CallCounter = Callable[[str], None]
# Holds one slot of a concurrency cap while an expensive call runs; given by the services.
Cap = Callable[[], contextlib.AbstractContextManager]


def no_cap() -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


class FaceEngine(Protocol):
    name: ClassVar[str]
    # True: the engine matches in batched rounds (faces.services.rounds), not as a photo is
    # stored; photo_candidates then proposes nothing.
    batched_matching: ClassVar[bool]
    # True: the engine keeps the vectors of indexed photos itself (a cloud collection); the
    # services record their ids (CollectionFace) and ask the engine to forget them.
    stores_vectors: ClassVar[bool]

    def faces_detect(self, image: Image.Image) -> list[DetectedFace]:
        """Every face in an upright RGB image (used to check a selfie)."""

    def photo_index(
        self,
        *,
        event_id: int,
        photo_id: int,
        image: Image.Image,
        source: Callable[[], Image.Image] | None = None,
    ) -> list[DetectedFace]:
        """Find the faces of one event photo (and keep their vectors, if the engine stores
        vectors). ``source`` returns the photo at full resolution, for engines that look closer
        at small faces."""

    def member_enroll(
        self, *, user_id: int, event_ids: Sequence[int], image: Image.Image
    ) -> Enrollment:
        """Remember a member's reference face so that it can be searched for."""

    def photo_candidates(
        self, *, event_id: int, faces: Sequence[FaceRecord], members: Sequence[MemberRecord]
    ) -> list[Candidate]:
        """Which of these members each face may be, under the engine's threshold."""

    def member_candidates(
        self, *, event_id: int, member: MemberRecord, faces: Sequence[FaceRecord]
    ) -> list[Candidate]:
        """Which of these stored faces may be this member, under the engine's threshold."""

    def member_forget(self, *, user_id: int, engine_ref: str, event_ids: Sequence[int]) -> None:
        """Delete every vector the engine holds for this member."""

    def event_forget(self, *, event_id: int) -> None:
        """Delete every vector the engine holds for this event."""

    def faces_forget(self, *, event_id: int, face_ids: Sequence[str]) -> None:
        """Delete these stored vectors of the event (ids the engine gave in photo_index).
        Ids already gone are no error."""
