"""Many references per member and clusters of unknown faces, on generated descriptors whose
distances are set exactly: each rule of faces.services.references and .clusters in isolation.

Points are built in orthogonal directions around a selfie ``s`` at the origin's offset, so that
every distance below is what its comment says (to float32 precision)."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import transaction
from django.utils import timezone

from accounts.models import Selfie
from core.errors import ApplicationError
from core.generations import user_generation
from events.models import Event, Membership
from faces.engines.base import DetectedFace
from faces.models import Cluster, Face, FaceSettle, Match
from faces.selectors import cluster_faces, cluster_list
from faces.services import (
    cluster_assign,
    event_settle,
    events_settle_sweep,
    face_assign,
    faces_store,
    match_reject,
)
from photos.models import Photo

pytestmark = pytest.mark.django_db

DIM = 128


def axis(k: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float64)
    v[k] = 1.0
    return v


# Every point sits on a common base, away from zero, like real descriptors.
BASE = np.full(DIM, 0.08)
SELFIE = BASE.copy()


def point(*parts: tuple[int, float]) -> np.ndarray:
    v = SELFIE.copy()
    for k, amount in parts:
        v = v + amount * axis(k)
    return v


def at(a: float, b: float, c: float) -> tuple[float, float]:
    """(x, y) of a point at distance b from the selfie and c from a reference at distance a
    along axis 1 (the reference is at x = a)."""
    x = (a * a + b * b - c * c) / (2 * a)
    return x, float(np.sqrt(b * b - x * x))


def blob(v: np.ndarray) -> bytes:
    return v.astype(np.float32).tobytes()


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.FACE_ENGINE = "local"
    settings.FACE_MATCH_THRESHOLD = 0.5
    settings.FACE_REFERENCE_DISTANCE = 0.4
    settings.FACE_SELFIE_LIMIT = 0.6
    settings.FACE_CLUSTER_THRESHOLD = 0.5


class Scene:
    def __init__(self, event: Event) -> None:
        self.event = event
        self.count = 0

    def member(self, django_user_model, name: str, selfie: np.ndarray):
        user = django_user_model.objects.create_user(username=name, password="x")
        Membership.objects.create(user=user, event=self.event)
        Selfie.objects.create(
            user=user,
            image=f"selfies/{name}.jpg",
            status=Selfie.Status.INDEXED,
            descriptor=blob(selfie),
            engine="local",
            consent_at=timezone.now(),
            indexed_at=timezone.now(),
        )
        return user

    def photo(self, *vectors: np.ndarray) -> Photo:
        """A processed photo with these faces, matched on the hot path (selfies alone)."""
        self.count += 1
        photo = Photo.objects.create(
            event=self.event,
            sha256=f"{self.count:064x}",
            original=f"photos/{self.count}.jpg",
            content_type="image/jpeg",
            size=1,
            status=Photo.Status.DONE,
        )
        detected = [
            DetectedFace(left=0.1 * i, top=0.1, width=0.05, height=0.05, descriptor=blob(v))
            for i, v in enumerate(vectors)
        ]
        with transaction.atomic():
            faces_store(event_id=self.event.pk, photo_id=photo.pk, detected=detected)
        return photo


def photos_of(user) -> set[int]:
    return set(Match.objects.filter(user=user, rejected=False).values_list("photo_id", flat=True))


def test_a_reference_finds_what_the_selfie_alone_misses(event, django_user_model):
    scene = Scene(event)
    ann = scene.member(django_user_model, "ann", SELFIE)
    near = scene.photo(point((1, 0.30)))  # 0.30 from the selfie: a match, and a reference
    x, y = at(0.30, 0.55, 0.35)
    profile = scene.photo(point((1, x), (2, y)))  # 0.55 from the selfie, 0.35 from the reference
    assert photos_of(ann) == {near.pk}  # the selfie alone misses the profile
    assert event_settle(event_id=event.pk)["photos"] == 1
    assert photos_of(ann) == {near.pk, profile.pk}
    match = Match.objects.get(user=ann, photo=profile)
    assert match.distance == pytest.approx(0.35, abs=1e-3)  # the nearest reference's distance


def test_a_stranger_near_a_reference_is_never_pulled_in(event, django_user_model):
    scene = Scene(event)
    ann = scene.member(django_user_model, "ann", SELFIE)
    near = scene.photo(point((1, 0.30)))
    x, y = at(0.30, 0.65, 0.40)
    stranger = scene.photo(point((1, x), (2, y)))  # 0.40 from the reference, 0.65 from the selfie
    event_settle(event_id=event.pk)
    assert photos_of(ann) == {near.pk}
    assert not Match.objects.filter(photo=stranger).exists()


def test_no_chain_of_look_alikes(event, django_user_model):
    """A face found through a reference (0.55 from the selfie) is no reference itself: a face
    0.39 from it, 0.59 from the selfie and from the reference, stays unmatched."""
    scene = Scene(event)
    ann = scene.member(django_user_model, "ann", SELFIE)
    reference = scene.photo(point((1, 0.30)))
    x, y = at(0.30, 0.55, 0.35)
    step = scene.photo(point((1, x), (2, y)))
    far = point((1, 0.15), (2, 0.57))
    assert float(np.linalg.norm(far - point((1, x), (2, y)))) < 0.4
    lone = scene.photo(far)
    event_settle(event_id=event.pk)
    assert photos_of(ann) == {reference.pk, step.pk}
    assert not Match.objects.filter(photo=lone).exists()


def test_not_me_is_never_undone_by_expansion(event, django_user_model):
    scene = Scene(event)
    ann = scene.member(django_user_model, "ann", SELFIE)
    scene.photo(point((1, 0.30)))
    x, y = at(0.30, 0.55, 0.35)
    profile_vector = point((1, x), (2, y))
    profile = scene.photo(profile_vector)
    event_settle(event_id=event.pk)
    assert profile.pk in photos_of(ann)
    assert match_reject(user_id=ann.pk, photo_id=profile.pk)
    # Another photo of the face they rejected, as near the reference as the first one.
    twin = scene.photo(profile_vector + 0.05 * axis(5))
    # A photo they rejected straight from the selfie's own match.
    direct = scene.photo(point((1, 0.2), (6, 0.1)))
    assert match_reject(user_id=ann.pk, photo_id=direct.pk)
    for _ in range(2):
        event_settle(event_id=event.pk)
        assert profile.pk not in photos_of(ann)
        assert twin.pk not in photos_of(ann)  # nearer the rejected face than the reference
        assert direct.pk not in photos_of(ann)
        assert Match.objects.filter(user=ann, photo=profile, rejected=True).exists()
        assert Match.objects.filter(user=ann, photo=direct, rejected=True).exists()


def test_a_face_goes_to_the_nearest_member_across_references(event, django_user_model):
    """The face is 0.45 from bob's selfie, 0.55 from ann's but 0.30 from ann's reference: the
    selfies alone give it to bob, every member's references to ann, and never to both."""
    scene = Scene(event)
    ann = scene.member(django_user_model, "ann", SELFIE)
    x, y = at(0.30, 0.55, 0.30)
    face = point((1, x), (2, y))
    bob = scene.member(django_user_model, "bob", face + 0.45 * axis(3))
    reference = scene.photo(point((1, 0.30)))  # 0.54 from bob's selfie: ann's alone
    contested = scene.photo(face)
    assert set(Match.objects.filter(photo=contested).values_list("user_id", flat=True)) == {bob.pk}
    event_settle(event_id=event.pk)
    assert set(Match.objects.filter(photo=contested).values_list("user_id", flat=True)) == {ann.pk}
    assert photos_of(ann) == {reference.pk, contested.pk}
    assert photos_of(bob) == set()


