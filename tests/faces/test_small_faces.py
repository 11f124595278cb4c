"""The local engine's second pass: faces of 60-99 px in 12 MP photos (issue 14).

The photos are composed here from ../shared/faces: each source face is cut out, scaled so that
dlib's box around it has the wanted height in a 4000x3000 photo, and pasted on a smooth
background. At 1600 px (the first pass) such a face is 24-40 px.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from core.imaging import decode_upright, resized
from faces.engines.base import DetectedFace, FaceRecord, MemberRecord
from faces.engines.local import LocalEngine, _load_models, _small_faces_find
from tests.conftest import SHARED_FACES

pytestmark = pytest.mark.faces

WIDTH, HEIGHT = 4000, 3000


@pytest.fixture(scope="module")
def engine() -> LocalEngine:
    return LocalEngine(threshold=settings.FACE_MATCH_THRESHOLD)


def _upright(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def _face_box(image: Image.Image) -> tuple[int, int, int]:
    """(left, top, size) of the one face dlib finds in a source photo."""
    rects = list(_load_models()[0](np.asarray(image), 1))
    assert len(rects) >= 1
    rect = max(rects, key=lambda r: r.height())
    return rect.left(), rect.top(), rect.height()


def _cutout(image: Image.Image, box: tuple[int, int, int], face_px: float, angle: float):
    """Head and shoulders around ``box``, scaled to a face of ``face_px``, turned by ``angle``;
    with its soft oval mask and where the face's centre is in the cut-out."""
    left, top, size = box
    crop_box = (
        max(0, left - size // 2),
        max(0, top - size // 2),
        min(image.width, left + 3 * size // 2),
        min(image.height, top + 3 * size // 2),
    )
    scale = face_px / size
    crop = image.crop(crop_box)
    crop = crop.resize(
        (round(crop.width * scale), round(crop.height * scale)), Image.Resampling.LANCZOS
    )
    centre = ((left + size / 2 - crop_box[0]) * scale, (top + size / 2 - crop_box[1]) * scale)
    mask = Image.new("L", crop.size, 0)
    ImageDraw.Draw(mask).ellipse((2, 2, crop.width - 2, crop.height - 2), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(2))
    if angle:
        w, h = crop.size
        crop = crop.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        mask = mask.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        rad = math.radians(angle)
        dx, dy = centre[0] - w / 2, centre[1] - h / 2
        centre = (
            crop.width / 2 + dx * math.cos(rad) + dy * math.sin(rad),
            crop.height / 2 - dx * math.sin(rad) + dy * math.cos(rad),
        )
    return crop, mask, centre


def _compose(placements: list[tuple[Image.Image, tuple[int, int, int], float, float, int, int]]):
    """A 4000x3000 photo: a smooth blue-grey gradient with a little noise, and the given faces
    (source image, its face box, face px, angle, centre x, centre y). Returns the photo."""
    rng = np.random.default_rng(14)
    ramp = np.linspace(60, 150, WIDTH, dtype=np.float32)
    base = np.stack([ramp * 0.8, ramp * 0.9, ramp + 40], axis=-1)[None, :, :]
    pixels = np.broadcast_to(base, (HEIGHT, WIDTH, 3)) + rng.normal(0, 4, (HEIGHT, WIDTH, 3))
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    for image, box, face_px, angle, cx, cy in placements:
        crop, mask, centre = _cutout(image, box, face_px, angle)
        photo.paste(crop, (round(cx - centre[0]), round(cy - centre[1])), mask)
    return photo


def _jpeg(photo: Image.Image, orientation: int = 1) -> bytes:
    """The photo as a camera stores it: turned, with the EXIF tag that turns it upright."""
    buffer = io.BytesIO()
    if orientation == 1:
        photo.save(buffer, "JPEG", quality=90)
    else:
        stored = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
        exif = Image.Exif()
        exif[0x0112] = orientation
        photo.transpose(stored).save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def _index(engine: LocalEngine, data: bytes) -> list[DetectedFace]:
    """What photo_process does: decode near 1600 px, the preview, then the engine with the full
    photo as its source."""
    image = decode_upright(io.BytesIO(data), max_side=1600)
    preview = resized(image, 1600)
    del image
    return engine.photo_index(
        event_id=1,
        photo_id=1,
        image=preview,
        source=lambda: decode_upright(io.BytesIO(data)),
    )


def _faces_at(found: list[DetectedFace], x: float, y: float) -> list[DetectedFace]:
    """The detected faces whose box holds the point (x, y) of the 4000x3000 photo."""
    return [
        f
        for f in found
        if f.left * WIDTH <= x <= (f.left + f.width) * WIDTH
        and f.top * HEIGHT <= y <= (f.top + f.height) * HEIGHT
    ]


@pytest.fixture(scope="module")
def shared_faces() -> Path:
    if not (SHARED_FACES / "truth.json").is_file():
        pytest.skip(f"the real face photos are absent: {SHARED_FACES} (see ../shared/faces)")
    return SHARED_FACES


@pytest.fixture(scope="module")
def people(shared_faces: Path) -> dict[str, tuple[Image.Image, tuple[int, int, int]]]:
    """Each person's second photo (their first is their selfie), with its face box."""
    found = {}
    for folder in sorted((shared_faces / "people").iterdir()):
        image = _upright(sorted(folder.glob("*.jpg"))[1])
        found[folder.name] = (image, _face_box(image))
    return found


@pytest.fixture(scope="module")
def selfies(engine: LocalEngine, shared_faces: Path) -> list[MemberRecord]:
    members = []
    for i, folder in enumerate(sorted((shared_faces / "people").iterdir()), start=1):
        with open(sorted(folder.glob("*.jpg"))[0], "rb") as fh:
            (face,) = engine.faces_detect(decode_upright(fh))
        members.append(MemberRecord(user_id=i, descriptor=face.descriptor, engine_ref=""))
    return members


def test_faces_of_60_to_99_px_in_a_12mp_photo_are_found_once_each(engine, people):
    sizes = (60, 66, 72, 80, 88, 96)
    names = sorted(people)
    placements = []
    for i, face_px in enumerate(sizes):
        image, box = people[names[i % len(names)]]
        placements.append((image, box, face_px, 0.0, 500 + 600 * i, 900 + 900 * (i % 2)))
    found = _index(engine, _jpeg(_compose(placements)))

    for *_, cx, cy in placements:
        assert len(_faces_at(found, cx, cy)) == 1, (cx, cy, found)
    assert len(found) == len(placements)
    # Every small face got its descriptor (from the full-resolution photo).
    assert all(f.descriptor and len(f.descriptor) == 128 * 4 for f in found)


def test_the_first_pass_alone_misses_faces_the_second_finds(engine, people):
    """What the second pass is for: at 1600 px, HOG does not reliably reach a 60 px face."""
    placements = [
        (image, box, 60.0, 0.0, 500 + 700 * i, 1500)
        for i, (image, box) in enumerate(people.values())
    ]
    preview = resized(_compose(placements), 1600)
    assert len(engine.faces_detect(preview, small_faces=False)) < len(placements)
    assert len(engine.faces_detect(preview, small_faces=True)) == len(placements)


def test_a_small_face_in_an_exif_rotated_photo_is_found_upright(engine, people):
    image, box = people["kit_harington"]
    photo = _compose([(image, box, 70.0, 0.0, 1000, 700), (image, box, 200.0, 0.0, 3000, 2000)])
    found = _index(engine, _jpeg(photo, orientation=6))

    assert len(_faces_at(found, 1000, 700)) == 1
    assert len(_faces_at(found, 3000, 2000)) == 1
    assert len(found) == 2


def test_a_tilted_small_face_is_found(engine, people):
    image, box = people["rose_leslie"]
    photo = _compose([(image, box, 75.0, 12.0, 1800, 1200), (image, box, 90.0, -12.0, 3000, 900)])
    found = _index(engine, _jpeg(photo, orientation=8))

    assert len(_faces_at(found, 1800, 1200)) == 1
    assert len(_faces_at(found, 3000, 900)) == 1


def test_a_face_the_first_pass_found_is_not_found_again_where_regions_overlap(engine, people):
    """Two small faces side by side: their regions overlap, and each holds both faces."""
    image, box = people["biden"]
    other, other_box = people["alex_lacamoire"]
    photo = _compose(
        [(image, box, 64.0, 0.0, 2000, 1500), (other, other_box, 64.0, 0.0, 2080, 1500)]
    )
    preview = resized(photo, 1600)
    pixels = np.asarray(preview)
    grey = preview.convert("L")
    detector = _load_models()[0]

    both = _small_faces_find(detector, pixels, grey, [])
    assert len(both) == 2
    # Known already (as if the first pass had found them): nothing new.
    assert _small_faces_find(detector, pixels, grey, both) == []
    assert len(_small_faces_find(detector, pixels, grey, both[:1])) == 1


def test_small_strangers_of_bald_guys_stay_unmatched(engine, faces_dir, selfies):
    """The 24 strangers, pasted small into a 12 MP photo, match none of the members."""
    group = _upright(faces_dir / "groups" / "bald_guys.jpg")
    rects = list(_load_models()[0](np.asarray(group), 1))
    assert len(rects) == 24
    placements = []
    for i, rect in enumerate(rects[:12]):
        box = (rect.left(), rect.top(), rect.height())
        placements.append((group, box, 60.0 + 3 * i, 0.0, 300 + 310 * i, 700 + 1400 * (i % 2)))
    found = _index(engine, _jpeg(_compose(placements)))
    assert len(found) >= 10  # found, and small: the second pass at work

    records = [
        FaceRecord(id=i, photo_id=1, descriptor=f.descriptor, engine_face_id="")
        for i, f in enumerate(found)
    ]
    assert engine.photo_candidates(event_id=1, faces=records, members=selfies) == []


def test_the_strangers_of_bald_guys_with_the_second_pass_match_nobody(engine, faces_dir, selfies):
    with open(faces_dir / "groups" / "bald_guys.jpg", "rb") as fh:
        data = fh.read()
    found = _index(engine, data)
    assert len(found) == 24
    records = [
        FaceRecord(id=i, photo_id=1, descriptor=f.descriptor, engine_face_id="")
        for i, f in enumerate(found)
    ]
    assert engine.photo_candidates(event_id=1, faces=records, members=selfies) == []
