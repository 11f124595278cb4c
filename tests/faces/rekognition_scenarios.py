"""The two cost scenarios of issue 13, run on simulated time through the real services.

100 photos of 4 faces each and 50 members, half of them indexed before the photos and half after:
- burst: the 100 photos arrive within a minute;
- trickle: 10 photos a minute for 10 minutes;
- sparse (beside the issue's two): 12 photos, one every 5 minutes, where a round per new face
  is the cheaper way.

Photos are ingested and processed by ``photos.services`` exactly as a worker does, the engine
is the Rekognition engine with the emulator as its client, and re-match rounds run when
django-q2's scheduler would run them: its Schedule rows, looked at every 30 s of simulated time.
Simulated time is ``django.utils.timezone.now`` (which Face rows, schedules and the rounds' waits
all read) advanced by the driver; so ten minutes take seconds.

50 distinct real people are not in ../shared/faces, so the people here are squares of 50 colours
on white, found by ``ColourFaces`` (each colour a fixed random 128-d descriptor, one unit of
distance from every other): detection is made up, but everything Rekognition does with what it
detects (the largest face, thresholds, limits) is the emulator's own. Recall on real faces is
tested in tests/faces/test_rekognition_emulated.py.

Used by tests/faces/test_rekognition_emulated.py and bench/rekognition.py.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from unittest import mock

import numpy as np
from PIL import Image

from faces.engines.base import DetectedFace

MEMBERS = 50
PHOTOS = 100
FACES_PER_PHOTO = 4
SQUARE = 160
LEVELS = (0, 80, 160, 240)


def colours() -> list[tuple[int, int, int]]:
    """50 colours at least 80 apart on some channel, none near white (the background)."""
    found = [(r, g, b) for r in LEVELS for g in LEVELS for b in LEVELS if min(r, g, b) < 160]
    return found[:MEMBERS]


class ColourFaces:
    """A detector of coloured squares on white: each colour is one person."""

    def __init__(self, seed: int = 13) -> None:
        generator = np.random.default_rng(seed)
        vectors = generator.normal(size=(MEMBERS, 128)).astype(np.float32)
        # Unit distance apart, roughly: every pair of people is far above dlib's 0.5.
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) * np.sqrt(2)
        self.people = dict(zip(colours(), vectors, strict=True))

    def faces_detect(self, image: Image.Image) -> list[DetectedFace]:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
        height, width, _ = pixels.shape
        ink = pixels.min(axis=2) < 200  # every colour has a channel at 160 or below
        palette = np.array(list(self.people), dtype=np.int16)
        vectors = list(self.people.values())
        found = []
        for left, right in _runs(ink.any(axis=0)):
            for top, bottom in _runs(ink[:, left:right].any(axis=1)):
                if right - left < 20 or bottom - top < 20:
                    continue  # a JPEG's fringe or a marker pixel, not a face
                centre = pixels[
                    top + (bottom - top) // 4 : bottom - (bottom - top) // 4,
                    left + (right - left) // 4 : right - (right - left) // 4,
                ].reshape(-1, 3)
                colour = np.median(centre, axis=0)
                distance = np.linalg.norm(palette - colour, axis=1)
                if distance.min() > 40:
                    continue
                found.append(
                    DetectedFace(
                        left=left / width,
                        top=top / height,
                        width=(right - left) / width,
                        height=(bottom - top) / height,
                        descriptor=vectors[int(distance.argmin())].tobytes(),
                    )
                )
        return found


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """The [start, end) spans where ``flags`` is true."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def selfie_of(person: int) -> tuple[bytes, tuple[float, float, float, float]]:
    """A selfie: the person's square in the middle, and its box as dlib would give it."""
    image = Image.new("RGB", (480, 480), "white")
    image.paste(Image.new("RGB", (SQUARE, SQUARE), colours()[person]), (160, 160))
    return jpeg(image), (160 / 480, 160 / 480, SQUARE / 480, SQUARE / 480)


