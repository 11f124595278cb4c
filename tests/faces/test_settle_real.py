"""References and clusters on the real faces of ../shared/faces, through the real pipeline
(photo_process, member_index, then the event's settling pass)."""

from __future__ import annotations

import pytest

from faces.models import Cluster, Face, Match
from faces.services import event_settle, match_reject
from photos.models import Photo
from photos.services import photo_process
from tests.faces.test_matching import assert_exact, enrol, ingest, matched, scene  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.faces]


def processed(scene, event, staff_user) -> dict:  # noqa: F811
    photos = {path: ingest(event, staff_user, path) for path in scene["truth"]}
    for photo in photos.values():
        assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    return photos


def pairs(scene, photos) -> tuple[set, set]:  # noqa: F811
    truth = {
        (photos[p].pk, scene["members"][name].pk)
        for p, who in scene["truth"].items()
        for name in who
    }
    got = set(Match.objects.filter(rejected=False).values_list("photo_id", "user_id"))
    return truth, got


def test_expansion_raises_recall_on_real_faces_and_matches_no_stranger(
    scene,  # noqa: F811
    event,
    staff_user,
    settings,
):
    """At a strict threshold (0.35: the selfie alone finds 4 of the 13 photos of people/),
    the references find most of the rest, and never a stranger: not one of the 24 of
    bald_guys.jpg, nor the third person of obama_and_biden.jpg."""
    settings.FACE_MATCH_THRESHOLD = 0.35
    settings.FACE_REFERENCE_DISTANCE = 0.3
    settings.FACE_SELFIE_LIMIT = 0.45
    for name in scene["people"]:
        enrol(scene["members"][name], scene["selfies"][name])
    photos = processed(scene, event, staff_user)
    truth, alone = pairs(scene, photos)
    assert alone <= truth
    event_settle(event_id=event.pk)
    _, expanded = pairs(scene, photos)
    assert expanded <= truth, "expansion matched someone in a photo they are not in"
    assert len(expanded) > len(alone)
    bald = photos[next(p for p in photos if p.name == "bald_guys.jpg")]
    assert not Match.objects.filter(photo=bald).exists()


def test_settling_real_faces_keeps_every_member_exact_and_clusters_the_strangers(
    scene,  # noqa: F811
    event,
    staff_user,
):
    names = scene["people"]
    for name in names[: len(names) // 2]:
        enrol(scene["members"][name], scene["selfies"][name])
    photos = processed(scene, event, staff_user)
    for name in names[len(names) // 2 :]:
        enrol(scene["members"][name], scene["selfies"][name])
    event_settle(event_id=event.pk)
    assert_exact(scene, photos)
    bald = photos[next(p for p in photos if p.name == "bald_guys.jpg")]
    assert not Match.objects.filter(photo=bald).exists()
    # Every face nobody claims is in exactly one cluster, and no cluster holds two faces of
    # one photo: the 24 strangers of one photo are 24 clusters.
    unclaimed = Face.objects.filter(event=event).exclude(matches__rejected=False)
    assert not unclaimed.filter(cluster__isnull=True).exists()
    assert (
        Face.objects.filter(event=event, matches__rejected=False, cluster__isnull=False).count()
        == 0
    )
    for cluster in Cluster.objects.filter(event=event):
        photo_ids = list(cluster.faces.values_list("photo_id", flat=True))
        assert len(photo_ids) == len(set(photo_ids)) == cluster.size
    assert len(set(Face.objects.filter(photo=bald).values_list("cluster_id", flat=True))) == 24

    def rows():
        return (
            sorted(Match.objects.values_list("pk", "photo_id", "user_id", "face_id", "rejected")),
            sorted(Cluster.objects.values_list("pk", "key", "size")),
            sorted(Face.objects.values_list("pk", "cluster_id")),
        )

    first = rows()
    assert event_settle(event_id=event.pk)["photos"] == 0
    assert rows() == first
    # "Not me" on a real photo: the pass gives it back to no one, and the face is unknown again.
    obama = scene["members"]["obama"]
    photo_id = sorted(matched(obama))[0]
    assert match_reject(user_id=obama.pk, photo_id=photo_id)
    event_settle(event_id=event.pk)
    assert photo_id not in matched(obama)
    assert Match.objects.filter(user=obama, photo_id=photo_id, rejected=True).exists()
