"""The small interface every face engine implements.

The services own the rules (who may match whom, one face per member, rejected matches stay
rejected); an engine only finds faces and proposes candidates with a distance, lower is nearer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image


class EngineError(Exception):
    """The engine could not process this input. The message is safe to show to a person."""


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


@dataclass(frozen=True)
class Candidate:
    face_id: int
    user_id: int
    distance: float


@dataclass(frozen=True)
class Enrollment:
    descriptor: bytes | None
    engine_ref: str


class FaceEngine(Protocol):
    name: str

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
        """Find and remember the faces of one event photo."""

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

    def photos_forget(self, *, event_id: int, photo_ids: Sequence[int]) -> int:
        """Delete every vector the engine holds for these deleted photos of the event; return
        how many it deleted."""
