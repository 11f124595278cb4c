"""Where a photo's processing time goes: the app's own steps, timed one by one, in-process.

It replays what ``photos.services.photo_process`` does to a photo, without the database:
``core.imaging.decode_upright`` -> ``resized`` (preview 1600, thumbnail 400) -> ``encode``
(JPEG preview, WebP thumbnail) -> ``LocalEngine.faces_detect``, split into the HOG detector and
the per-face descriptors (5-point landmarks + ResNet) by calling the same dlib models.

It also tries variants the app could adopt (a JPEG draft decode; other detection sizes and
upsampling), reporting time and how many of the composed faces each finds.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from core.imaging import decode_upright, encode, resized
from faces.engines.local import LocalEngine, _load_models

# The steps photo_process runs, in order; their sum is the app's path for one photo.
APP_STEPS = (
    "decode_upright",
    "resize_preview",
    "resize_thumb",
    "encode_preview",
    "encode_thumb",
    "faces_detect_total",
)


def _found(truth: dict, rects: list, scale: float) -> tuple[int, int]:
    """(member faces found, member faces): a face is found when the centre of a dlib rect,
    scaled by ``scale`` to the source photo, falls in it."""
    boxes = [
        (r.left() * scale, r.top() * scale, r.width() * scale, r.height() * scale) for r in rects
    ]
    found = total = 0
    for face in truth["faces"]:
        if not face["member"]:
            continue
        total += 1
        x, y, w, h = face["box"]
        pad = 0.25 * w
        for left, top, width, height in boxes:
            cx, cy = left + width / 2, top + height / 2
            if x - pad <= cx <= x + w + pad and y - pad <= cy <= y + h + pad:
                found += 1
                break
    return found, total


def _detect(pixels: np.ndarray, upsample: int) -> tuple[list, float, float, int]:
    """dlib detect + descriptors as LocalEngine does: (rects, detect s, descriptors s, faces)."""
    detector, predictor, encoder = _load_models()
    t0, c0 = time.perf_counter(), time.process_time()
    rects = list(detector(pixels, upsample))
    t1, c1 = time.perf_counter(), time.process_time()
    for rect in rects:
        shape = predictor(pixels, rect)
        encoder.compute_face_descriptor(pixels, shape)
    t2, c2 = time.perf_counter(), time.process_time()
    _cpu.update(detect=c1 - c0, descriptors=c2 - c1)
    return rects, t1 - t0, t2 - t1, len(rects)


# CPU seconds of the last _detect call: on a shared machine, CPU time is the steadier figure.
_cpu: dict[str, float] = {}


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def stages(photos: list[tuple[Path, dict]], *, max_side: int = 1600, upsample: int = 1) -> dict:
    """Per-photo seconds of each step of the app's path, averaged over ``photos``."""
    _load_models()
    rows: dict[str, list[float]] = {
        k: []
        for k in (
            "decode_upright",
            "resize_preview",
            "resize_thumb",
            "encode_preview",
            "encode_thumb",
            "detect_hog",
            "descriptors",
            "faces_detect_total",
        )
    }
    cpu_rows: dict[str, list[float]] = {k: [] for k in rows}
    per_face: list[float] = []
    found = total = 0
    engine = LocalEngine(threshold=0.5, max_side=max_side, upsample=upsample)
    for path, truth in photos:
        marks = [_clock()]
        with open(path, "rb") as fh:
            image = decode_upright(fh)
        marks.append(_clock())
        preview = resized(image, max_side)
        marks.append(_clock())
        thumb = resized(preview, 400)
        marks.append(_clock())
        encode(preview, "JPEG", quality=85)
        marks.append(_clock())
        encode(thumb, "WEBP", quality=80)
        marks.append(_clock())
        rects, detect_s, desc_s, n = _detect(np.asarray(preview), upsample)
        detect_cpu, desc_cpu = _cpu["detect"], _cpu["descriptors"]
        marks.append(_clock())
        engine.faces_detect(preview)  # the app's call, whole, for a cross-check
        marks.append(_clock())
        steps = [b[0] - a[0] for a, b in zip(marks, marks[1:], strict=False)]
        cpu_steps = [b[1] - a[1] for a, b in zip(marks, marks[1:], strict=False)]
        walls = (*steps[:5], detect_s, desc_s, steps[6])
        cpus = (*cpu_steps[:5], detect_cpu, desc_cpu, cpu_steps[6])
        for key, wall, cpu in zip(rows, walls, cpus, strict=True):
            rows[key].append(wall)
            cpu_rows[key].append(cpu)
        if n:
            per_face.append(desc_s / n)
        f, t = _found(truth, rects, image.width / preview.width)
        found, total = found + f, total + t
        del image, preview, thumb
    out = {k: statistics.mean(v) for k, v in rows.items()}
    out["cpu"] = {k: statistics.mean(v) for k, v in cpu_rows.items()}
    out["cpu"]["app_path_total"] = sum(out["cpu"][k] for k in APP_STEPS)
    out["per_face_descriptor"] = statistics.mean(per_face) if per_face else 0.0
    out["app_path_total"] = sum(out[k] for k in APP_STEPS)
    out["faces_found"] = found
    out["member_faces"] = total
    out["photos"] = len(photos)
    return out


