"""The Rekognition engine through the real services and tasks, against botocore's Stubber.

moto implements none of Rekognition's face operations; the Stubber validates every request (and
every canned response) against the real service model, so a mistyped parameter fails here. The
Stubber answers before botocore's retry loop: a stubbed ThrottlingException is what the task sees
once botocore's own retries are exhausted.
"""

from __future__ import annotations

import io
import os
import uuid

import pytest
from botocore.stub import ANY, Stubber
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Sum
from django.utils import timezone
from django_q.models import Schedule
from PIL import Image

from accounts.models import Selfie
from accounts.services import selfie_store
from core import jobs
from events.models import Event, Membership
from faces import services as faces_services
from faces import tasks as faces_tasks
from faces.engines.rekognition import BILLABLE, RekognitionEngine
from faces.models import CollectionFace, EngineCall, Face, Match, MemberSearch
from faces.services.engines import _engines, engine_build, engine_get
from photos import services as photos_services
from photos.models import Photo
from photos.services import photo_ingest, photo_process, photo_reprocess, photos_delete
from tests.conftest import jpeg_bytes, uploaded

pytestmark = pytest.mark.django_db

THRESHOLD = 95.0


@pytest.fixture(autouse=True)
def _retries_at_once(settings):
    """Retries here wait no back-off (the back-off itself is tested in tests/photos/test_tasks)."""
    settings.TASK_RETRY_BASE_S = 0


