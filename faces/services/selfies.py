"""The selfie as a searching engine sees it: the member's face alone, and what to do when the
engine cannot use it.

Rekognition's SearchFacesByImage searches the largest face of the image it is given. dlib checked
the selfie at upload and saw one face, but dlib sees frontal faces only: a poster or a person
behind, larger than the member, may be the face searched. So the image sent is the face dlib
found, with a margin of half its size on every side, and the engine checks that the face it
searched lies on it (MemberRecord.selfie_face).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from PIL import Image

from accounts.selectors import selfie_face_boxes, selfie_image
from accounts.services import selfie_face_box_store, selfie_retake

from ..engines.base import MemberRecord
from .engines import engine_get

logger = logging.getLogger(__name__)

# Around the face, on every side, as a share of the face's width or height.
SELFIE_MARGIN = 0.5

Box = tuple[float, float, float, float]


def selfie_crop_boxes(face: Box, margin: float = SELFIE_MARGIN) -> tuple[Box, Box]:
    """The crop (fractions of the selfie) and the face within the crop (fractions of it)."""
    left, top, width, height = face
    crop_left, crop_top = max(0.0, left - margin * width), max(0.0, top - margin * height)
    crop_right = min(1.0, left + width + margin * width)
    crop_bottom = min(1.0, top + height + margin * height)
    crop_w, crop_h = crop_right - crop_left, crop_bottom - crop_top
    inner = (
        (left - crop_left) / crop_w,
        (top - crop_top) / crop_h,
        width / crop_w,
        height / crop_h,
    )
    return (crop_left, crop_top, crop_w, crop_h), inner


def image_crop(image: Image.Image, box: Box) -> Image.Image:
    left, top, width, height = box
    return image.crop(
        (
            round(left * image.width),
            round(top * image.height),
            round((left + width) * image.width),
            round((top + height) * image.height),
        )
    )


def selfie_face_box(*, user_id: int) -> Box | None:
    """The selfie's face box: kept since upload, or found now by dlib (selfies stored before
    boxes were kept) and kept from then on. None when dlib does not find exactly one face."""
    stored = selfie_face_boxes(user_ids=[user_id]).get(user_id)
    if stored:
        return tuple(stored)  # type: ignore[return-value]
    faces = engine_get("local").faces_detect(selfie_image(user_id=user_id))
    if len(faces) != 1:
        return None
    box = (faces[0].left, faces[0].top, faces[0].width, faces[0].height)
    selfie_face_box_store(user_id=user_id, face_box=box)
    return box


def _crop_loader(user_id: int, crop: Box):  # noqa: ANN202 - a loader, as MemberRecord.selfie
    return lambda: image_crop(selfie_image(user_id=user_id), crop)


def members_for_search(members: Sequence[MemberRecord]) -> list[MemberRecord]:
    """The members, each with a selfie loader that gives their face alone (with its margin) and
    where that face lies in it. Nothing is loaded for an engine that does not search with
    images; boxes are read in one query."""
    if not engine_get().batched_matching:
        return list(members)
    boxes = selfie_face_boxes(user_ids=[m.user_id for m in members])
    found = []
    for member in members:
        box = boxes.get(member.user_id)
        face = tuple(box) if box else selfie_face_box(user_id=member.user_id)
        if face is None:
            found.append(member)  # the whole selfie; the engine checks nothing it cannot
            continue
        crop, inner = selfie_crop_boxes(face)  # type: ignore[arg-type]
        found.append(
            dataclasses.replace(
                member, selfie=_crop_loader(member.user_id, crop), selfie_face=inner
            )
        )
    return found


def selfie_retake_request(*, user_id: int, reason: str) -> None:
    """The engine cannot search with the member's selfie: they are asked for a new photo (on
    their selfie page; staff see it in the admin) and searched for no more until they give one."""
    logger.warning("the selfie of user %s needs a new photo: %s", user_id, reason)
    selfie_retake(user_id=user_id, reason=reason)
