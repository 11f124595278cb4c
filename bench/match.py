"""Matching speed of the local engine: one new member against an event's stored faces.

    .venv/bin/python bench/match.py [--faces 50000] [--repeat 20]

Two measurements, each against a baseline in the same run:
- the vectorised numpy match (faces/engines/local.py) vs a per-face Python loop;
- the whole back-match service (faces.services.member_match_event: load the event's
  descriptors from the database, match, assign, write) on a temporary SQLite database.
The last line prints the times and ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(fn, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p95(samples: list[float]) -> float:
    return sorted(samples)[max(0, int(len(samples) * 0.95) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="findme-bench-match-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "1",
            "SQLITE_PATH": str(workdir / "db.sqlite3"),
            "MEDIA_ROOT": str(workdir / "media"),
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable")

    from accounts.models import Selfie, User
    from events.models import Event, Membership
    from faces.engines.base import MemberRecord
    from faces.engines.local import LocalEngine, descriptors_matrix
    from faces.models import Face, Match
    from faces.services import member_match_event
    from photos.models import Photo

    rng = np.random.default_rng(42)
    vectors = rng.normal(0, 0.09, size=(args.faces, 128)).astype(np.float32)
    member_vector = vectors[123] + rng.normal(0, 0.01, size=128).astype(np.float32)
    engine = LocalEngine(threshold=0.5)
    member = MemberRecord(user_id=1, descriptor=member_vector.tobytes(), engine_ref="")
    face_ids = list(range(args.faces))

    # --- engine level: vectorised vs per-face loop -----------------------------------------------
    matrix = descriptors_matrix([v.tobytes() for v in vectors])
    fast = timed(
        lambda: engine.member_candidates_from_matrix(
            member=member, face_ids=face_ids, matrix=matrix
        ),
        args.repeat,
    )

    def per_face_loop() -> list[int]:
        return [i for i, v in enumerate(vectors) if float(np.linalg.norm(v - member_vector)) <= 0.5]

    slow = timed(per_face_loop, max(3, args.repeat // 5))

    # --- service level: the whole back-match on a database ---------------------------------------
    print(f"building an event with {args.faces:,} faces in {workdir} ...", flush=True)
    event = Event.objects.create(name="Bench", slug="bench")
    user = User.objects.create_user(username="member", password="x")
    Membership.objects.create(user=user, event=event)
    Selfie.objects.create(
        user=user,
        image="selfies/x.jpg",
        consent_at=django.utils.timezone.now(),
        status=Selfie.Status.INDEXED,
        descriptor=member_vector.tobytes(),
        engine="local",
        indexed_at=django.utils.timezone.now(),
    )
    per_photo = 4
    photos = Photo.objects.bulk_create(
        [
            Photo(
                event=event,
                sha256=f"{i:064x}",
                original=f"p/{i}.jpg",
                content_type="image/jpeg",
                size=1,
                status=Photo.Status.DONE,
            )
            for i in range(args.faces // per_photo)
        ],
        batch_size=2000,
    )
    Face.objects.bulk_create(
        [
            Face(
                photo_id=photos[i // per_photo].pk,
                event=event,
                index=i % per_photo,
                left=0.1,
                top=0.1,
                width=0.1,
                height=0.1,
                descriptor=vectors[i].tobytes(),
                engine="local",
            )
            for i in range(len(photos) * per_photo)
        ],
        batch_size=2000,
    )
    service = timed(lambda: member_match_event(user_id=user.pk, event_id=event.pk), 5)
    found = Match.objects.filter(user=user).count()

    print(
        f"numpy match, {args.faces:,} faces: p50 {statistics.median(fast):.1f} ms, p95 {p95(fast):.1f} ms"
    )
    print(f"per-face loop baseline:          p50 {statistics.median(slow):.1f} ms")
    print(
        f"member_match_event (DB load + match + write), {args.faces:,} faces: "
        f"p50 {statistics.median(service):.1f} ms, p95 {p95(service):.1f} ms ({found} matches)"
    )
    print(
        f"numpy {statistics.median(fast):.1f} ms vs loop {statistics.median(slow):.1f} ms: "
        f"x{statistics.median(slow) / statistics.median(fast):.0f} faster; "
        f"whole back-match {statistics.median(service):.0f} ms"
    )


if __name__ == "__main__":
    main()