@pytest.fixture
def engine(settings, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings.FACE_ENGINE = "rekognition"
    settings.REKOGNITION_REGION = "eu-west-1"
    settings.REKOGNITION_COLLECTION_PREFIX = "findme"
    settings.REKOGNITION_MATCH_THRESHOLD = THRESHOLD
    settings.REKOGNITION_MATCH_WINDOW_S = 60
    # A round runs when it is called: when rounds run is tested with the emulator
    # (tests/faces/test_rekognition_emulated.py).
    settings.REKOGNITION_MATCH_MAX_WAIT_S = 0
    # The Stubber answers once per response given: a throttled call is not tried again here,
    # so that what the task does when the engine's retries are spent is what is tested.
    settings.REKOGNITION_MAX_RETRIES = 0
    settings.AWS_REQUESTS_PER_SECOND = 0
    _engines.clear()
    built = engine_get()
    assert isinstance(built, RekognitionEngine)
    yield built
    _engines.clear()


@pytest.fixture
def stub(engine):
    stubber = Stubber(engine.client)
    stubber.activate()
    yield stubber
    stubber.deactivate()


# --- helpers ------------------------------------------------------------------------------------
def face_id() -> str:
    return str(uuid.uuid4())


def box(i: int) -> dict[str, float]:
    return {"Left": 0.05 + 0.22 * i, "Top": 0.3, "Width": 0.15, "Height": 0.2}


def index_response(photo_id: int, face_ids: list[str]) -> dict:
    return {
        "FaceRecords": [
            {
                "Face": {
                    "FaceId": fid,
                    "BoundingBox": box(i),
                    "ImageId": str(uuid.uuid4()),
                    "ExternalImageId": f"photo-{photo_id}",
                    "Confidence": 99.9,
                },
                "FaceDetail": {"BoundingBox": box(i), "Confidence": 99.9},
            }
            for i, fid in enumerate(face_ids)
        ],
        "FaceModelVersion": "7.0",
        "UnindexedFaces": [],
    }


def index_params(event: Event, photo_id: int) -> dict:
    return {
        "CollectionId": f"findme-event-{event.pk}",
        "Image": {"Bytes": ANY},
        "ExternalImageId": f"photo-{photo_id}",
        "MaxFaces": 100,
        "QualityFilter": "AUTO",
    }


def search_params(event: Event) -> dict:
    return {
        "CollectionId": f"findme-event-{event.pk}",
        "Image": {"Bytes": ANY},
        "MaxFaces": 4096,
        "FaceMatchThreshold": THRESHOLD,
    }


def search_response(matches: list[tuple[str, float]]) -> dict:
    return {
        "SearchedFaceBoundingBox": box(0),
        "SearchedFaceConfidence": 99.9,
        "FaceMatches": [
            {
                "Similarity": similarity,
                "Face": {"FaceId": fid, "BoundingBox": box(0), "Confidence": 99.9},
            }
            for fid, similarity in matches
        ],
        "FaceModelVersion": "7.0",
    }


def photo_new(event: Event, n: int) -> Photo:
    # Noise: flat colours close to each other can encode to the very same JPEG bytes.
    buffer = io.BytesIO()
    Image.frombytes("RGB", (48, 32), os.urandom(48 * 32 * 3)).save(buffer, format="JPEG")
    upload = uploaded(f"p{n}.jpg", buffer.getvalue(), "image/jpeg")
    return photo_ingest(event=event, upload=upload, uploaded_by=None).photo


def member_new(django_user_model, event: Event, name: str):
    user = django_user_model.objects.create_user(username=name, password="a-long-passphrase")
    Membership.objects.create(user=user, event=event)
    return user


def selfie_give(user) -> None:
    upload = SimpleUploadedFile("selfie.jpg", jpeg_bytes((120, 160), (180, 140, 120)), "image/jpeg")
    selfie_store(user=user, upload=upload)


def calls(operation: str) -> int:
    return (
        EngineCall.objects.filter(engine="rekognition", operation=operation)
        .values_list("count", flat=True)
        .first()
        or 0
    )


def billable_total() -> int:
    total = EngineCall.objects.filter(engine="rekognition", operation__in=BILLABLE).aggregate(
        total=Sum("count")
    )["total"]
    return total or 0


def matched_photos(user) -> set[int]:
    return set(Match.objects.filter(user=user, rejected=False).values_list("photo_id", flat=True))


def first_photo_stubs(stub: Stubber, event: Event, photo: Photo, fids: list[str]) -> None:
    """The event's first photo: no collection yet, so it is created and the call repeated."""
    stub.add_client_error(
        "index_faces",
        service_error_code="ResourceNotFoundException",
        http_status_code=400,
        expected_params=index_params(event, photo.pk),
    )
    stub.add_response(
        "create_collection",
        {"StatusCode": 200, "CollectionArn": "arn:x", "FaceModelVersion": "7.0"},
        {"CollectionId": f"findme-event-{event.pk}"},
    )
    stub.add_response("index_faces", index_response(photo.pk, fids), index_params(event, photo.pk))


# --- the call-count scenario --------------------------------------------------------------------
def test_burst_of_100_photos_and_50_members_costs_150_billable_calls(
    engine, stub, event, django_user_model, django_capture_on_commit_callbacks
):
    """100 photos of 4 faces in one burst; 25 members registered before it, 25 after.

    Face j of photo p shows member (4p + j) % 50, so everyone is in 8 photos. Each member's
    search also returns a look-alike: the first face of the next member, at a lower similarity,
    which must never win over the face's real owner.
    """
    members = [member_new(django_user_model, event, f"m{i:02d}") for i in range(50)]
    before, after = members[:25], members[25:]
    for user in before:  # indexed while the event has no face yet: no search to pay for
        selfie_give(user)
        assert faces_services.member_index(user_id=user.pk) is True
    assert billable_total() == 0
    assert MemberSearch.objects.filter(event=event).count() == 25

    photos = [photo_new(event, n) for n in range(100)]
    face_ids = {p.pk: [face_id() for _ in range(4)] for p in photos}
    owner = {}  # FaceId -> member index
    truth: dict[int, set[int]] = {i: set() for i in range(50)}
    for n, photo in enumerate(photos):
        for j, fid in enumerate(face_ids[photo.pk]):
            owner[fid] = (4 * n + j) % 50
            truth[(4 * n + j) % 50].add(photo.pk)
    own_faces = {i: [f for f, o in owner.items() if o == i] for i in range(50)}

    def member_search_stub(i: int) -> None:
        lookalike = own_faces[(i + 1) % 50][0]
        stub.add_response(
            "search_faces_by_image",
            search_response([(f, 99.5) for f in own_faces[i]] + [(lookalike, 96.0)]),
            search_params(event),
        )

    with django_capture_on_commit_callbacks(execute=True):
        for n, photo in enumerate(photos):
            if n == 0:
                first_photo_stubs(stub, event, photo, face_ids[photo.pk])
            else:
                stub.add_response(
                    "index_faces",
                    index_response(photo.pk, face_ids[photo.pk]),
                    index_params(event, photo.pk),
                )
            assert photo_process(photo_id=photo.pk) == Photo.Status.DONE

    assert Face.objects.filter(event=event, engine="rekognition").count() == 400
    assert CollectionFace.objects.filter(event=event).count() == 400
    # Matching waits for the window: nothing matched yet, one round scheduled for the burst.
    assert Match.objects.count() == 0
    rounds = Schedule.objects.filter(func="faces.tasks.event_rematch")
    assert rounds.count() == 1
    assert rounds.get().args == f"({event.pk},)"

    for i in range(25):  # the round searches the members registered before the burst, in order
        member_search_stub(i)
    assert faces_tasks.event_rematch(event.pk) == 25
    # A second round finds everyone searched through the newest face: no call.
    assert faces_tasks.event_rematch(event.pk) == 0

    for i, user in enumerate(after, start=25):  # each searched once, at enrolment
        selfie_give(user)
        member_search_stub(i)
        assert faces_services.member_index(user_id=user.pk) is True
    assert faces_tasks.event_rematch(event.pk) == 0
    stub.assert_no_pending_responses()

    assert calls("IndexFaces") == 100
    assert calls("SearchFacesByImage") == 50
    assert billable_total() == 150 <= 170
    for i, user in enumerate(members):
        assert matched_photos(user) == truth[i], i
    # Each face went to its owner, never to the look-alike.
    for match in Match.objects.filter(rejected=False).select_related("face"):
        assert owner[match.face.engine_face_id] == members.index(match.user)


# --- idempotence --------------------------------------------------------------------------------
def test_reprocessing_a_photo_deletes_its_old_vectors_before_indexing_again(engine, stub, event):
    photo = photo_new(event, 1)
    first = [face_id(), face_id()]
    first_photo_stubs(stub, event, photo, first)
    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE

    assert photo_reprocess(photo_id=photo.pk)
    second = [face_id(), face_id()]
    stub.add_response(
        "delete_faces",
        {"DeletedFaces": sorted(first)},
        {"CollectionId": f"findme-event-{event.pk}", "FaceIds": sorted(first)},
    )
    stub.add_response(
        "index_faces", index_response(photo.pk, second), index_params(event, photo.pk)
    )
    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    stub.assert_no_pending_responses()

    assert set(Face.objects.filter(photo=photo).values_list("engine_face_id", flat=True)) == set(
        second
    )
    assert set(
        CollectionFace.objects.filter(photo_id=photo.pk).values_list("face_id", flat=True)
    ) == set(second)
    assert calls("IndexFaces") == 2
    assert calls("DeleteFaces") == 0  # not billed per call, so not counted


def test_vectors_indexed_by_a_run_that_failed_later_are_deleted_by_the_rerun(
    engine, stub, event, monkeypatch
):
    photo = photo_new(event, 1)
    orphans = [face_id()]
    first_photo_stubs(stub, event, photo, orphans)

    def store_fails(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(faces_services, "faces_store", store_fails)
    assert photo_process(photo_id=photo.pk) == Photo.Status.QUEUED
    monkeypatch.undo()
    assert not Face.objects.filter(photo=photo).exists()

    fresh = [face_id()]
    stub.add_response(
        "delete_faces",
        {"DeletedFaces": orphans},
        {"CollectionId": f"findme-event-{event.pk}", "FaceIds": orphans},
    )
    stub.add_response("index_faces", index_response(photo.pk, fresh), index_params(event, photo.pk))
    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    stub.assert_no_pending_responses()
    assert list(CollectionFace.objects.values_list("face_id", flat=True)) == fresh


# --- throttling ---------------------------------------------------------------------------------
@pytest.mark.parametrize("code", ["ThrottlingException", "ProvisionedThroughputExceededException"])
def test_throttled_photo_is_queued_again_then_done(engine, stub, event, code):
    photo = photo_new(event, 1)
    stub.add_client_error(
        "index_faces",
        service_error_code=code,
        http_status_code=400,
        expected_params=index_params(event, photo.pk),
    )
    assert photo_process(photo_id=photo.pk) == Photo.Status.QUEUED
    photo.refresh_from_db()
    assert photo.status == Photo.Status.QUEUED
    assert photo.attempts == 1
    assert code in photo.error
    assert not Face.objects.filter(photo=photo).exists()

    first_photo_stubs(stub, event, photo, [face_id()])
    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    stub.assert_no_pending_responses()
    photo.refresh_from_db()
    assert (photo.status, photo.face_count, photo.attempts) == (Photo.Status.DONE, 1, 2)
    assert calls("IndexFaces") == 1  # the throttled call was not billed


def test_throttled_round_searches_only_the_members_it_missed_when_rerun(
    engine, stub, event, django_user_model
):
    photo = photo_new(event, 1)
    fids = [face_id(), face_id()]
    first_photo_stubs(stub, event, photo, fids)
    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    ann, bob = (member_new(django_user_model, event, n) for n in ("ann", "bob"))
    for user in (ann, bob):  # indexed directly: no search at enrolment in this test
        selfie_give(user)
        Selfie.objects.filter(user=user).update(
            status=Selfie.Status.INDEXED, indexed_at=photo.created_at
        )

    stub.add_response(
        "search_faces_by_image", search_response([(fids[0], 99.0)]), search_params(event)
    )
    stub.add_client_error(
        "search_faces_by_image",
        service_error_code="ThrottlingException",
        http_status_code=400,
        expected_params=search_params(event),
    )
    with pytest.raises(Exception, match="ThrottlingException"):
        faces_tasks.event_rematch(event.pk)
    assert matched_photos(ann) == {photo.pk}
    # The failed round put the next one on the schedule.
    assert Schedule.objects.filter(func="faces.tasks.event_rematch").count() == 1

    stub.add_response(
        "search_faces_by_image", search_response([(fids[1], 98.0)]), search_params(event)
    )
    assert faces_tasks.event_rematch(event.pk) == 1
    stub.assert_no_pending_responses()
    assert matched_photos(bob) == {photo.pk}
    assert calls("SearchFacesByImage") == 2


# --- forgetting ---------------------------------------------------------------------------------
def test_deleting_face_data_leaves_no_vector_of_the_member_at_aws(
    engine, stub, event, django_user_model
):
    """Selfies are searched with, never indexed: AWS holds no vector of a member, so deleting
    their face data needs no call (the Stubber fails any call it was not given)."""
    photo = photo_new(event, 1)
    fids = [face_id()]
    first_photo_stubs(stub, event, photo, fids)
    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    ann = member_new(django_user_model, event, "ann")
    selfie_give(ann)
    stub.add_response(
        "search_faces_by_image", search_response([(fids[0], 99.0)]), search_params(event)
    )
    assert faces_services.member_index(user_id=ann.pk)
    assert matched_photos(ann) == {photo.pk}
    selfie = Selfie.objects.get(user=ann)
    assert (selfie.engine, selfie.engine_ref, selfie.descriptor) == ("rekognition", "", None)
    # Every vector in the collection belongs to a photo.
    assert set(CollectionFace.objects.values_list("face_id", flat=True)) == set(fids)

    faces_services.member_forget(user_id=ann.pk)
    stub.assert_no_pending_responses()
    assert not Selfie.objects.filter(user=ann).exists()
    assert not Match.objects.filter(user=ann).exists()
    assert set(CollectionFace.objects.values_list("face_id", flat=True)) == set(fids)


def test_deleting_an_event_deletes_its_collection(
    engine, stub, event, monkeypatch, django_capture_on_commit_callbacks
):
    photo = photo_new(event, 1)
    first_photo_stubs(stub, event, photo, [face_id()])
    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    queued = []
    monkeypatch.setattr(jobs, "enqueue", lambda *args: queued.append(args) or True)
    event_id = event.pk
    with django_capture_on_commit_callbacks(execute=True):
        photos_services.events_delete(event_ids=[event_id])
    assert ("faces.tasks.event_forget", event_id) in queued

    stub.add_response(
        "delete_collection", {"StatusCode": 200}, {"CollectionId": f"findme-event-{event_id}"}
    )
    faces_tasks.event_forget(event_id)
    # Run twice (a retried task): the collection is already gone, and that is fine.
    stub.add_client_error(
        "delete_collection",
        service_error_code="ResourceNotFoundException",
        http_status_code=400,
        expected_params={"CollectionId": f"findme-event-{event_id}"},
    )
    faces_tasks.event_forget(event_id)
    stub.assert_no_pending_responses()
    assert not CollectionFace.objects.exists()


# --- deleted photos ------------------------------------------------------------------------------
def delete_params(event: Event, fids: list[str]) -> dict:
    return {"CollectionId": f"findme-event-{event.pk}", "FaceIds": sorted(fids)}


def records_settle() -> None:
    """Time passes: the records are older than any task could still be storing their faces."""
    CollectionFace.objects.update(created_at=timezone.now() - timezone.timedelta(hours=1))


def test_deleting_a_photo_deletes_its_vectors_and_only_its_own(
    engine, stub, event, monkeypatch, django_capture_on_commit_callbacks
):
    kept, gone = photo_new(event, 1), photo_new(event, 2)
    kept_fids, gone_fids = [face_id(), face_id()], [face_id(), face_id(), face_id()]
    first_photo_stubs(stub, event, kept, kept_fids)
    stub.add_response(
        "index_faces", index_response(gone.pk, gone_fids), index_params(event, gone.pk)
    )
    assert photo_process(photo_id=kept.pk) == Photo.Status.DONE
    assert photo_process(photo_id=gone.pk) == Photo.Status.DONE

    queued = []
    monkeypatch.setattr(jobs, "enqueue", lambda *args: queued.append(args) or True)
    with django_capture_on_commit_callbacks(execute=True):
        assert photos_delete(photo_ids=[gone.pk]) == 1
    assert queued == [("faces.tasks.photo_vectors_sweep",)]
    records_settle()

    stub.add_response(
        "delete_faces", {"DeletedFaces": sorted(gone_fids)}, delete_params(event, gone_fids)
    )
    assert faces_tasks.photo_vectors_sweep() == 3
    # Run twice (a retried task): nothing is left to delete, so no call is made.
    assert faces_tasks.photo_vectors_sweep() == 0
    stub.assert_no_pending_responses()
    assert set(CollectionFace.objects.values_list("face_id", flat=True)) == set(kept_fids)
    assert set(Face.objects.values_list("engine_face_id", flat=True)) == set(kept_fids)


def test_sweep_finds_photos_deleted_behind_the_services_back(engine, stub, event):
    """A shell's queryset delete, or a worker that indexed a photo as it was being deleted:
    the records outlive the photo, and the periodic sweep deletes their vectors."""
    photos = [photo_new(event, n) for n in range(3)]
    fids = {p.pk: [face_id()] for p in photos}
    first_photo_stubs(stub, event, photos[0], fids[photos[0].pk])
    for photo in photos[1:]:
        stub.add_response(
            "index_faces", index_response(photo.pk, fids[photo.pk]), index_params(event, photo.pk)
        )
    for photo in photos:
        assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    Photo.objects.filter(pk__in=[photos[0].pk, photos[2].pk]).delete()
    records_settle()

    gone = fids[photos[0].pk] + fids[photos[2].pk]
    stub.add_response("delete_faces", {"DeletedFaces": sorted(gone)}, delete_params(event, gone))
    assert faces_tasks.photo_vectors_sweep() == 2
    stub.assert_no_pending_responses()
    assert list(CollectionFace.objects.values_list("face_id", flat=True)) == fids[photos[1].pk]


def one_photo_indexed_then_deleted(stub: Stubber, event: Event, error: str, status: int):
    """A photo indexed with one face, then deleted; the first DeleteFaces fails with ``error``."""
    photo = photo_new(event, 1)
    fids = [face_id()]
    first_photo_stubs(stub, event, photo, fids)
    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    Photo.objects.filter(pk=photo.pk).delete()
    records_settle()
    stub.add_client_error(
        "delete_faces",
        service_error_code=error,
        http_status_code=status,
        expected_params=delete_params(event, fids),
    )
    return fids


def test_sweep_forgets_records_whose_collection_is_already_gone(engine, stub, event):
    one_photo_indexed_then_deleted(stub, event, "ResourceNotFoundException", 400)
    assert faces_tasks.photo_vectors_sweep() == 1
    stub.assert_no_pending_responses()
    assert not CollectionFace.objects.exists()


def test_a_failed_delete_keeps_the_records_for_the_next_sweep(engine, stub, event):
    fids = one_photo_indexed_then_deleted(stub, event, "InternalServerError", 500)
    with pytest.raises(Exception, match="InternalServerError"):
        faces_tasks.photo_vectors_sweep()
    assert list(CollectionFace.objects.values_list("face_id", flat=True)) == fids

    stub.add_response("delete_faces", {"DeletedFaces": fids}, delete_params(event, fids))
    assert faces_tasks.photo_vectors_sweep() == 1
    stub.assert_no_pending_responses()
    assert not CollectionFace.objects.exists()


def test_the_sweep_leaves_vectors_whose_photo_may_be_storing_its_faces(engine, stub, event):
    """IndexFaces returned, the Face rows are not stored yet: a young record without Face rows
    is a photo in the middle of its task, not an orphan."""
    photo = photo_new(event, 1)
    fids = [face_id()]
    first_photo_stubs(stub, event, photo, fids)
    faces_services.faces_detect_for_photo(
        event_id=event.pk, photo_id=photo.pk, image=Image.new("RGB", (64, 48))
    )
    assert list(CollectionFace.objects.values_list("face_id", flat=True)) == fids
    assert faces_tasks.photo_vectors_sweep() == 0  # no call: the stub would fail on one
    stub.assert_no_pending_responses()
    assert CollectionFace.objects.count() == 1


def test_the_sweep_is_scheduled():
    schedule = Schedule.objects.get(func="faces.tasks.photo_vectors_sweep")
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        Schedule.MINUTES,
        10,
        -1,
    )


# --- selfie check, client -----------------------------------------------------------------------
def test_selfie_check_uses_detect_faces_and_keeps_fractional_boxes(engine, stub):
    stub.add_response(
        "detect_faces",
        {
            "FaceDetails": [
                {"BoundingBox": {"Left": -0.02, "Top": 0.1, "Width": 0.3, "Height": 0.4}},
                {"BoundingBox": {"Left": 0.5, "Top": 0.1, "Width": 0.2, "Height": 0.3}},
            ]
        },
        {"Image": {"Bytes": ANY}},
    )
    found = engine.faces_detect(Image.new("RGB", (200, 100), (120, 120, 120)))
    stub.assert_no_pending_responses()
    assert [(f.left, f.top) for f in found] == [(0.0, 0.1), (0.5, 0.1)]
    assert found[0].width == pytest.approx(0.28)
    assert calls("DetectFaces") == 1


def test_client_is_built_lazily_with_timeouts_and_one_attempt_per_paced_turn(settings):
    engine = engine_build("rekognition")
    assert engine._client is None  # nothing built at construction, let alone at import
    config = engine.client.meta.config
    assert config.connect_timeout == settings.AWS_CONNECT_TIMEOUT_S
    assert config.read_timeout == settings.AWS_READ_TIMEOUT_S
    # The engine retries itself, each attempt at a turn of the fleet-wide rate.
    assert config.retries["total_max_attempts"] == 1
    assert engine.max_retries == settings.REKOGNITION_MAX_RETRIES
    assert engine.client.meta.region_name == settings.REKOGNITION_REGION


def test_sweep_schedules_a_round_only_for_events_with_members_behind(
    engine, stub, event, django_user_model
):
    photo = photo_new(event, 1)
    first_photo_stubs(stub, event, photo, [face_id()])
    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    assert faces_tasks.events_rematch_sweep() == 0  # no member at all
    ann = member_new(django_user_model, event, "ann")
    selfie_give(ann)
    Selfie.objects.filter(user=ann).update(
        status=Selfie.Status.INDEXED, indexed_at=photo.created_at
    )
    assert faces_tasks.events_rematch_sweep() == 1
    assert faces_tasks.events_rematch_sweep() == 0  # already scheduled within the window
    assert Schedule.objects.filter(func="faces.tasks.event_rematch").count() == 1


def test_a_round_past_its_time_budget_leaves_the_rest_to_an_immediate_next_round(
    engine, stub, event, django_user_model, settings
):
    photo = photo_new(event, 1)
    first_photo_stubs(stub, event, photo, [face_id()])
    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    ann = member_new(django_user_model, event, "ann")
    selfie_give(ann)
    Selfie.objects.filter(user=ann).update(
        status=Selfie.Status.INDEXED, indexed_at=photo.created_at
    )
    settings.PHOTO_TASK_TIMEOUT = -2  # a budget already spent
    assert faces_tasks.event_rematch(event.pk) == 0
    nxt = Schedule.objects.get(func="faces.tasks.event_rematch")
    assert nxt.next_run <= timezone.now()  # due at once, not a window later
    stub.assert_no_pending_responses()
    assert not MemberSearch.objects.filter(user=ann).exists()


@pytest.mark.faces
def test_selfie_check_makes_no_aws_call(stub, attendee_client, attendee, faces_dir):
    # The stubber holds no response: any Rekognition call would fail the request.
    data = (faces_dir / "people/kit_harington/kit_1.jpg").read_bytes()
    answer = attendee_client.put(
        "/api/me/selfie/",
        {"file": SimpleUploadedFile("me.jpg", data, content_type="image/jpeg"), "consent": "true"},
        format="multipart",
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["faces_found"] == 1
    stub.assert_no_pending_responses()
    assert not EngineCall.objects.filter(engine="rekognition").exists()


# --- past 4096 matches and the users it takes: the request shapes -------------------------------
def test_the_leftover_sweep_lists_users_page_by_page_and_deletes_only_old_search_users(
    engine, stub
):
    collection = "findme-event-7"
    engine.clock = lambda: 1_800_000_000.0
    old, fresh = face_id(), face_id()
    stale_user = f"member-5-{1_800_000_000 - 3601}-{old}"
    first_page = [
        {"UserId": "member-5", "UserStatus": "ACTIVE"},  # a member's own: never swept
        {"UserId": stale_user, "UserStatus": "ACTIVE"},
    ]
    second_page = [
        {"UserId": f"member-6-{1_800_000_000 - 60}-{fresh}", "UserStatus": "ACTIVE"},
        {"UserId": "someone-elses", "UserStatus": "ACTIVE"},
    ]
    stub.add_response(
        "list_users",
        {"Users": first_page, "NextToken": "page-2"},
        {"CollectionId": collection, "MaxResults": 500},
    )
    stub.add_response(
        "list_users",
        {"Users": second_page},
        {"CollectionId": collection, "MaxResults": 500, "NextToken": "page-2"},
    )
    stub.add_response("delete_user", {}, {"CollectionId": collection, "UserId": stale_user})
    stub.add_response(
        "delete_faces", {"DeletedFaces": [old]}, {"CollectionId": collection, "FaceIds": [old]}
    )

    assert engine.search_users_leftover_delete(event_id=7, older_than_s=3600) == 1
    stub.assert_no_pending_responses()


def test_a_full_search_goes_on_face_by_face_through_a_user_deleted_afterwards(engine, stub):
    """4096 matches is SearchFacesByImage's ceiling: the faces it did not return are searched
    with SearchUsers against the member as a User, made for the time of it and deleted."""
    from faces.engines.base import FaceRecord, MemberRecord

    collection = "findme-event-7"
    fids = [face_id() for _ in range(4098)]
    faces = [
        FaceRecord(id=i, photo_id=i, descriptor=None, engine_face_id=f) for i, f in enumerate(fids)
    ]
    member = MemberRecord(
        user_id=5,
        descriptor=None,
        engine_ref="",
        selfie=lambda: Image.new("RGB", (200, 200), (150, 120, 100)),
        selfie_face=(0.25, 0.25, 0.5, 0.5),
    )
    full = search_response([(f, 99.0) for f in fids[:4096]])
    full["SearchedFaceBoundingBox"] = {"Left": 0.3, "Top": 0.3, "Width": 0.4, "Height": 0.4}
    stub.add_response(
        "search_faces_by_image",
        full,
        {
            "CollectionId": collection,
            "Image": {"Bytes": ANY},
            "MaxFaces": 4096,
            "FaceMatchThreshold": THRESHOLD,
        },
    )
    selfie_face = face_id()
    stub.add_response(
        "index_faces",
        index_response(0, [selfie_face]),
        {
            "CollectionId": collection,
            "Image": {"Bytes": ANY},
            "ExternalImageId": "member-5",
            "MaxFaces": 1,
            "QualityFilter": "AUTO",
        },
    )
    engine.clock = lambda: 1_800_000_000.9
    user = f"member-5-1800000000-{selfie_face}"  # its time in its name, for the leftover sweep
    stub.add_response("create_user", {}, {"CollectionId": collection, "UserId": user})
    stub.add_response(
        "associate_faces",
        {"AssociatedFaces": [{"FaceId": selfie_face}], "UserStatus": "ACTIVE"},
        {"CollectionId": collection, "UserId": user, "FaceIds": [selfie_face]},
    )
    for fid, similarity in sorted(zip(fids[4096:], (98.0, 60.0), strict=True)):
        matches = (
            [{"Similarity": similarity, "User": {"UserId": user, "UserStatus": "ACTIVE"}}]
            if similarity >= THRESHOLD
            else []
        )
        stub.add_response(
            "search_users",
            {"UserMatches": matches, "FaceModelVersion": "7.0", "SearchedFace": {"FaceId": fid}},
            {
                "CollectionId": collection,
                "FaceId": fid,
                "UserMatchThreshold": THRESHOLD,
                "MaxUsers": 500,
            },
        )
    stub.add_response("delete_user", {}, {"CollectionId": collection, "UserId": user})
    stub.add_response(
        "delete_faces",
        {"DeletedFaces": [selfie_face]},
        {"CollectionId": collection, "FaceIds": [selfie_face]},
    )
    found = engine.member_candidates(event_id=7, member=member, faces=faces)
    stub.assert_no_pending_responses()
    assert sorted(c.face_id for c in found) == list(range(4097))  # 4096, and one more of two


def test_the_searched_face_must_be_the_selfies(engine, stub):
    from faces.engines.base import FaceRecord, MemberRecord, SelfieUnusable

    member = MemberRecord(
        user_id=5,
        descriptor=None,
        engine_ref="",
        selfie=lambda: Image.new("RGB", (200, 200), (150, 120, 100)),
        selfie_face=(0.25, 0.25, 0.5, 0.5),
    )
    answer = search_response([])
    answer["SearchedFaceBoundingBox"] = {"Left": 0.0, "Top": 0.0, "Width": 0.2, "Height": 0.2}
    stub.add_response(
        "search_faces_by_image",
        answer,
        {
            "CollectionId": "findme-event-7",
            "Image": {"Bytes": ANY},
            "MaxFaces": 4096,
            "FaceMatchThreshold": THRESHOLD,
        },
    )
    with pytest.raises(SelfieUnusable):
        engine.member_candidates(
            event_id=7,
            member=member,
            faces=[FaceRecord(id=1, photo_id=1, descriptor=None, engine_face_id=face_id())],
        )
    stub.assert_no_pending_responses()


def test_orphaned_collections_are_listed_page_by_page(engine, stub):
    stub.add_response(
        "list_collections",
        {"CollectionIds": ["findme-event-1", "other"], "NextToken": "t"},
        {"MaxResults": 1000},
    )
    stub.add_response(
        "list_collections",
        {"CollectionIds": ["findme-event-22"]},
        {"MaxResults": 1000, "NextToken": "t"},
    )
    assert engine.collections_list() == [1, 22]
    stub.assert_no_pending_responses()
