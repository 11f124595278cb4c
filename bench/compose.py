"""Event-like test photos for the processing bench, composed from ../shared/faces.

Each photo is 4000x3000: a random background (a smooth colour field, a few soft shapes, sensor
noise) with 1-6 faces pasted at varied sizes and positions, some tilted. Faces come from
``people/<name>/`` (every photo but the first, which is that person's selfie) and, as strangers
who must match nobody, from ``groups/bald_guys.jpg`` (24 people none of whom is in ``people/``).

Sizes: the "face height" is the height of dlib's HOG box around the face (brows to chin, about
the face's width). It is drawn log-uniformly from 60-400 px, so that as many small faces as
large ones are in the set, down to the back rows of a crowd (60 px in a 12 MP photo is 24 px at
the 1600 px the engine's first pass sees); a source face is never enlarged more than 2.2x (the
smallest sources are 91-187 px), so a few faces end up smaller than drawn.

Orientation: a share of the photos is stored sideways or upside down with the EXIF orientation
tag that turns it upright, as phones and cameras held on end store them. The truth is always in
the upright photo's pixels (4000x3000).

Every photo is a pure function of (seed, index): photo i is the same in a set of 100 or 500.
The set is cached in ``bench/out/photos/seed<seed>/`` (p0000.jpg + p0000.json, the truth).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

ROOT = Path(__file__).resolve().parent.parent
FACES = (ROOT.parent / "shared" / "faces").resolve()
OUT = ROOT / "bench" / "out"
WIDTH, HEIGHT = 4000, 3000
FACE_MIN, FACE_MAX = 60, 400
MAX_ENLARGE = 2.2
TILT_SHARE = 0.35  # share of faces rotated by 3-20 degrees
STRANGER_SHARE = 0.15  # chance that a face slot holds a stranger
EXIF_SHARE = 0.08  # share of photos stored rotated, with the EXIF tag that turns them upright
# EXIF orientation -> the transpose that stores an upright image so that the tag undoes it.
EXIF_STORED = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}
JPEG_QUALITY = 90
VERSION = 2  # bump when the composition changes, so that stale caches are not reused
SOURCES_VERSION = 1  # the same, for the located source faces (bench/out/sources.json)


@dataclass(frozen=True)
class Source:
    """One face in a source file: who, where (dlib box in the upright source)."""

    identity: str  # a people/ name, or "stranger-NN"
    path: str
    left: int
    top: int
    size: int


def selfies() -> dict[str, Path]:
    """Each person's FIRST photo (sorted by name) is their selfie."""
    people = FACES / "people"
    return {d.name: sorted(d.glob("*.jpg"))[0] for d in sorted(people.iterdir()) if d.is_dir()}


def _open_upright(path: Path | str) -> Image.Image:
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def _detect_boxes(image: Image.Image) -> list[tuple[int, int, int]]:
    """dlib's HOG boxes (left, top, size), via the app's model loader."""
    from faces.engines.local import _load_models

    detector = _load_models()[0]
    return [(max(r.left(), 0), max(r.top(), 0), r.height()) for r in detector(np.asarray(image), 1)]