def test_settling_twice_leaves_the_same_rows(event, django_user_model):
    scene = Scene(event)
    scene.member(django_user_model, "ann", SELFIE)
    scene.photo(point((1, 0.30)))
    x, y = at(0.30, 0.55, 0.35)
    scene.photo(point((1, x), (2, y)), point((10, 0.9)))
    stranger = point((20, 0.9))
    scene.photo(stranger, point((11, 0.9)))
    scene.photo(stranger + 0.05 * axis(21))
    event_settle(event_id=event.pk)

    def rows():
        return (
            sorted(Match.objects.values_list("pk", "photo_id", "user_id", "face_id", "rejected")),
            sorted(Cluster.objects.values_list("pk", "key", "size")),
            sorted(Face.objects.values_list("pk", "cluster_id")),
        )

    first = rows()
    again = event_settle(event_id=event.pk)
    assert again["photos"] == 0
    assert rows() == first


def test_clusters_never_hold_two_faces_of_one_photo(event):
    scene = Scene(event)
    stranger = point((30, 0.9))
    group = scene.photo(stranger, stranger + 0.1 * axis(31))  # two look-alikes in one photo
    singles = [scene.photo(stranger + 0.05 * axis(32 + i)) for i in range(3)]
    event_settle(event_id=event.pk)
    for cluster in Cluster.objects.filter(event=event):
        photos = list(cluster_faces(cluster_id=cluster.pk).values_list("photo_id", flat=True))
        assert len(photos) == len(set(photos)) == cluster.size
    largest = cluster_list(event_id=event.pk).first()
    assert largest.size == 4  # one face of the group photo and the three singles
    members = set(cluster_faces(cluster_id=largest.pk).values_list("photo_id", flat=True))
    assert members == {group.pk, *(p.pk for p in singles)}
    assert Face.objects.filter(photo=group, cluster__isnull=False).count() == 2