def decode_variants(photos: list[tuple[Path, dict]], max_side: int = 1600) -> dict:
    """Full decode (the app: draft to 4000x4000, a no-op at 12 MP) against a JPEG draft that lets
    libjpeg scale by 1/2 in the DCT (still >= max_side), each followed by the resize to max_side."""
    full, draft, full_cpu, draft_cpu = [], [], [], []
    for path, _ in photos:
        a = _clock()
        with open(path, "rb") as fh:
            resized(decode_upright(fh), max_side)
        b = _clock()
        with Image.open(path) as image:
            image.draft("RGB", (max_side, max_side))  # libjpeg picks a scale >= this size
            upright = ImageOps.exif_transpose(image).convert("RGB")
        resized(upright, max_side)
        c = _clock()
        full.append(b[0] - a[0])
        draft.append(c[0] - b[0])
        full_cpu.append(b[1] - a[1])
        draft_cpu.append(c[1] - b[1])
    return {
        "full_decode_then_resize": statistics.mean(full),
        "draft_decode_then_resize": statistics.mean(draft),
        "cpu_full_decode_then_resize": statistics.mean(full_cpu),
        "cpu_draft_decode_then_resize": statistics.mean(draft_cpu),
    }


def detect_variants(photos: list[tuple[Path, dict]], configs: list[tuple[int, int]]) -> list[dict]:
    """For each (max_side, upsample): detector and descriptor seconds per photo, faces found."""
    _load_models()
    decoded = []
    for path, truth in photos:
        with open(path, "rb") as fh:
            decoded.append((decode_upright(fh), truth))
    out = []
    for max_side, upsample in configs:
        detect, desc, detect_cpu, desc_cpu, found, total = [], [], [], [], 0, 0
        for image, truth in decoded:
            work = resized(image, max_side)
            rects, d_s, e_s, _ = _detect(np.asarray(work), upsample)
            detect.append(d_s)
            desc.append(e_s)
            detect_cpu.append(_cpu["detect"])
            desc_cpu.append(_cpu["descriptors"])
            f, t = _found(truth, rects, image.width / work.width)
            found, total = found + f, total + t
        out.append(
            {
                "max_side": max_side,
                "upsample": upsample,
                "detect_s": statistics.mean(detect),
                "descriptors_s": statistics.mean(desc),
                "detect_cpu_s": statistics.mean(detect_cpu),
                "descriptors_cpu_s": statistics.mean(desc_cpu),
                "faces_found": found,
                "member_faces": total,
            }
        )
    return out
