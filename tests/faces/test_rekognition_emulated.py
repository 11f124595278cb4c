"""The Rekognition engine against the emulator (faces/engines/emulator.py): what the service does
with the requests, where tests/faces/test_rekognition.py pins their shapes with the Stubber.

The emulator enforces AWS's documented limits (MaxFaces <= 4096, 5 MB images, 4096 ids per
DeleteFaces, the largest face only) and matches with dlib's descriptors, so a match here is a
real one. Tests that need real faces are marked ``faces`` and skip without ../shared/faces.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from PIL import Image

from accounts.models import Selfie
from accounts.services import selfie_store
from events.models import Event, Membership
from faces import services as faces_services
from faces.engines import rekognition
from faces.engines.emulator import RekognitionEmulator
from faces.engines.local import LocalEngine
from faces.engines.rekognition import BILLABLE, RekognitionEngine
from faces.models import CollectionFace, Face, Match, MemberSearch
from faces.services.engines import _engines, engine_get
from photos.models import Photo
from photos.services import photo_ingest, photo_process
from tests.conftest import uploaded
from tests.faces import rekognition_scenarios as scenarios

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_retries(settings):
    settings.TASK_RETRY_BASE_S = 0


def emulated(settings, monkeypatch, emulator: RekognitionEmulator) -> RekognitionEngine:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings.FACE_ENGINE = "rekognition"
    settings.REKOGNITION_COLLECTION_PREFIX = "findme"
    settings.REKOGNITION_MATCH_THRESHOLD = 95.0
    _engines.clear()
    engine = engine_get()
    assert isinstance(engine, RekognitionEngine)
    engine.client_factory = lambda: emulator
    engine.backoff_base_s = 0.01
    return engine


@pytest.fixture
def emulator(settings, monkeypatch):
    """The emulator with dlib as its eyes; rounds run when they are called."""
    settings.REKOGNITION_MATCH_MAX_WAIT_S = 0
    settings.AWS_REQUESTS_PER_SECOND = 0
    found = RekognitionEmulator()
    emulated(settings, monkeypatch, found)
    yield found
    _engines.clear()


@pytest.fixture
def colour_emulator(settings, monkeypatch):
    """The emulator seeing the coloured squares of tests/faces/rekognition_scenarios.py."""
    settings.AWS_REQUESTS_PER_SECOND = 0
    found = RekognitionEmulator(detector=scenarios.ColourFaces())
    emulated(settings, monkeypatch, found)
    yield found
    _engines.clear()


def member_new(django_user_model, event: Event, name: str):
    user = django_user_model.objects.create_user(username=name, password="a-long-passphrase")
    Membership.objects.create(user=user, event=event)
    return user


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def selfie_give(user, data: bytes, box: tuple[float, float, float, float] | None) -> None:
    upload = SimpleUploadedFile("selfie.jpg", data, "image/jpeg")
    selfie_store(user=user, upload=upload, face_box=box)


def photo_done(event: Event) -> Photo:
    """A photo of people 0 to 3, uploaded and processed."""
    photo_bytes = scenarios.photo_of([0, 1, 2, 3], 1)
    photo = photo_ingest(event=event, upload=uploaded("p.jpg", photo_bytes), uploaded_by=None).photo
    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    return photo


def searches(emulator: RekognitionEmulator) -> int:
    """SearchFacesByImage calls made, answered or refused."""
    return sum(1 for call in emulator.calls if call.operation == "SearchFacesByImage")


def matched_photos(user) -> set[int]:
    return set(Match.objects.filter(user=user, rejected=False).values_list("photo_id", flat=True))


# --- the emulator keeps AWS's limits ---------------------------------------------------------
def test_emulator_refuses_what_aws_refuses(colour_emulator):
    from botocore.exceptions import ClientError

    colour_emulator.create_collection(CollectionId="c")
    data, _ = scenarios.selfie_of(0)
    cases = [
        (colour_emulator.search_faces_by_image, {"MaxFaces": 4097, "Image": {"Bytes": data}}),
        (colour_emulator.search_faces_by_image, {"Image": {"Bytes": b"x" * (5 * 1024 * 1024 + 1)}}),
        (colour_emulator.delete_faces, {"FaceIds": [str(i) for i in range(4097)]}),
        (
            colour_emulator.search_faces_by_image,
            {"Image": {"Bytes": jpeg(Image.new("RGB", (99, 99), "white"))}},
        ),
        (colour_emulator.index_faces, {"Image": {"Bytes": jpeg(Image.new("RGB", (79, 300)))}}),
    ]
    codes = []
    for method, params in cases:
        with pytest.raises(ClientError) as caught:
            method(CollectionId="c", **params)
        codes.append(caught.value.response["Error"]["Code"])
    assert codes == [
        "InvalidParameterException",
        "ImageTooLargeException",
        "InvalidParameterException",
        "InvalidParameterException",  # no face in the image
        "InvalidParameterException",  # under 80 px on a side
    ]


# --- the two cost scenarios ------------------------------------------------------------------
def scenario_run(name: str, emulator, django_user_model, staff_user):
    event = Event.objects.create(name=name, slug=name, created_by=staff_user)
    users = [member_new(django_user_model, event, f"{name}{i:02d}") for i in range(50)]
    return scenarios.run(
        scenario=name,
        emulator=emulator,
        event=event,
        users=users,
        selfie_store=selfie_store,
        billable=BILLABLE,
    )


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_100_photos_costs_150_calls_and_is_matched_within_2_minutes(
    colour_emulator, django_user_model, staff_user
):
    outcome = scenario_run("burst", colour_emulator, django_user_model, staff_user)
    assert outcome.photos_done == 100
    assert (outcome.missing, outcome.wrong) == (0, 0)
    assert outcome.correct == 400
    assert outcome.calls["IndexFaces"] == 100
    assert outcome.billable <= 150
    assert outcome.lag_after_last_s <= 120
    assert outcome.lag_s <= 120  # even from the first photo of the burst


@pytest.mark.django_db(transaction=True)
def test_photos_trickling_in_for_10_minutes_cost_at_most_250_calls_within_5_minutes(
    colour_emulator, django_user_model, staff_user
):
    outcome = scenario_run("trickle", colour_emulator, django_user_model, staff_user)
    assert outcome.photos_done == 100
    assert (outcome.missing, outcome.wrong) == (0, 0)
    assert outcome.billable <= 250
    assert outcome.lag_s <= 300
    # The prototype's round per window searched every member every minute: 600 calls.
    assert outcome.billable < outcome.prototype_calls


@pytest.mark.django_db(transaction=True)
def test_photos_minutes_apart_are_searched_per_face_once_that_is_cheaper(
    colour_emulator, django_user_model, staff_user, settings
):
    """A photo every 5 minutes: a round per member costs 25 searches for 4 new faces. After
    two such rounds the savings pay for making the 25 early members Users (50 calls), and each
    round then costs 4 SearchUsers."""
    outcome = scenario_run("sparse", colour_emulator, django_user_model, staff_user)
    assert (outcome.missing, outcome.wrong) == (0, 0)
    assert outcome.calls["SearchUsers"] > 0
    assert outcome.calls["AssociateFaces"] == 25
    per_member_only = 12 + 12 * 25 + 25  # IndexFaces, a round per photo, the later 25
    assert outcome.billable <= per_member_only * 0.6
    assert outcome.lag_s <= 300

    # Forgetting a member deletes their User and selfie face at AWS.
    collection = colour_emulator.collections[f"findme-event-{Event.objects.get(slug='sparse').pk}"]
    user = MemberSearch.objects.exclude(user_face_id="").select_related("user").first().user
    face_id = MemberSearch.objects.get(user=user).user_face_id
    assert f"member-{user.pk}" in collection.users and face_id in collection.faces
    faces_services.member_forget(user_id=user.pk)
    assert f"member-{user.pk}" not in collection.users and face_id not in collection.faces


def test_with_the_member_strategy_no_member_becomes_a_user(settings, colour_emulator, event):
    settings.REKOGNITION_ROUND_STRATEGY = "member"
    engine = engine_get()
    from faces.services.rounds import _round_per_face_users

    assert (
        _round_per_face_users(event_id=event.pk, engine=engine, behind=[object()] * 5, new_faces=[])
        is None
    )
    assert colour_emulator.calls == []


# --- images under AWS's 80 px ----------------------------------------------------------------
def test_a_selfie_whose_face_crop_is_under_80_px_is_enlarged_and_still_matches(
    colour_emulator, event, django_user_model
):
    photo = photo_done(event)
    ann = member_new(django_user_model, event, "ann")
    # A selfie taken from afar: a 30 px face, so the crop with its margin is 60 px square.
    image = Image.new("RGB", (480, 480), "white")
    image.paste(Image.new("RGB", (30, 30), scenarios.colours()[2]), (225, 225))
    selfie_give(ann, jpeg(image), (225 / 480, 225 / 480, 30 / 480, 30 / 480))

    faces_services.member_index(user_id=ann.pk)

    assert Selfie.objects.get(user=ann).status != Selfie.Status.RETAKE
    assert matched_photos(ann) == {photo.pk}
    assert not [c for c in colour_emulator.calls if c.error == "InvalidParameterException"]


def test_a_small_photo_is_enlarged_for_indexing_and_a_thin_strip_is_not_sent(
    colour_emulator, event
):
    small = Image.new("RGB", (70, 70), "white")
    small.paste(Image.new("RGB", (50, 50), scenarios.colours()[1]), (10, 10))
    strip = Image.new("RGB", (3000, 40), "white")
    strip.paste(Image.new("RGB", (30, 30), scenarios.colours()[2]), (100, 5))
    photos = [
        photo_ingest(event=event, upload=uploaded(name, jpeg(image)), uploaded_by=None).photo
        for name, image in [("small.jpg", small), ("strip.jpg", strip)]
    ]

    assert [photo_process(photo_id=p.pk) for p in photos] == [Photo.Status.DONE] * 2

    assert Face.objects.filter(photo=photos[0]).count() == 1
    assert Face.objects.filter(photo=photos[1]).count() == 0
    indexed = [c.error for c in colour_emulator.calls if c.operation == "IndexFaces"]
    assert indexed == ["ResourceNotFoundException", ""]  # the collection made, then one call


# --- the selfie's face, and no other --------------------------------------------------------
def test_a_selfie_in_which_rekognition_finds_no_face_needs_a_new_photo(
    colour_emulator, event, django_user_model, client, admin_client
):
    photo_done(event)
    ann = member_new(django_user_model, event, "ann")
    # dlib saw a face at upload; Rekognition sees none in it.
    selfie_give(ann, jpeg(Image.new("RGB", (480, 480), "white")), (0.4, 0.4, 0.2, 0.2))
    faces_services.member_index(user_id=ann.pk)

    selfie = Selfie.objects.get(user=ann)
    assert selfie.status == Selfie.Status.RETAKE
    assert "no face" in selfie.error
    assert not Match.objects.filter(user=ann).exists()
    assert searches(colour_emulator) == 1
    # A later round does not search with it again.
    faces_services.event_rematch(event_id=event.pk)
    assert searches(colour_emulator) == 1

    client.force_login(ann)
    page = client.get("/me/selfie/").content.decode()
    assert "Needs a new photo" in page
    admin = admin_client.get("/admin/accounts/selfie/?status__exact=retake").content.decode()
    assert "Needs a new photo" in admin and "ann" in admin


def test_a_search_of_another_face_than_the_selfies_is_refused(
    colour_emulator, event, django_user_model
):
    photo_done(event)
    ann = member_new(django_user_model, event, "ann")
    # dlib's face is in the middle, but the only face Rekognition sees there lies in a corner
    # of the crop: person 2's, who is in the photo. It must not be taken for ann.
    image = Image.new("RGB", (480, 480), "white")
    image.paste(Image.new("RGB", (40, 40), scenarios.colours()[2]), (146, 146))
    selfie_give(ann, jpeg(image), (0.4, 0.4, 0.2, 0.2))
    faces_services.member_index(user_id=ann.pk)
    assert Selfie.objects.get(user=ann).status == Selfie.Status.RETAKE
    assert not Match.objects.filter(user=ann).exists()


@pytest.mark.faces
def test_a_larger_poster_face_behind_the_member_is_not_the_one_searched(
    emulator, event, django_user_model, faces_dir
):
    kit, obama = (
        Image.open(faces_dir / "people/kit_harington/kit_1.jpg").convert("RGB"),
        Image.open(faces_dir / "people/obama/obama_1.jpg").convert("RGB"),
    )
    kit.thumbnail((300, 300))
    obama.thumbnail((900, 900))
    # The poster (Obama, three times larger) hangs behind Kit, to the right.
    scene = Image.new("RGB", (1400, 900), (90, 90, 90))
    scene.paste(obama, (1400 - obama.width, 0))
    scene.paste(kit, (40, 900 - kit.height))
    local = LocalEngine(threshold=0.5)
    faces = sorted(local.faces_detect(scene), key=lambda f: f.left)
    assert len(faces) == 2 and faces[1].width > faces[0].width  # the poster is the larger
    kit_box = (faces[0].left, faces[0].top, faces[0].width, faces[0].height)

    photos = {}
    for name, path in (
        ("kit", "people/kit_harington/kit_2.jpg"),
        ("obama", "people/obama/obama_2.jpg"),
    ):
        upload = uploaded(f"{name}.jpg", (faces_dir / path).read_bytes())
        photos[name] = photo_ingest(event=event, upload=upload, uploaded_by=None).photo
        assert photo_process(photo_id=photos[name].pk) == Photo.Status.DONE

    ann = member_new(django_user_model, event, "ann")
    selfie_give(ann, jpeg(scene), kit_box)
    assert faces_services.member_index(user_id=ann.pk)
    assert matched_photos(ann) == {photos["kit"].pk}
    assert Selfie.objects.get(user=ann).status == Selfie.Status.INDEXED
    # The whole selfie would have searched the poster: Obama's photo, not Kit's.
    whole = emulator.search_faces_by_image(
        CollectionId=f"findme-event-{event.pk}",
        Image={"Bytes": jpeg(scene)},
        MaxFaces=10,
        FaceMatchThreshold=95.0,
    )
    hits = {m["Face"]["FaceId"] for m in whole["FaceMatches"]}
    assert set(Face.objects.filter(engine_face_id__in=hits).values_list("photo_id", flat=True)) == {
        photos["obama"].pk
    }


# --- past 4096 matches ------------------------------------------------------------------------
def test_a_member_in_5000_photos_gets_all_5000(colour_emulator, event, django_user_model):
    """SearchFacesByImage returns at most 4096 faces: the 904 it cannot return are searched
    one by one against the member as a Rekognition User, which is deleted afterwards."""
    face = Image.open(io.BytesIO(scenarios.photo_of([0], 0))).convert("RGB")
    photos = Photo.objects.bulk_create(
        [
            Photo(
                event=event,
                sha256=f"{n:064x}",
                original=f"originals/{n}.jpg",
                content_type="image/jpeg",
                size=1,
                status=Photo.Status.DONE,
            )
            for n in range(5000)
        ]
    )
    if photos[0].pk is None:
        photos = list(Photo.objects.filter(event=event).order_by("pk"))
    # The first photo through the services; the other 4,999 straight into the emulator and
    # the Face table, as the services would have left them (the search is what is tested).
    first = faces_services.faces_detect_for_photo(
        event_id=event.pk, photo_id=photos[0].pk, image=face
    )
    faces_services.faces_store(event_id=event.pk, photo_id=photos[0].pk, detected=first)
    face_bytes = rekognition.jpeg_under_limit(face)
    model = Face.objects.get(photo=photos[0])
    rows = []
    for photo in photos[1:]:
        [record] = colour_emulator.index_faces(
            CollectionId=f"findme-event-{event.pk}",
            Image={"Bytes": face_bytes},
            ExternalImageId=f"photo-{photo.pk}",
        )["FaceRecords"]
        rows.append(
            Face(
                photo=photo,
                event=event,
                index=0,
                left=model.left,
                top=model.top,
                width=model.width,
                height=model.height,
                engine="rekognition",
                engine_face_id=record["Face"]["FaceId"],
            )
        )
    Face.objects.bulk_create(rows)
    assert Face.objects.filter(event=event).count() == 5000

    bride = member_new(django_user_model, event, "bride")
    selfie_give(bride, *scenarios.selfie_of(0))
    assert faces_services.member_index(user_id=bride.pk)

    assert Match.objects.filter(user=bride, rejected=False).count() == 5000
    assert colour_emulator.count("SearchFacesByImage") == 1
    assert colour_emulator.count("SearchUsers") == 5000 - 4096
    assert MemberSearch.objects.get(user=bride).faces_through == Face.objects.latest("pk").pk
    # The member's user and its face are gone again: only photo faces are left.
    collection = colour_emulator.collections[f"findme-event-{event.pk}"]
    assert collection.users == {}
    assert len(collection.faces) == 5000


# --- leaks and races ----------------------------------------------------------------------------
def test_a_photo_indexed_while_its_event_is_deleted_leaves_no_collection(
    colour_emulator, event, staff_user
):
    photo_bytes = scenarios.photo_of([0, 1, 2, 3], 1)
    photo = photo_ingest(event=event, upload=uploaded("p.jpg", photo_bytes), uploaded_by=None).photo
    event_id = event.pk
    # The event's deletion and its collection's commit first; the worker indexes after.
    Event.objects.filter(pk=event_id).delete()
    faces_services.event_forget(event_id=event_id)
    image = Image.open(io.BytesIO(photo_bytes)).convert("RGB")
    assert (
        faces_services.faces_detect_for_photo(event_id=event_id, photo_id=photo.pk, image=image)
        == []
    )
    assert colour_emulator.count("CreateCollection") == 1  # IndexFaces made it again...
    assert colour_emulator.collections == {}  # ...and the worker deleted it
    assert not CollectionFace.objects.exists()


def test_the_sweep_deletes_collections_whose_event_is_gone(colour_emulator, event, settings):
    for event_id in (event.pk, event.pk + 100):
        colour_emulator.create_collection(CollectionId=f"findme-event-{event_id}")
    colour_emulator.create_collection(CollectionId="someone-elses")
    assert faces_services.collections_orphaned_sweep() == 1
    assert set(colour_emulator.collections) == {f"findme-event-{event.pk}", "someone-elses"}
    assert faces_services.collections_orphaned_sweep() == 0


def test_a_search_past_4096_killed_before_its_clean_up_is_swept_an_hour_later(
    colour_emulator, event, django_user_model, monkeypatch
):
    monkeypatch.setattr(rekognition, "MAX_MATCHES", 2)  # so 3 photos are "past 4096"
    for n in (1, 100, 200):  # serials far apart: a JPEG keeps them apart
        photo_bytes = scenarios.photo_of([0, 1, 2, 3], n)
        photo = photo_ingest(
            event=event, upload=uploaded(f"{n}.jpg", photo_bytes), uploaded_by=None
        )
        assert photo_process(photo_id=photo.photo.pk) == Photo.Status.DONE
    bride = member_new(django_user_model, event, "bride")
    selfie_give(bride, *scenarios.selfie_of(0))
    with monkeypatch.context() as killed:  # the worker dies before DeleteUser and DeleteFaces
        killed.setattr(colour_emulator, "delete_user", lambda **_: {})
        killed.setattr(colour_emulator, "delete_faces", lambda **_: {"DeletedFaces": []})
        assert faces_services.member_index(user_id=bride.pk)
    assert len(matched_photos(bride)) == 3
    collection = colour_emulator.collections[f"findme-event-{event.pk}"]
    [left] = collection.users
    assert left.startswith(f"member-{bride.pk}-")
    assert len(collection.faces) == 12 + 1  # the photos' faces and the searched selfie's
    colour_emulator.create_user(CollectionId=f"findme-event-{event.pk}", UserId="member-9")

    # Made just now, it may be a search still running: kept.
    faces_services.collections_orphaned_sweep()
    assert set(collection.users) == {left, "member-9"}
    # Made two hours ago: no task runs that long, so it is a leftover.
    made = int(left.split("-")[2])
    older = left.replace(f"-{made}-", f"-{made - 7200}-")
    collection.users[older] = collection.users.pop(left)
    faces_services.collections_orphaned_sweep()
    assert set(collection.users) == {"member-9"}  # a member's own user is never swept
    assert len(collection.faces) == 12
    assert len(matched_photos(bride)) == 3


def test_a_join_racing_the_selfie_pays_for_one_search(colour_emulator, event, django_user_model):
    photo = photo_done(event)
    ann = member_new(django_user_model, event, "ann")
    selfie_give(ann, *scenarios.selfie_of(2))
    assert faces_services.member_index(user_id=ann.pk)
    # The join's own back-match, queued before the selfie was indexed, runs after it.
    faces_services.member_backmatch_request(user_id=ann.pk, event_id=event.pk, dispatch=False)
    faces_services.member_match_event(user_id=ann.pk, event_id=event.pk)
    assert colour_emulator.count("SearchFacesByImage") == 1
    assert matched_photos(ann) == {photo.pk}
    # A new selfie is searched again, though.
    selfie_give(ann, *scenarios.selfie_of(2))
    assert faces_services.member_index(user_id=ann.pk)
    assert colour_emulator.count("SearchFacesByImage") == 2


# --- throttled, paced and capped across workers ---------------------------------------------------
def max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.django_db(transaction=True)
def test_30_percent_throttling_across_3_workers_still_ends_every_photo_done(
    settings, monkeypatch, event, tmp_path
):
    rate, cap = 20, 2
    settings.AWS_REQUESTS_PER_SECOND = rate
    settings.AWS_CONCURRENT_REQUESTS = cap
    settings.REKOGNITION_MAX_RETRIES = 8
    settings.SEMAPHORE_FILE_DIR = str(tmp_path / "slots")
    trace = tmp_path / "pace.trace"
    monkeypatch.setenv("FINDME_PACING_TRACE", str(trace))
    emulator = RekognitionEmulator(
        throttle_rate=0.3, seed=7, latency_s=0.02, detector=scenarios.ColourFaces()
    )
    emulated(settings, monkeypatch, emulator)
    photo_ids = [
        photo_ingest(
            event=event,
            upload=uploaded(f"p{n}.jpg", scenarios.photo_of([n % 50, 1, 2, 3], n)),
            uploaded_by=None,
        ).photo.pk
        for n in range(24)
    ]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            # A worker takes the oldest due photo, as django-q2's messages make it do.
            for _ in range(200):
                left = list(
                    Photo.objects.filter(pk__in=photo_ids)
                    .exclude(status=Photo.Status.DONE)
                    .values_list("pk", flat=True)
                )
                if not left:
                    return
                photo_process(photo_id=left[0])
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    _engines.clear()
    assert not errors, errors
    statuses = set(Photo.objects.filter(pk__in=photo_ids).values_list("status", flat=True))
    assert statuses == {Photo.Status.DONE}
    assert emulator.count(throttled=True) > 0  # throttling did happen...
    assert emulator.count("IndexFaces") == 24  # ...and each photo was billed once
    assert emulator.peak_in_flight <= cap
    slots = [float(line.split()[0]) for line in trace.read_text().splitlines()]
    assert len(slots) == len(emulator.calls)  # every attempt waited for its turn
    assert max_in_window(slots) <= rate


# --- recall and precision on real faces, against the local engine --------------------------------
PEOPLE = ("alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie")


def engine_matches(event, django_user_model, faces_dir: Path, prefix: str) -> set[tuple[str, str]]:
    """Every (photo file, person) pair the current engine matches: the first photo of each
    person is their selfie, the other people photos and the groups are the event's photos."""
    users = {}
    for person in PEOPLE:
        user = member_new(django_user_model, event, f"{prefix}-{person}")
        users[user.pk] = person
        path = sorted((faces_dir / "people" / person).glob("*.jpg"))[0]
        faces_services.selfie_register(
            user=user,
            upload=SimpleUploadedFile("me.jpg", path.read_bytes(), "image/jpeg"),
            consent="true",
        )
        assert faces_services.member_index(user_id=user.pk)
    names = {}
    for path in sorted((faces_dir / "people").glob("*/*.jpg"))[:] + sorted(
        (faces_dir / "groups").glob("*.jpg")
    ):
        if path.name.endswith("_1.jpg"):
            continue
        photo = photo_ingest(
            event=event, upload=uploaded(path.name, path.read_bytes()), uploaded_by=None
        ).photo
        names[photo.pk] = path.name
        assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    faces_services.event_rematch(event_id=event.pk)
    return {
        (names[p], users[u])
        for p, u in Match.objects.filter(event=event, rejected=False).values_list(
            "photo_id", "user_id"
        )
    }