def photo_of(people: list[int], serial: int) -> bytes:
    """A photo of four people in a row; ``serial`` makes its bytes unique."""
    image = Image.new("RGB", (1000, 400), "white")
    for i, person in enumerate(people):
        image.paste(Image.new("RGB", (SQUARE, SQUARE), colours()[person]), (40 + 240 * i, 120))
    image.putpixel((0, 0), (serial % 256, serial // 256 % 256, 255))
    return jpeg(image)


def people_in(photo: int) -> list[int]:
    return [(FACES_PER_PHOTO * photo + j) % MEMBERS for j in range(FACES_PER_PHOTO)]


class SimulatedClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Outcome:
    calls: dict[str, int]
    billable: int
    faces: int
    photos_done: int
    lag_s: float  # the worst photo: from done to searched for every member indexed before it
    lag_after_last_s: float  # from the last photo done to every photo searched
    correct: int
    missing: int
    wrong: int
    rounds: int
    prototype_calls: int = field(default=0)


def run(
    *,
    scenario: str,
    emulator,
    event,
    users: list,
    selfie_store: Callable,
    billable: frozenset[str],
) -> Outcome:
    """Run one scenario on a fresh event; ``users`` are 50 members of it without selfies."""
    from django.utils import timezone
    from django_q.models import Schedule

    from core.uploads import upload_as_received
    from faces import services as faces_services
    from faces import tasks as faces_tasks
    from faces.models import Face, Match, MemberSearch
    from photos.services import photo_ingest, photo_process

    clock = SimulatedClock(timezone.now())
    before, after = users[: MEMBERS // 2], users[MEMBERS // 2 :]
    arrivals = {
        "burst": [i * 0.5 for i in range(PHOTOS)],  # 100 photos in 50 s
        "trickle": [i * 6.0 for i in range(PHOTOS)],  # 10 a minute for 10 minutes
        "sparse": [i * 300.0 for i in range(12)],  # a photo every 5 minutes for an hour
    }[scenario]
    last = arrivals[-1]
    # The second half join once the photos are all in, one every 10 s.
    joins = {last + 30 + 10 * i: user for i, user in enumerate(after)}
    done_at: dict[int, datetime] = {}
    matched_at: dict[int, datetime] = {}
    rounds = 0

    def enrol(user) -> None:
        data, box = selfie_of(users.index(user))
        upload = upload_as_received("me.jpg", data, "image/jpeg")
        selfie_store(user=user, upload=upload, face_box=box)
        upload.close()  # as Django closes a request's files
        assert faces_services.member_index(user_id=user.pk)

    def rounds_due() -> int:
        ran = 0
        for schedule in Schedule.objects.filter(
            func="faces.tasks.event_rematch", next_run__lte=clock.now
        ).order_by("next_run"):
            schedule.delete()  # what django-q2 does with a ONCE schedule it hands over
            faces_tasks.event_rematch(event.pk)
            ran += 1
        return ran

    def matched_check() -> None:
        through = dict(
            MemberSearch.objects.filter(event=event, user__in=before).values_list(
                "user_id", "faces_through"
            )
        )
        searched = min((through.get(u.pk, 0) for u in before), default=0)
        for photo_id in done_at.keys() - matched_at.keys():
            newest = max(Face.objects.filter(photo_id=photo_id).values_list("pk", flat=True))
            if newest <= searched:
                matched_at[photo_id] = clock.now

    with mock.patch("django.utils.timezone.now", clock):
        for user in before:
            enrol(user)
        photo_ids = {}
        step = 1.0
        elapsed = 0.0
        pending = list(enumerate(arrivals))
        while pending or joins or len(matched_at) < len(done_at) or not done_at:
            while pending and pending[0][1] <= elapsed:
                n, _ = pending.pop(0)
                upload = upload_as_received(f"p{n}.jpg", photo_of(people_in(n), n), "image/jpeg")
                photo = photo_ingest(event=event, upload=upload, uploaded_by=None).photo
                upload.close()
                assert photo_process(photo_id=photo.pk) == "done"
                photo_ids[photo.pk] = n
                done_at[photo.pk] = clock.now
            for at in sorted(t for t in joins if t <= elapsed):
                enrol(joins.pop(at))
            # django-q2's scheduler looks at its schedules every 30 s.
            if int(elapsed) % 30 == 0:
                rounds += rounds_due()
                matched_check()
            clock.advance(step)
            elapsed += step
            if elapsed > 3 * 3600:
                raise AssertionError("the scenario never settled")
        rounds += rounds_due()

    truth = {(pk, users[person].pk) for pk, n in photo_ids.items() for person in people_in(n)}
    got = set(Match.objects.filter(event=event, rejected=False).values_list("photo_id", "user_id"))
    calls = {}
    for call in emulator.calls:
        if not call.error:
            calls[call.operation] = calls.get(call.operation, 0) + 1
    faces = Face.objects.filter(event=event).count()
    lag = max((matched_at[pk] - done_at[pk]).total_seconds() for pk in done_at)
    lag_after_last = (max(matched_at.values()) - max(done_at.values())).total_seconds()
    return Outcome(
        calls=calls,
        billable=sum(n for op, n in calls.items() if op in billable),
        faces=faces,
        photos_done=len(done_at),
        lag_s=lag,
        lag_after_last_s=lag_after_last,
        correct=len(truth & got),
        missing=len(truth - got),
        wrong=len(got - truth),
        rounds=rounds,
        # The prototype's pattern: IndexFaces per photo, then SearchFaces per detected face.
        prototype_calls=len(done_at) + faces,
    )
