"""Calibration of many references per member, and the cost of clustering.

    .venv/bin/python bench/references.py                 # 100 composed photos (seed 7) + ../shared/faces
    .venv/bin/python bench/references.py --photos 200 --seed 11 --cluster-faces 10000

1. Descriptors: every face dlib finds (FindMe's engine: HOG at 1600 px, upsample 1, small faces
   described from the full-size photo) in a composed set (bench/compose.py) and in
   ../shared/faces, each labelled with who it is from the set's truth (box overlap). Cached in
   bench/out/references-<set>.npz.
2. Distances: the member's selfie to their own faces, and to the nearest stranger.
3. Recall and precision of the (photo, member) pairs with the selfie alone and with the
   expansion FindMe runs (faces.services.settle.event_plan), for several thresholds.
4. Clustering cost: chinese whispers over N descriptors (the composed faces, jittered to N).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")

import django  # noqa: E402

django.setup()

from bench import compose  # noqa: E402
from faces.engines.local import LocalEngine  # noqa: E402

OUT = ROOT / "bench" / "out"
# (threshold, reference distance, selfie limit) tried; the first is FindMe's default.
GRID = [
    (0.5, 0.4, 0.6),
    (0.5, 0.35, 0.55),
    (0.55, 0.45, 0.6),
    (0.6, 0.6, 0.6),
    (0.4, 0.3, 0.5),
    (0.35, 0.3, 0.45),
]


def _upright(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def _label(face, boxes: list[tuple[str, list[float]]], width: int, height: int) -> str:
    """Who a detected face is: the truth box its centre lies in, else "unknown"."""
    cx = (face.left + face.width / 2) * width
    cy = (face.top + face.height / 2) * height
    for identity, (left, top, w, h) in boxes:
        if left - 0.25 * w <= cx <= left + 1.25 * w and top - 0.25 * h <= cy <= top + 1.25 * h:
            return identity
    return "unknown"


def composed_descriptors(count: int, seed: int) -> dict:
    cache = OUT / f"references-composed-s{seed}-n{count}.npz"
    if cache.exists():
        data = np.load(cache)
        return {k: data[k] for k in data.files}
    engine = LocalEngine(threshold=0.5)
    vectors, identities, photos = [], [], []
    for index, (path, truth) in enumerate(compose.photo_set(count, seed, log=lambda *_: None)):
        image = _upright(path)
        boxes = [(f["identity"], f["box"]) for f in truth["faces"]]
        for face in engine.faces_detect(image, source=lambda image=image: image):
            vectors.append(np.frombuffer(face.descriptor, dtype=np.float32))
            identities.append(_label(face, boxes, image.width, image.height))
            photos.append(index)
    data = {
        "vectors": np.array(vectors, dtype=np.float32),
        "identities": np.array(identities),
        "photos": np.array(photos),
    }
    np.savez(cache, **data)
    return data


def shared_descriptors() -> dict:
    """../shared/faces: every people/ photo but the selfie, and the group photos."""
    cache = OUT / "references-shared.npz"
    if cache.exists():
        data = np.load(cache)
        return {k: data[k] for k in data.files}
    engine = LocalEngine(threshold=0.5)
    truth = json.loads((compose.FACES / "truth.json").read_text())
    selfies = compose.selfies()
    vectors, identities, photos = [], [], []
    index = 0
    for name, selfie in selfies.items():
        for path in sorted((compose.FACES / "people" / name).glob("*.jpg")):
            if path == selfie:
                continue
            for face in engine.faces_detect(_upright(path)):
                vectors.append(np.frombuffer(face.descriptor, dtype=np.float32))
                identities.append(name)
                photos.append(index)
            index += 1
    for group, info in sorted(truth["groups"].items()):
        faces = engine.faces_detect(_upright(compose.FACES / "groups" / group))
        people = info["people"]
        selfie_vectors = {p: selfie_vector(engine, selfies[p]) for p in people}
        for face in faces:
            vector = np.frombuffer(face.descriptor, dtype=np.float32)
            # The group photos name who is in them, not where: the nearest named person's
            # selfie under 0.6, everyone else a stranger of that photo.
            near = sorted((float(np.linalg.norm(vector - v)), p) for p, v in selfie_vectors.items())
            who = near[0][1] if near and near[0][0] <= 0.6 else f"stranger-{group}-{len(vectors)}"
            vectors.append(vector)
            identities.append(who)
            photos.append(index)
        index += 1
    data = {
        "vectors": np.array(vectors, dtype=np.float32),
        "identities": np.array(identities),
        "photos": np.array(photos),
    }
    np.savez(cache, **data)
    return data


def selfie_vector(engine: LocalEngine, path: Path) -> np.ndarray:
    [face] = engine.faces_detect(_upright(path))
    return np.frombuffer(face.descriptor, dtype=np.float32)


def _sets(data: dict, selfies: dict[str, np.ndarray]):
    from faces.services.references import FaceSet, MemberSet

    faces = FaceSet(
        ids=np.arange(len(data["vectors"]), dtype=np.int64),
        photos=data["photos"].astype(np.int64),
        matrix=data["vectors"],
    )
    names = sorted(selfies)
    members = MemberSet(
        user_ids=list(range(len(names))), matrix=np.stack([selfies[n] for n in names])
    )
    return faces, members, names


def distances_report(name: str, data: dict, selfies: dict[str, np.ndarray]) -> None:
    faces, members, names = _sets(data, selfies)
    from faces.services.references import pairwise

    table = pairwise(faces.matrix, members.matrix)
    same, strangers = [], []
    for row, identity in enumerate(data["identities"].tolist()):
        for col, member in enumerate(names):
            (same if identity == member else strangers).append(float(table[row, col]))
    same.sort()
    strangers.sort()
    print(
        f"{name}: {len(faces)} faces; member to own face {same[0]:.3f}-{same[-1]:.3f} "
        f"(p95 {np.percentile(same, 95):.3f}, {sum(d > 0.5 for d in same)} above 0.5, "
        f"{sum(d > 0.6 for d in same)} above 0.6); nearest stranger (incl. other members) "
        f"{strangers[0]:.3f}, {sum(d <= 0.6 for d in strangers)} pairs at or under 0.6"
    )


def recall_report(name: str, data: dict, selfies: dict[str, np.ndarray], limits) -> tuple:
    """(photo, member) recall and precision with the selfie alone and with expansion."""
    from faces.services.references import Rejections
    from faces.services.settle import event_plan

    faces, members, names = _sets(data, selfies)
    truth = {
        (int(p), names.index(i))
        for p, i in zip(data["photos"].tolist(), data["identities"].tolist(), strict=True)
        if i in names
    }
    line = [f"{name} T={limits.threshold} ref={limits.reference} limit={limits.selfie_limit}:"]
    for expand in (False, True):
        chosen, _ = event_plan(faces, members, Rejections(), limits, expand=expand)
        got = {(int(faces.photos[c.face_id]), c.user_id) for c in chosen}
        hits = len(got & truth)
        line.append(
            f"{'expanded' if expand else 'selfie alone'} recall {hits}/{len(truth)} "
            f"= {hits / len(truth):.3f}, precision {hits}/{len(got)} = "
            f"{hits / max(len(got), 1):.3f}"
        )
    print(" ".join(line))


def _timed_grouping(label: str, faces, threshold: float = 0.5) -> None:
    import resource

    from faces.services.clusters import edges_find, faces_group

    cpu = time.process_time()
    wall = time.monotonic()
    edges = edges_find(faces, threshold)
    edges_s, edges_cpu = time.monotonic() - wall, time.process_time() - cpu
    cpu = time.process_time()
    wall = time.monotonic()
    clusters = faces_group(faces, threshold)
    total, total_cpu = time.monotonic() - wall, time.process_time() - cpu
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sizes = sorted((len(c) for c in clusters), reverse=True)
    print(
        f"{label}: {len(faces)} faces; the edges alone ({len(edges)}) {edges_s:.2f} s wall, "
        f"{edges_cpu:.2f} s CPU; the whole grouping (edges, chinese whispers, one face per "
        f"photo) {total:.2f} s wall, {total_cpu:.2f} s CPU; {len(clusters)} clusters, largest "
        f"{sizes[:3]}; peak RSS so far {rss:.0f} MB"
    )


def cluster_cost(sets: dict, count: int) -> None:
    """The cost of grouping ``count`` faces, on two made-up events:
    - real descriptors repeated: every composed and shared face again and again with a small
      jitter (a new photo each time), so 5 guests are in thousands of photos (a wedding's
      couple, at its worst);
    - many guests: 20 faces each of count/20 people, drawn around the real faces' mean with the
      spreads the real faces show (same person ~0.4 apart, two people ~0.9)."""
    from faces.services.references import FaceSet, MemberSet, Rejections, candidates_plan

    base = np.concatenate([d["vectors"] for d in sets.values()])
    rng = np.random.default_rng(1)
    reps = -(-count // len(base))
    matrix = np.concatenate(
        [base + rng.normal(0, 0.01, base.shape).astype(np.float32) for _ in range(reps)]
    )[:count].astype(np.float32)
    photos = np.arange(count, dtype=np.int64) // 3
    _timed_grouping("real faces repeated", FaceSet(np.arange(count), photos, matrix))
    people = count // 20
    centres = base.mean(axis=0) + rng.normal(0, 0.9 / np.sqrt(256), (people, base.shape[1]))
    spread = rng.normal(0, 0.4 / np.sqrt(256), (count, base.shape[1]))
    crowd = (centres[np.arange(count) % people] + spread).astype(np.float32)
    shuffled = rng.permutation(count)
    faces = FaceSet(np.arange(count), photos, crowd[shuffled])
    _timed_grouping(f"{people} guests x 20 faces", faces)
    members = MemberSet(user_ids=list(range(100)), matrix=centres[:100].astype(np.float32))
    wall, cpu = time.monotonic(), time.process_time()
    plan = candidates_plan(faces, members, Rejections(), limits_default())
    print(
        f"references plan, {count} faces x 100 members: {len(plan)} candidates in "
        f"{time.monotonic() - wall:.2f} s wall, {time.process_time() - cpu:.2f} s CPU"
    )


def limits_default():
    from faces.services.references import limits_from_settings

    return limits_from_settings()


def settle_cost(count: int) -> None:
    """event_settle on a throwaway SQLite database: ``count`` faces of count/20 guests, 3 per
    photo, 100 of the guests members; the first pass (every match and cluster written) and a
    second one (nothing changed: nothing written)."""
    import tempfile

    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from accounts.models import Selfie, User
    from events.models import Event, Membership
    from faces.models import Cluster, Face, Match
    from faces.services.settle import event_settle
    from photos.models import Photo

    folder = tempfile.mkdtemp(prefix="findme-settle-")
    connection.settings_dict["NAME"] = f"{folder}/db.sqlite3"
    connection.close()
    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    rng = np.random.default_rng(3)
    people = count // 20
    centres = rng.normal(0, 0.9 / np.sqrt(256), (people, 128)) + 0.05
    faces = (
        centres[np.arange(count) % people] + rng.normal(0, 0.4 / np.sqrt(256), (count, 128))
    ).astype(np.float32)[rng.permutation(count)]
    event = Event.objects.create(name="bench", slug="bench")
    users = User.objects.bulk_create([User(username=f"m{i}") for i in range(100)])
    Membership.objects.bulk_create([Membership(user=u, event=event) for u in users])
    now = timezone.now()
    Selfie.objects.bulk_create(
        [
            Selfie(
                user=u,
                image=f"selfies/{u.pk}.jpg",
                status=Selfie.Status.INDEXED,
                descriptor=centres[i].astype(np.float32).tobytes(),
                engine="local",
                consent_at=now,
                indexed_at=now,
            )
            for i, u in enumerate(users)
        ]
    )
    photos = Photo.objects.bulk_create(
        [
            Photo(event=event, sha256=f"{i:064x}", original=f"p/{i}.jpg", content_type="x", size=1)
            for i in range(-(-count // 3))
        ]
    )
    Face.objects.bulk_create(
        [
            Face(
                photo=photos[i // 3],
                event=event,
                index=i % 3,
                left=0,
                top=0,
                width=0.1,
                height=0.1,
                descriptor=faces[i].tobytes(),
                engine="local",
            )
            for i in range(count)
        ]
    )
    for label in ("first pass", "second pass"):
        wall, cpu = time.monotonic(), time.process_time()
        done = event_settle(event_id=event.pk)
        print(
            f"event_settle, {count} faces, 100 members, SQLite, {label}: "
            f"{time.monotonic() - wall:.2f} s wall, {time.process_time() - cpu:.2f} s CPU; "
            f"{done['photos']} photos rematched, {Match.objects.count()} matches, "
            f"{Cluster.objects.count()} clusters"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cluster-faces", type=int, default=10000)
    parser.add_argument("--descriptors-only", action="store_true")
    parser.add_argument("--settle-only", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.settle_only:
        settle_cost(args.cluster_faces)
        return
    started = time.monotonic()
    sets = {
        "shared": shared_descriptors(),
        f"composed seed {args.seed}": composed_descriptors(args.photos, args.seed),
    }
    print(f"descriptors ready in {time.monotonic() - started:.1f} s")
    if args.descriptors_only:
        return
    engine = LocalEngine(threshold=0.5)
    selfies = {n: selfie_vector(engine, p) for n, p in compose.selfies().items()}
    from faces.services.references import Limits

    for name, data in sets.items():
        distances_report(name, data, selfies)
    for name, data in sets.items():
        for threshold, reference, limit in GRID:
            recall_report(name, data, selfies, Limits(threshold, reference, limit, 0.5))
    cluster_cost(sets, args.cluster_faces)
    settle_cost(args.cluster_faces)


if __name__ == "__main__":
    main()