@pytest.mark.faces
@pytest.mark.django_db(transaction=True)
def test_recall_and_precision_on_real_faces_match_the_local_engine(
    settings, monkeypatch, django_user_model, staff_user, faces_dir, faces_truth
):
    truth = set()
    for person in PEOPLE:
        for path in sorted((faces_dir / "people" / person).glob("*.jpg"))[1:]:
            truth.add((path.name, person))
    for name, entry in faces_truth["groups"].items():
        truth.update((name, person) for person in entry["people"] if person in PEOPLE)

    settings.FACE_ENGINE = "local"
    _engines.clear()
    local_event = Event.objects.create(name="Local", slug="local", created_by=staff_user)
    local = engine_matches(local_event, django_user_model, faces_dir, "l")

    settings.REKOGNITION_MATCH_MAX_WAIT_S = 0
    settings.AWS_REQUESTS_PER_SECOND = 0
    emulator = RekognitionEmulator()
    emulated(settings, monkeypatch, emulator)
    cloud_event = Event.objects.create(name="Cloud", slug="cloud", created_by=staff_user)
    cloud = engine_matches(cloud_event, django_user_model, faces_dir, "r")
    _engines.clear()

    def scores(found: set) -> tuple[float, float]:
        return len(found & truth) / len(truth), len(found & truth) / max(1, len(found))

    (local_recall, local_precision), (cloud_recall, cloud_precision) = scores(local), scores(cloud)
    print(  # noqa: T201 - shown with -s: the figures behind the assertion
        f"local recall {local_recall:.2f} precision {local_precision:.2f}; "
        f"emulated rekognition recall {cloud_recall:.2f} precision {cloud_precision:.2f}"
    )
    assert cloud_precision == 1.0
    assert cloud_recall >= local_recall - 0.1
