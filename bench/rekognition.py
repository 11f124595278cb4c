"""What Rekognition costs FindMe at a real event: calls, matching lag and the bill.

    .venv/bin/python bench/rekognition.py [--max-wait 60,120,240] [--paging-faces 5000]

Both scenarios of issue 13 run through the real services on simulated time, with the
Rekognition engine and the emulator (faces/engines/emulator.py) as its client: 100 photos of 4
faces each, 50 members, 25 indexed before the photos and 25 after them
(tests/faces/rekognition_scenarios.py):
- burst: the 100 photos within a minute;
- trickle: 10 photos a minute for 10 minutes.

For each, the billable calls, the matching lag (from a photo done to every earlier member
searched through it; the worst photo), and the bill (calls at $0.001, and a month of face
storage at $0.00001 a face). The baseline, from the same run: the prototype's pattern, one
IndexFaces per photo and one SearchFaces per detected face. ``--max-wait`` runs the trickle
again at other REKOGNITION_MATCH_MAX_WAIT_S values (the documented trade-off). A third
scenario, sparse (12 photos, one every 5 minutes), runs with REKOGNITION_ROUND_STRATEGY cheaper
and member: where a round per new face is the cheaper way. Then one member
in ``--paging-faces`` photos: the calls it takes to find every one past SearchFacesByImage's
4096. The last line: ``rekognition: burst_calls=N trickle_calls=N burst_lag_s=N trickle_lag_s=N
ratio=R``, R being both scenarios' calls over the prototype pattern's.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PRICE_PER_CALL = 0.001
PRICE_PER_FACE_MONTH = 0.00001
PROTOTYPE_BILL = 0.96


def setup(workdir: Path) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "AWS_STORAGE_BUCKET_NAME"):
        os.environ.pop(name, None)  # the embedded defaults: SQLite, local files
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-only-" + "x" * 40,
            "SQLITE_PATH": str(workdir / "db.sqlite3"),
            "MEDIA_ROOT": str(workdir / "media"),
            "LOG_LEVEL": "WARNING",
            "FACE_ENGINE": "rekognition",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",  # noqa: S105 - the emulator asks for none
            # Simulated time: the pace of real calls is not what is measured here.
            "AWS_REQUESTS_PER_SECOND": "0",
            "SEMAPHORE_FILE_DIR": str(workdir / "slots"),
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable")


def engine_with(emulator) -> None:
    from faces.services.engines import _engines, engine_get

    _engines.clear()
    engine = engine_get()
    engine.client_factory = lambda: emulator


def scenario(name: str, slug: str, *, max_wait: int | None = None, strategy: str = "cheaper"):
    from django.conf import settings

    from accounts.models import User
    from accounts.services import selfie_store
    from events.models import Event, Membership
    from faces.engines.emulator import RekognitionEmulator
    from faces.engines.rekognition import BILLABLE
    from tests.faces import rekognition_scenarios as scenarios

    if max_wait is not None:
        settings.REKOGNITION_MATCH_MAX_WAIT_S = max_wait
    settings.REKOGNITION_ROUND_STRATEGY = strategy
    emulator = RekognitionEmulator(detector=scenarios.ColourFaces())
    engine_with(emulator)
    event = Event.objects.create(name=slug, slug=slug)
    users = []
    for i in range(scenarios.MEMBERS):
        user = User.objects.create_user(username=f"{slug}-{i:02d}", password="x")
        Membership.objects.create(user=user, event=event)
        users.append(user)
    started = time.perf_counter()
    outcome = scenarios.run(
        scenario=name,
        emulator=emulator,
        event=event,
        users=users,
        selfie_store=selfie_store,
        billable=BILLABLE,
    )
    wall = time.perf_counter() - started
    bill = outcome.billable * PRICE_PER_CALL + outcome.faces * PRICE_PER_FACE_MONTH
    print(
        f"{slug}: {outcome.billable} billable calls ({outcome.billable / outcome.photos_done:.2f}"
        f" per photo; {', '.join(f'{k} {v}' for k, v in sorted(outcome.calls.items()))}),"
        f" {outcome.rounds} rounds, lag {outcome.lag_s:.0f} s for the worst photo,"
        f" {outcome.lag_after_last_s:.0f} s after the last;"
        f" matches {outcome.correct} right, {outcome.missing} missed, {outcome.wrong} wrong;"
        f" bill ${bill:.3f} per {outcome.photos_done} photos"
        f" (prototype pattern: {outcome.prototype_calls} calls,"
        f" ${outcome.prototype_calls * PRICE_PER_CALL + outcome.faces * PRICE_PER_FACE_MONTH:.3f});"
        f" {wall:.1f} s wall",
        flush=True,
    )
    return outcome


def paging(faces: int) -> None:
    """One member in ``faces`` photos: every match found, past SearchFacesByImage's 4096."""
    from django.db import transaction
    from PIL import Image

    from accounts.models import User
    from accounts.services import selfie_store
    from core.uploads import upload_as_received
    from events.models import Event, Membership
    from faces import services as faces_services
    from faces.engines.emulator import RekognitionEmulator
    from faces.models import Match
    from photos.models import Photo
    from tests.faces import rekognition_scenarios as scenarios

    emulator = RekognitionEmulator(detector=scenarios.ColourFaces())
    engine_with(emulator)
    event = Event.objects.create(name="paging", slug="paging")
    photos = Photo.objects.bulk_create(
        [
            Photo(
                event=event,
                sha256=f"{n:064x}",
                original=f"p/{n}.jpg",
                content_type="image/jpeg",
                size=1,
                status=Photo.Status.DONE,
            )
            for n in range(faces)
        ],
        batch_size=2000,
    )
    image = Image.open(io.BytesIO(scenarios.photo_of([0], 0))).convert("RGB")
    for photo in photos:
        detected = faces_services.faces_detect_for_photo(
            event_id=event.pk, photo_id=photo.pk, image=image
        )
        with transaction.atomic():  # as the photo's task stores its faces
            faces_services.faces_store(event_id=event.pk, photo_id=photo.pk, detected=detected)
    user = User.objects.create_user(username="bride", password="x")
    Membership.objects.create(user=user, event=event)
    data, box = scenarios.selfie_of(0)
    upload = upload_as_received("me.jpg", data, "image/jpeg")
    selfie_store(user=user, upload=upload, face_box=box)
    upload.close()
    before = {op: emulator.count(op) for op in ("SearchFacesByImage", "SearchUsers")}
    faces_services.member_index(user_id=user.pk)
    matched = Match.objects.filter(user=user, rejected=False).count()
    searches = {op: emulator.count(op) - n for op, n in before.items()}
    extra = sum(emulator.count(op) for op in ("IndexFaces", "AssociateFaces")) - faces
    print(
        f"paging: {matched} of {faces} photos matched for one member with"
        f" {searches['SearchFacesByImage']} SearchFacesByImage + {searches['SearchUsers']}"
        f" SearchUsers + {extra} IndexFaces/AssociateFaces of the selfie;"
        f" user left at AWS: {bool(emulator.collections['findme-event-' + str(event.pk)].users)}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-wait", default="", help="extra trickle runs: seconds, commas")
    parser.add_argument("--paging-faces", type=int, default=5000)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="findme-bench-rekognition-"))
    setup(workdir)
    from django.conf import settings

    print(
        f"window {settings.REKOGNITION_MATCH_WINDOW_S} s, maximum wait"
        f" {settings.REKOGNITION_MATCH_MAX_WAIT_S} s; database in {workdir}",
        flush=True,
    )
    burst = scenario("burst", "burst")
    trickle = scenario("trickle", "trickle")
    default_wait = settings.REKOGNITION_MATCH_MAX_WAIT_S
    for wait in [int(w) for w in args.max_wait.split(",") if w.strip()]:
        scenario("trickle", f"trickle-wait-{wait}", max_wait=wait)
    settings.REKOGNITION_MATCH_MAX_WAIT_S = default_wait
    # Beside the two: a photo every 5 minutes, where a round per new face pays.
    scenario("sparse", "sparse")
    scenario("sparse", "sparse-per-member", strategy="member")
    settings.REKOGNITION_ROUND_STRATEGY = "cheaper"
    if args.paging_faces:
        paging(args.paging_faces)
    per_100 = (burst.billable + trickle.billable) / 2 * PRICE_PER_CALL + (
        burst.faces + trickle.faces
    ) / 2 * PRICE_PER_FACE_MONTH
    print(f"bill per 100 photos: ${per_100:.3f} (the prototype: ${PROTOTYPE_BILL:.2f})")
    ratio = (burst.billable + trickle.billable) / (burst.prototype_calls + trickle.prototype_calls)
    print(
        f"rekognition: burst_calls={burst.billable} trickle_calls={trickle.billable}"
        f" burst_lag_s={burst.lag_s:.0f} trickle_lag_s={trickle.lag_s:.0f} ratio={ratio:.2f}"
    )


if __name__ == "__main__":
    main()