def sources() -> tuple[list[Source], list[Source]]:
    """(member faces, stranger faces), located once and cached in bench/out/sources.json."""
    cache = OUT / "sources.json"
    if cache.exists():
        data = json.loads(cache.read_text())
        if data.get("version") == SOURCES_VERSION and data.get("faces_dir") == str(FACES):
            return [Source(**s) for s in data["members"]], [Source(**s) for s in data["strangers"]]
    members: list[Source] = []
    for name, selfie in selfies().items():
        for path in sorted((FACES / "people" / name).glob("*.jpg")):
            if path == selfie:
                continue
            boxes = _detect_boxes(_open_upright(path))
            if len(boxes) != 1:
                raise RuntimeError(f"{path}: expected one face, dlib found {len(boxes)}")
            left, top, size = boxes[0]
            members.append(Source(name, str(path), left, top, size))
    bald = FACES / "groups" / "bald_guys.jpg"
    strangers = [
        Source(f"stranger-{i:02d}", str(bald), left, top, size)
        for i, (left, top, size) in enumerate(sorted(_detect_boxes(_open_upright(bald))))
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    cache.write_text(
        json.dumps(
            {
                "version": SOURCES_VERSION,
                "faces_dir": str(FACES),
                "members": [asdict(s) for s in members],
                "strangers": [asdict(s) for s in strangers],
            },
            indent=1,
        )
    )
    return members, strangers


# --- composition --------------------------------------------------------------------------------
def _background(rng: np.random.Generator) -> Image.Image:
    """A smooth random colour field, a few blobs and some sensor noise (drawn at a quarter of
    the size and enlarged, which is 10x faster than blurring at full size)."""
    w, h = WIDTH // 4, HEIGHT // 4
    coarse = rng.integers(30, 225, size=(3 + rng.integers(0, 4), 4 + rng.integers(0, 4), 3))
    image = Image.fromarray(coarse.astype(np.uint8), "RGB").resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 12))):
        x, y = int(rng.integers(-100, w)), int(rng.integers(-100, h))
        bw, bh = int(rng.integers(40, 300)), int(rng.integers(40, 300))
        colour = tuple(int(c) for c in rng.integers(20, 235, size=3))
        if rng.random() < 0.5:
            draw.ellipse((x, y, x + bw, y + bh), fill=colour)
        else:
            draw.rectangle((x, y, x + bw, y + bh), fill=colour)
    image = image.resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)
    noise = rng.normal(0, 7, size=(HEIGHT // 2, WIDTH // 2, 3)).astype(np.int16)
    noise = noise.repeat(2, axis=0).repeat(2, axis=1)
    pixels = np.asarray(image, dtype=np.int16) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _cutout(
    source: Source, face_px: float, angle: float, cache: dict[str, Image.Image]
) -> tuple[Image.Image, Image.Image, tuple[float, float]]:
    """The head and shoulders around a source face, scaled so that the face is ``face_px`` tall,
    rotated by ``angle``; with its soft oval mask and the face centre in the cutout."""
    image = cache.get(source.path)
    if image is None:
        image = cache[source.path] = _open_upright(source.path)
    s = source.size
    box = (
        max(0, source.left - int(0.55 * s)),
        max(0, source.top - int(0.75 * s)),
        min(image.width, source.left + int(1.55 * s)),
        min(image.height, source.top + int(1.6 * s)),
    )
    crop = image.crop(box)
    scale = face_px / s
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    crop = crop.resize(size, Image.Resampling.LANCZOS)
    centre = ((source.left + s / 2 - box[0]) * scale, (source.top + s / 2 - box[1]) * scale)
    mask = Image.new("L", size, 0)
    inset = max(2, int(0.04 * min(size)))
    ImageDraw.Draw(mask).ellipse((inset, inset, size[0] - inset, size[1] - inset), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(max(1, inset // 2)))
    if angle:
        w, h = size
        crop = crop.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        mask = mask.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        # PIL turns counter-clockwise about the centre; expand grows the canvas symmetrically.
        rad = math.radians(angle)
        dx, dy = centre[0] - w / 2, centre[1] - h / 2
        centre = (
            crop.width / 2 + dx * math.cos(rad) + dy * math.sin(rad),
            crop.height / 2 - dx * math.sin(rad) + dy * math.cos(rad),
        )
    return crop, mask, centre


def _overlaps(a: tuple[int, int, int, int], placed: list[tuple[int, int, int, int]]) -> bool:
    return any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3] for b in placed)


def compose(index: int, seed: int, members: list[Source], strangers: list[Source], cache: dict):
    """Photo ``index`` of the set: (image, truth)."""
    rnd = random.Random(seed * 1_000_003 + index)
    rng = np.random.default_rng(seed * 1_000_003 + index)
    image = _background(rng)
    people = sorted({m.identity for m in members})
    wanted = rnd.randint(1, 6)
    used: set[str] = set()
    faces = []
    placed: list[tuple[int, int, int, int]] = []
    for _ in range(wanted):
        free = [p for p in people if p not in used]
        if free and rnd.random() >= STRANGER_SHARE:
            person = rnd.choice(free)
            source = rnd.choice([m for m in members if m.identity == person])
        else:
            source = rnd.choice([s for s in strangers if s.identity not in used])
        drawn = math.exp(rnd.uniform(math.log(FACE_MIN), math.log(FACE_MAX)))
        face_px = min(drawn, source.size * MAX_ENLARGE)
        angle = 0.0
        if rnd.random() < TILT_SHARE:
            angle = rnd.choice((-1, 1)) * rnd.uniform(3, 20)
        crop, mask, centre = _cutout(source, face_px, angle, cache)
        for _attempt in range(200):
            x = rnd.randint(0, WIDTH - crop.width)
            y = rnd.randint(0, HEIGHT - crop.height)
            rect = (x, y, x + crop.width, y + crop.height)
            if not _overlaps(rect, placed):
                break
        else:
            continue  # no room left: fewer faces in this photo
        placed.append(rect)
        image.paste(crop, (x, y), mask)
        used.add(source.identity)
        cx, cy = x + centre[0], y + centre[1]
        faces.append(
            {
                "identity": source.identity,
                "member": not source.identity.startswith("stranger-"),
                "source": Path(source.path).name,
                "face_px": round(face_px, 1),
                "angle": round(angle, 1),
                # The face's box, axis-aligned, in pixels of the 4000x3000 photo.
                "box": [
                    round(cx - face_px / 2),
                    round(cy - face_px / 2),
                    round(face_px),
                    round(face_px),
                ],
            }
        )
    orientation = 1
    if rnd.random() < EXIF_SHARE:
        orientation = rnd.choice(sorted(EXIF_STORED))
    truth = {
        "index": index,
        "width": WIDTH,
        "height": HEIGHT,
        "exif_orientation": orientation,
        "faces": faces,
        "identities": sorted({f["identity"] for f in faces if f["member"]}),
    }
    return image, truth


def photo_save(image: Image.Image, path: Path, orientation: int = 1) -> None:
    """Save an upright picture as a JPEG that shows upright once its EXIF orientation is
    applied: stored turned, with the tag (1 = stored as it is, no tag)."""
    if orientation == 1:
        image.save(path, "JPEG", quality=JPEG_QUALITY)
        return
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.transpose(EXIF_STORED[orientation]).save(
        path, "JPEG", quality=JPEG_QUALITY, exif=exif.tobytes()
    )


def photo_set(count: int, seed: int = 7, *, log=print) -> list[tuple[Path, dict]]:
    """The first ``count`` photos of the set for ``seed``: (path, truth), made when missing."""
    folder = OUT / "photos" / f"seed{seed}-v{VERSION}"
    folder.mkdir(parents=True, exist_ok=True)
    members, strangers = sources()
    cache: dict[str, Image.Image] = {}
    result = []
    made = 0
    for index in range(count):
        path = folder / f"p{index:04d}.jpg"
        meta = folder / f"p{index:04d}.json"
        if not (path.exists() and meta.exists()):
            image, truth = compose(index, seed, members, strangers, cache)
            tmp = path.with_suffix(".tmp")
            photo_save(image, tmp, truth["exif_orientation"])
            tmp.replace(path)
            meta.write_text(json.dumps(truth, indent=1))
            made += 1
            if made % 20 == 0:
                log(f"  composed {made} photos ...")
        result.append((path, json.loads(meta.read_text())))
    if made:
        log(f"  composed {made} new photos in {folder.relative_to(ROOT)}")
    return result


def set_summary(photos: list[tuple[Path, dict]]) -> dict:
    faces = [f for _, t in photos for f in t["faces"]]
    sizes = [f["face_px"] for f in faces]
    return {
        "photos": len(photos),
        "faces": len(faces),
        "member_faces": sum(f["member"] for f in faces),
        "stranger_faces": sum(not f["member"] for f in faces),
        "tilted": sum(1 for f in faces if f["angle"]),
        "exif_rotated_photos": sum(1 for _, t in photos if t.get("exif_orientation", 1) != 1),
        "face_px_min": round(min(sizes)) if sizes else 0,
        "face_px_median": round(float(np.median(sizes))) if sizes else 0,
        "face_px_max": round(max(sizes)) if sizes else 0,
        "mean_bytes": round(sum(p.stat().st_size for p, _ in photos) / max(1, len(photos))),
    }


if __name__ == "__main__":
    import argparse
    import sys

    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(set_summary(photo_set(args.photos, args.seed)), indent=1))