def test_a_confident_cluster_brings_its_faces_to_a_member_who_enrols(event, django_user_model):
    """Five faces 0.502 from the selfie (each missed by it, none a reference), 0.495 from each
    other (one cluster), whose mean lies 0.393 from the selfie."""
    scene = Scene(event)
    photos = [scene.photo(point((1, 0.36), (40 + i, 0.35))) for i in range(5)]
    outsider = scene.photo(point((50, 0.9)))
    event_settle(event_id=event.pk)
    assert Cluster.objects.get(event=event, size=5)
    ann = scene.member(django_user_model, "ann", SELFIE)
    assert photos_of(ann) == set()
    event_settle(event_id=event.pk)
    assert photos_of(ann) == {p.pk for p in photos}
    assert outsider.pk not in photos_of(ann)
    assert not Cluster.objects.filter(event=event, size=5).exists()  # claimed: no longer unknown


def test_cluster_assign_matches_the_member_and_refreshes_their_gallery(
    event, django_user_model, django_capture_on_commit_callbacks
):
    scene = Scene(event)
    ann = scene.member(django_user_model, "ann", SELFIE)
    stranger = point((60, 0.9))
    photos = [scene.photo(stranger + 0.05 * axis(61 + i)) for i in range(3)]
    event_settle(event_id=event.pk)
    cluster = cluster_list(event_id=event.pk).first()
    assert cluster.size == 3
    before = user_generation(ann.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert cluster_assign(cluster_id=cluster.pk, user_id=ann.pk) == 3
    assert user_generation(ann.pk) != before
    assert photos_of(ann) == {p.pk for p in photos}
    assert Match.objects.filter(user=ann, assigned=True).count() == 3
    assert not Cluster.objects.filter(pk=cluster.pk).exists()
    # Staff's word stands through every later pass, though the faces are far from her selfie.
    event_settle(event_id=event.pk)
    assert photos_of(ann) == {p.pk for p in photos}
    assert Match.objects.filter(user=ann, assigned=True).count() == 3


def test_cluster_assign_refuses_a_non_member_and_a_gone_cluster(event, django_user_model):
    scene = Scene(event)
    scene.photo(point((70, 0.9)))
    event_settle(event_id=event.pk)
    cluster = cluster_list(event_id=event.pk).first()
    outsider = django_user_model.objects.create_user(username="out", password="x")
    with pytest.raises(ApplicationError) as refused:
        cluster_assign(cluster_id=cluster.pk, user_id=outsider.pk)
    assert refused.value.code == "not_a_member"
    assert not Match.objects.exists()
    with pytest.raises(ApplicationError) as gone:
        cluster_assign(cluster_id=cluster.pk + 1000, user_id=outsider.pk)
    assert gone.value.status_code == 404


def test_cluster_assign_keeps_not_me(event, django_user_model):
    scene = Scene(event)
    ann = scene.member(django_user_model, "ann", SELFIE)
    stranger = point((80, 0.9))
    rejected = scene.photo(stranger)
    kept = scene.photo(stranger + 0.05 * axis(81))
    Match.objects.create(
        photo=rejected, event=event, user=ann, face=None, distance=0.9, rejected=True
    )
    event_settle(event_id=event.pk)
    cluster = cluster_list(event_id=event.pk).first()
    assert cluster.size == 2
    assert cluster_assign(cluster_id=cluster.pk, user_id=ann.pk) == 1
    assert photos_of(ann) == {kept.pk}
    assert Cluster.objects.get(pk=cluster.pk).size == 1


def test_the_sweep_waits_for_a_quiet_event_then_settles_once(event, django_user_model, settings):
    scene = Scene(event)
    scene.member(django_user_model, "ann", SELFIE)
    scene.photo(point((1, 0.30)))
    settings.FACE_SETTLE_QUIET_S = 3600
    settings.FACE_SETTLE_MAX_WAIT_S = 7200
    assert events_settle_sweep() == 0  # photos just arrived: wait for the burst to end
    assert FaceSettle.objects.get(event=event).stale_since is not None
    settings.FACE_SETTLE_QUIET_S = 0
    assert events_settle_sweep() == 1
    assert events_settle_sweep() == 0  # nothing changed since
    scene.photo(point((90, 0.9)))
    assert events_settle_sweep() == 1


def test_face_assign_moves_a_face_to_the_member_and_refreshes_both_galleries(
    event, django_user_model, django_capture_on_commit_callbacks
):
    scene = Scene(event)
    ann = scene.member(django_user_model, "ann", SELFIE)
    bob = scene.member(django_user_model, "bob", point((90, 0.9)))
    photo = scene.photo(point((1, 0.30)), point((91, 0.9)))
    ann_face, other_face = list(Face.objects.filter(photo=photo).order_by("index"))
    assert photos_of(ann) == {photo.pk}
    event_settle(event_id=event.pk)
    before = {u.pk: user_generation(u.pk) for u in (ann, bob)}
    with django_capture_on_commit_callbacks(execute=True):
        assert face_assign(face_id=ann_face.pk, user_id=bob.pk)
    assert {u.pk: user_generation(u.pk) for u in (ann, bob)} != before
    assert photos_of(ann) == set()
    assert list(Match.objects.filter(user=bob).values_list("face_id", "assigned")) == [
        (ann_face.pk, True)
    ]
    # A second face of the same photo for bob replaces his first: one face per member.
    assert face_assign(face_id=other_face.pk, user_id=bob.pk)
    assert list(Match.objects.filter(user=bob).values_list("face_id", flat=True)) == [other_face.pk]
    assert Face.objects.get(pk=other_face.pk).cluster_id is None
    event_settle(event_id=event.pk)  # staff's word stands through the pass
    assert list(Match.objects.filter(user=bob).values_list("face_id", flat=True)) == [other_face.pk]
    assert photos_of(ann) == {photo.pk}  # her face is free again, and hers by distance


def test_face_assign_refuses_what_the_member_rejected(event, django_user_model):
    scene = Scene(event)
    ann = scene.member(django_user_model, "ann", SELFIE)
    photo = scene.photo(point((1, 0.30)))
    assert match_reject(user_id=ann.pk, photo_id=photo.pk)
    face = Face.objects.get(photo=photo)
    with pytest.raises(ApplicationError) as refused:
        face_assign(face_id=face.pk, user_id=ann.pk)
    assert refused.value.code == "rejected_by_member"
    assert photos_of(ann) == set()


def test_a_pass_planned_before_a_staff_assignment_writes_nothing(
    event, django_user_model, monkeypatch
):
    """The plan is made outside the lock; a cluster given to a member meanwhile must survive
    the pass that did not know of it (the next pass settles with it)."""
    from faces.services import settle

    scene = Scene(event)
    ann = scene.member(django_user_model, "ann", SELFIE)
    stranger = point((100, 0.9))
    photos = [scene.photo(stranger + 0.05 * axis(101 + i)) for i in range(2)]
    event_settle(event_id=event.pk)
    cluster = cluster_list(event_id=event.pk).first()
    planned = settle.event_plan

    def plan_then_assign(*args, **kwargs):
        result = planned(*args, **kwargs)
        cluster_assign(cluster_id=cluster.pk, user_id=ann.pk)
        return result

    monkeypatch.setattr(settle, "event_plan", plan_then_assign)
    scene.photo(point((110, 0.9)))  # and a new photo, so that there is something to settle
    assert event_settle(event_id=event.pk) == {"photos": 0, "clusters": 0}
    monkeypatch.setattr(settle, "event_plan", planned)
    assert photos_of(ann) == {p.pk for p in photos}
    event_settle(event_id=event.pk)
    assert photos_of(ann) == {p.pk for p in photos}


def test_a_back_matched_member_takes_their_faces_out_of_the_cluster_list_at_once(
    event, django_user_model
):
    from faces.services import member_match_event

    scene = Scene(event)
    guest = point((120, 0.9))
    photos = [scene.photo(guest + 0.05 * axis(121 + i)) for i in range(2)]
    event_settle(event_id=event.pk)
    cluster = cluster_list(event_id=event.pk).first()
    assert cluster_faces(cluster_id=cluster.pk).count() == 2
    late = scene.member(django_user_model, "late", guest)
    member_match_event(user_id=late.pk, event_id=event.pk)
    assert photos_of(late) == {p.pk for p in photos}
    assert cluster_faces(cluster_id=cluster.pk).count() == 0
    event_settle(event_id=event.pk)
    assert not Cluster.objects.filter(pk=cluster.pk).exists()


def test_a_face_staff_gave_to_someone_else_is_no_reference(event, django_user_model):
    scene = Scene(event)
    ann = scene.member(django_user_model, "ann", SELFIE)
    bob = scene.member(django_user_model, "bob", point((126, 0.9)))
    near = scene.photo(point((1, 0.30)))
    x, y = at(0.30, 0.55, 0.35)
    profile = scene.photo(point((1, x), (2, y)))
    assert face_assign(face_id=Face.objects.get(photo=near).pk, user_id=bob.pk)
    event_settle(event_id=event.pk)
    assert photos_of(bob) == {near.pk}
    assert profile.pk not in photos_of(ann)  # only ann's own references find for her
