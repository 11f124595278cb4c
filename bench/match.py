"""Matching speed of the local engine: one new member against an event's stored faces.

    .venv/bin/python bench/match.py [--faces 50000] [--repeat 50]

Two measurements in the same run:
- the engine's match (faces/engines/local.py ``member_candidates_from_matrix``: distances as
  one matrix-vector product, threshold, candidates) against the same work done the way
  face_recognition's ``face_distance`` does it, ``np.linalg.norm(known - candidate, axis=1)``,
  on the same float32 matrix; the two alternate call by call (A B A B), so that both share
  the machine's noise, and must find the same faces;
- the whole back-match service (faces.services.member_match_event: load the event's
  descriptors from the database, match, assign, write) on a temporary SQLite database.
The last line prints the medians and their ratio (baseline / engine).
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


def timed_alternating(a, b, repeat: int) -> tuple[list[float], list[float]]:
    """``repeat`` timings (ms) of each, A B A B: a busy machine slows both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, samples in ((a, times[0]), (b, times[1])):
            started = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - started) * 1000)
    return times


def p95(samples: list[float]) -> float:
    return sorted(samples)[max(0, int(len(samples) * 0.95) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="findme-bench-match-"))
    for name in ("DATABASE_URL", "REDIS_URL", "AWS_STORAGE_BUCKET_NAME"):
        os.environ.pop(name, None)  # the embedded defaults: SQLite, local files
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            # DEBUG off, as in production: with DEBUG on, Django formats every query's SQL with
            # its parameters (the back-match at 5,000 faces: 205 ms with DEBUG, 159 ms without).
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-only-" + "x" * 40,
            "SQLITE_PATH": str(workdir / "db.sqlite3"),
            "MEDIA_ROOT": str(workdir / "media"),
            "LOG_LEVEL": "WARNING",
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
    from faces.services import member_backmatch_request, member_match_event
    from photos.models import Photo

    rng = np.random.default_rng(42)
    vectors = rng.normal(0, 0.09, size=(args.faces, 128)).astype(np.float32)
    member_vector = vectors[123] + rng.normal(0, 0.01, size=128).astype(np.float32)
    engine = LocalEngine(threshold=0.5)
    member = MemberRecord(user_id=1, descriptor=member_vector.tobytes(), engine_ref="")
    face_ids = list(range(args.faces))

    # --- engine level: the engine's match vs the norm of the differences -------------------------
    matrix = descriptors_matrix([v.tobytes() for v in vectors])

    def engine_match() -> list[tuple[int, float]]:
        found = engine.member_candidates_from_matrix(
            member=member, face_ids=face_ids, matrix=matrix
        )
        return [(c.face_id, c.distance) for c in found]

    def norm_match() -> list[tuple[int, float]]:
        # The baseline: a difference row per face, then its norm, as face_distance computes it.
        dist = np.linalg.norm(matrix - member_vector, axis=1)
        hits = np.nonzero(dist <= engine.threshold)[0]
        return [(face_ids[i], float(dist[i])) for i in hits.tolist()]

    ours, theirs = engine_match(), norm_match()
    if [i for i, _ in ours] != [i for i, _ in theirs] or not np.allclose(
        [d for _, d in ours], [d for _, d in theirs], atol=1e-4
    ):
        raise SystemExit(f"the two matches disagree: {ours[:5]} vs {theirs[:5]}")
    fast, slow = timed_alternating(engine_match, norm_match, args.repeat)

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
    # A back-match is a claimed job: once done, calling it again returns at once. Each timed
    # run is requested afresh (outside the clock) and must find the member's faces.
    service = []
    for _ in range(5):
        member_backmatch_request(user_id=user.pk, event_id=event.pk, dispatch=False)
        started = time.perf_counter()
        matched = member_match_event(user_id=user.pk, event_id=event.pk)
        service.append((time.perf_counter() - started) * 1000)
        if matched < 1:
            raise SystemExit("the back-match did not run (claimed elsewhere?) or found nothing")
    found = Match.objects.filter(user=user).count()

    print(
        f"engine match, {args.faces:,} faces: p50 {statistics.median(fast):.2f} ms,"
        f" p95 {p95(fast):.2f} ms ({len(ours)} found)"
    )
    print(
        f"np.linalg.norm(known - candidate, axis=1) baseline: p50 {statistics.median(slow):.2f} ms,"
        f" p95 {p95(slow):.2f} ms ({len(theirs)} found)"
    )
    print(
        f"member_match_event (DB load + match + write), {args.faces:,} faces: "
        f"p50 {statistics.median(service):.1f} ms, p95 {p95(service):.1f} ms ({found} matches)"
    )
    print(
        f"engine {statistics.median(fast):.2f} ms vs np.linalg.norm {statistics.median(slow):.2f} ms"
        f" (medians of {args.repeat}, alternating): ratio"
        f" {statistics.median(slow) / statistics.median(fast):.2f} (baseline/engine);"
        f" whole back-match {statistics.median(service):.0f} ms"
    )


if __name__ == "__main__":
    main()
