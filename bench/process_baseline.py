"""The baseline: the face_recognition library's own documented path, in a pool.

Run by bench/process.py as a subprocess (so that its memory and its ``quit()``-on-import hazard
stay out of the bench): ``python bench/process_baseline.py JOB.json RESULT.json``.

JOB.json: {"photos": [paths], "selfies": {name: path}, "workers": 2, "tolerance": 0.6,
"max_side": null or 1600}

Per photo, exactly the README's recipe: ``load_image_file`` -> ``face_locations(img,
number_of_times_to_upsample=1, model="hog")`` -> ``face_encodings(img, locations)``; then, as in
the library's examples, each face is given the nearest known person if ``compare_faces`` (at the
default tolerance 0.6) says it matches.

With ``max_side``, the loaded image is first scaled down to that long side with Pillow's
bilinear filter (what FindMe's local engine detects on), the library's own advice for speed;
boxes are scaled back to the photo's pixels. Selfies are encoded as they are in both cases.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time

import face_recognition  # bench/process.py checks first, in a subprocess, that this import works
import numpy as np
from PIL import Image

_known: np.ndarray | None = None
_names: list[str] = []
_tolerance = 0.6
_max_side: int | None = None


def _scaled(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The image at ``_max_side`` px on its long side (never enlarged), and the factor used."""
    height, width = image.shape[:2]
    if not _max_side or max(height, width) <= _max_side:
        return image, 1.0
    scale = _max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)), scale


def _photo(path: str) -> dict:
    started = time.perf_counter()
    image, scale = _scaled(face_recognition.load_image_file(path))
    loaded = time.perf_counter()
    locations = face_recognition.face_locations(image, number_of_times_to_upsample=1, model="hog")
    located = time.perf_counter()
    encodings = face_recognition.face_encodings(image, locations)
    encoded = time.perf_counter()
    faces = []
    for (top, right, bottom, left), encoding in zip(locations, encodings, strict=True):
        matches = face_recognition.compare_faces(_known, encoding, tolerance=_tolerance)
        distances = face_recognition.face_distance(_known, encoding)
        best = int(np.argmin(distances))
        faces.append(
            {
                "box": [
                    left / scale,
                    top / scale,
                    (right - left) / scale,
                    (bottom - top) / scale,
                ],
                "identity": _names[best] if matches[best] else None,
                "distance": round(float(distances[best]), 4),
            }
        )
    return {
        "file": os.path.basename(path),
        "faces": faces,
        "pid": os.getpid(),
        "seconds": {
            "load": loaded - started,
            "locate": located - loaded,
            "encode": encoded - located,
        },
        "done_at": time.time(),
    }


def main(job_path: str, result_path: str) -> None:
    global _known, _names, _tolerance, _max_side
    with open(job_path) as fh:
        job = json.load(fh)
    _tolerance = float(job.get("tolerance", 0.6))
    _max_side = job.get("max_side")
    names, known = [], []
    selfies_started = time.time()
    for name, path in sorted(job["selfies"].items()):
        encodings = face_recognition.face_encodings(face_recognition.load_image_file(path))
        if len(encodings) != 1:
            raise SystemExit(f"selfie {path}: {len(encodings)} faces")
        names.append(name)
        known.append(encodings[0])
    _known, _names = np.array(known), names
    # FindMe's members are indexed before its clock starts: the bench subtracts this.
    selfies_s = time.time() - selfies_started

    # Forked workers inherit the loaded models and the known encodings.
    context = multiprocessing.get_context("fork")
    started = time.time()
    results = []
    with context.Pool(int(job.get("workers", 2))) as pool:
        for result in pool.imap_unordered(_photo, job["photos"], chunksize=1):
            results.append(result)
            print(f"baseline {len(results)}/{len(job['photos'])}", flush=True)
    finished = max((r["done_at"] for r in results), default=time.time())
    with open(result_path, "w") as fh:
        json.dump(
            {"started": started, "finished": finished, "selfies_s": selfies_s, "photos": results},
            fh,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
