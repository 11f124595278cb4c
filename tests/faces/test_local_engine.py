"""The offline engine on real photos (../shared/faces)."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from django.conf import settings
from PIL import Image

from core.imaging import decode_upright
from faces.engines.local import LocalEngine

pytestmark = pytest.mark.faces


@pytest.fixture(scope="module")
def engine() -> LocalEngine:
    return LocalEngine(threshold=settings.FACE_MATCH_THRESHOLD)


def faces_of(engine: LocalEngine, path) -> list:
    with open(path, "rb") as fh:
        return engine.faces_detect(decode_upright(fh))


def vector(face) -> np.ndarray:
    return np.frombuffer(face.descriptor, dtype=np.float32)


def test_every_people_photo_has_exactly_one_face(engine, faces_dir):
    photos = sorted((faces_dir / "people").glob("*/*.jpg"))
    assert len(photos) >= 10
    for path in photos:
        found = faces_of(engine, path)
        assert len(found) == 1, path.name
        assert len(found[0].descriptor) == 128 * 4


def test_photos_of_the_same_person_match_and_different_people_do_not(engine, faces_dir):
    people = {
        folder.name: [vector(faces_of(engine, p)[0]) for p in sorted(folder.glob("*.jpg"))]
        for folder in sorted((faces_dir / "people").iterdir())
    }
    for name, vectors in people.items():
        for a, b in itertools.combinations(vectors, 2):
            assert np.linalg.norm(a - b) <= engine.threshold, name
    for (n1, v1), (n2, v2) in itertools.combinations(people.items(), 2):
        for a, b in itertools.product(v1, v2):
            assert np.linalg.norm(a - b) > engine.threshold, (n1, n2)


def test_none_of_the_24_strangers_matches_anyone(engine, faces_dir):
    strangers = faces_of(engine, faces_dir / "groups" / "bald_guys.jpg")
    assert len(strangers) == 24
    people = [
        vector(faces_of(engine, p)[0]) for p in sorted((faces_dir / "people").glob("*/*.jpg"))
    ]
    for face in strangers:
        nearest = min(float(np.linalg.norm(vector(face) - p)) for p in people)
        assert nearest > engine.threshold


def test_dogs_have_no_face(engine, faces_dir):
    assert faces_of(engine, faces_dir / "no_faces" / "dogs.jpg") == []


def test_exif_rotated_photo_still_yields_its_face(engine, faces_dir):
    upright = Image.open(faces_dir / "people" / "obama" / "obama_1.jpg").convert("RGB")
    # Orientation 6 means "rotate 90 degrees clockwise to display": store the pixels turned the
    # other way, as a phone held sideways does.
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    sideways.save(buffer, format="JPEG", exif=exif.tobytes(), quality=92)
    found = engine.faces_detect(decode_upright(buffer))
    assert len(found) == 1
    reference = vector(faces_of(engine, faces_dir / "people" / "obama" / "obama_1.jpg")[0])
    assert np.linalg.norm(vector(found[0]) - reference) < 0.2
    # Without the orientation the raw sideways pixels hide the face: the EXIF step matters.
    raw = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    assert engine.faces_detect(raw) == []


def test_boxes_are_fractions_inside_the_image(engine, faces_dir):
    for face in faces_of(engine, faces_dir / "groups" / "two_people.jpg"):
        assert 0 <= face.left < 1 and 0 <= face.top < 1
        assert 0 < face.width <= 1 and 0 < face.height <= 1


def test_a_small_face_takes_its_descriptor_from_the_full_resolution_source(engine, faces_dir):
    """A face under SMALL_FACE_PX at the detection size is described from the source's pixels."""
    from faces.engines.local import SMALL_FACE_PX

    with open(faces_dir / "people" / "obama" / "obama_2.jpg", "rb") as fh:
        portrait = decode_upright(fh)
    reference = vector(faces_of(engine, faces_dir / "people" / "obama" / "obama_1.jpg")[0])
    # The portrait pasted small into a 4000x3000 scene: about 45 px tall once scaled to 1600.
    scene = Image.new("RGB", (4000, 3000), (90, 110, 100))
    small = portrait.resize((portrait.width * 300 // portrait.height, 300))
    scene.paste(small, (1800, 1300))
    preview = scene.resize((1600, 1200))
    asked = []

    def source() -> Image.Image:
        asked.append(True)
        return scene

    plain = engine.faces_detect(preview)
    detailed = engine.faces_detect(preview, source=source)
    assert len(plain) == len(detailed) == 1
    assert detailed[0].height * 1200 < SMALL_FACE_PX
    assert asked == [True]  # the full image was decoded once, because the face is small
    assert (detailed[0].left, detailed[0].top) == (plain[0].left, plain[0].top)
    # The closer look brings the descriptor nearer to the person's selfie.
    near = float(np.linalg.norm(vector(detailed[0]) - reference))
    far = float(np.linalg.norm(vector(plain[0]) - reference))
    assert near < far
    assert near < engine.threshold


def test_a_large_face_never_asks_for_the_source(engine, faces_dir):
    with open(faces_dir / "people" / "obama" / "obama_2.jpg", "rb") as fh:
        portrait = decode_upright(fh)

    def source() -> Image.Image:
        raise AssertionError("decoded for nothing")

    assert len(engine.faces_detect(portrait, source=source)) == 1


def test_threads_of_one_process_can_check_faces_at_once(faces_dir):
    """A threaded web process checks several selfies at once. dlib aborted the whole process
    (SIGABRT) when two threads ran it together; run in a child so that a regression fails this
    test instead of killing the test run."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = f"""
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
import django
django.setup()
from core.imaging import decode_upright
from faces.engines.local import LocalEngine
engine = LocalEngine(threshold=0.5)
paths = sorted(Path({str(faces_dir)!r}, "people").glob("*/*.jpg"))[:8]
images = [decode_upright(open(p, "rb"), max_side=1024) for p in paths]
alone = [len(engine.faces_detect(image)) for image in images]
with ThreadPoolExecutor(max_workers=6) as pool:
    together = list(pool.map(lambda image: len(engine.faces_detect(image)), images * 3))
assert together == alone * 3, (alone, together)
print("faces", alone)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "faces [1, 1, 1, 1, 1, 1, 1, 1]"
