"""Faces that know each other: an event's faces grouped by likeness, and staff giving a group
to a member.

Grouping is dlib's Chinese whispers (``dlib.chinese_whispers``) over edges built here with
numpy: each face's nearest faces within FACE_CLUSTER_THRESHOLD, except faces of its own photo,
which are other people by definition. dlib's all-in-one ``chinese_whispers_clustering`` builds
its edges itself from every pair, so it can neither leave those pairs out nor bound the edges
of a guest in thousands of photos, and its pair loop took 30.6 s for 5,000 faces where numpy's
matrix products build the edges of 10,000 in a few CPU seconds (bench/README.md). Chinese
whispers needs no number of clusters, which an event cannot know, and no library beyond dlib
(scikit-learn is not installed here). It can still join two faces of one photo through third
faces: each such cluster keeps the face nearest its mean, and the faces it sends away are
grouped again among themselves.
"""

from __future__ import annotations

import logging

import numpy as np
from django.db import transaction
from django.db.models import Q

from accounts.selectors import selfie_indexed_get
from core.errors import ApplicationError
from events.selectors import member_is_in

from ..models import Cluster, Face, Match
from .matching import event_lock, galleries_changed
from .references import FaceSet, pairwise

logger = logging.getLogger(__name__)

# Rows of the distance matrix computed at once: 1,000 x 10,000 float32 is 40 MB.
BLOCK = 1000
# Edges kept per face: its nearest faces within the threshold.
NEIGHBOURS = 20


def edges_find(faces: FaceSet, threshold: float) -> list[tuple[int, int]]:
    """Pairs of rows within ``threshold`` of each other, never two faces of one photo: each
    face's NEIGHBOURS nearest, so that a guest in 2,000 photos adds 2,000 x NEIGHBOURS edges
    rather than 2,000 squared (Chinese whispers needs a face's near neighbours, not all)."""
    count = len(faces)
    found: list[np.ndarray] = []
    for start in range(0, count, BLOCK):
        stop = min(start + BLOCK, count)
        block = pairwise(faces.matrix[start:stop], faces.matrix)
        rows = np.arange(start, stop)
        block[faces.photos[rows][:, None] == faces.photos[None, :]] = np.inf  # self included
        block[block > threshold] = np.inf
        keep = min(NEIGHBOURS, count)
        nearest = np.argpartition(block, keep - 1, axis=1)[:, :keep]
        near = np.take_along_axis(block, nearest, axis=1)
        local, slot = np.nonzero(np.isfinite(near))
        a, b = rows[local], nearest[local, slot]
        found.append(np.minimum(a, b) * count + np.maximum(a, b))
    if not found:
        return []
    pairs = np.unique(np.concatenate(found))
    return list(zip((pairs // count).tolist(), (pairs % count).tolist(), strict=True))


def faces_group(faces: FaceSet, threshold: float) -> list[list[int]]:
    """Clusters of rows of ``faces``, each without two faces of one photo, every row in exactly
    one cluster (a face like no other is a cluster of one). Deterministic for the same rows in
    the same order; clusters ordered by their first row."""
    return _group(faces, np.arange(len(faces)), threshold)


def _group(faces: FaceSet, rows: np.ndarray, threshold: float) -> list[list[int]]:
    import dlib

    if rows.size == 0:
        return []
    subset = FaceSet(ids=faces.ids[rows], photos=faces.photos[rows], matrix=faces.matrix[rows])
    edges = edges_find(subset, threshold)
    # Every vertex gets a label: a self-loop for each, so faces without a neighbour count too.
    labels = dlib.chinese_whispers(edges + [(i, i) for i in range(rows.size)])
    by_label: dict[int, list[int]] = {}
    for local, label in enumerate(labels):
        by_label.setdefault(label, []).append(local)
    clusters: list[list[int]] = []
    sent_away: list[int] = []
    for members in by_label.values():
        kept, rest = _one_face_per_photo(subset, members)
        clusters.append(sorted(int(rows[i]) for i in kept))
        sent_away.extend(int(rows[i]) for i in rest)
    if sent_away:
        clusters.extend(_group(faces, np.array(sorted(sent_away), dtype=np.int64), threshold))
    return sorted(clusters)


def _one_face_per_photo(faces: FaceSet, members: list[int]) -> tuple[list[int], list[int]]:
    """Nearest the cluster's mean first, one face per photo; the others are returned apart."""
    if len(members) == 1:
        return members, []
    mean = faces.matrix[members].mean(axis=0, keepdims=True)
    near = pairwise(faces.matrix[members], mean)[:, 0]
    kept, rest, photos = [], [], set()
    for k in np.argsort(near, kind="stable").tolist():
        photo = int(faces.photos[members[k]])
        if photo in photos:
            rest.append(members[k])
        else:
            photos.add(photo)
            kept.append(members[k])
    return kept, rest


def cluster_assign(*, cluster_id: int, user_id: int) -> int:
    """Staff: this cluster's faces are this member. Each becomes a match of theirs, marked as
    staff's (``Match.assigned``: every re-match keeps it), and the member's gallery shows them
    at once.

    The member must belong to the cluster's event. A photo the member said "not me" to stays
    rejected, and a photo where they are already matched keeps that match: those faces stay in
    the cluster. Returns the number of faces assigned.
    """
    event_id = Cluster.objects.filter(pk=cluster_id).values_list("event_id", flat=True).first()
    if event_id is None:
        raise ApplicationError(
            "This cluster no longer exists: the faces were grouped again. Reload the page.",
            code="not_found",
            status=404,
        )
    if not member_is_in(user_id=user_id, event_id=event_id):
        raise ApplicationError(
            "This person is not a member of the cluster's event.", code="not_a_member"
        )
    with transaction.atomic():
        event_lock(event_id)
        faces = list(
            Face.objects.filter(cluster_id=cluster_id)
            .exclude(matches__rejected=False)
            .order_by("pk")
            .values_list("pk", "photo_id", "descriptor")
        )
        photos = {photo_id for _, photo_id, _ in faces}
        taken = set(
            Match.objects.filter(user_id=user_id, photo_id__in=photos).values_list(
                "photo_id", flat=True
            )
        )
        selfie = _selfie_vector(user_id)
        new = []
        for face_id, photo_id, descriptor in faces:
            if photo_id in taken:
                continue  # rejected by them, or they are matched there already
            taken.add(photo_id)
            new.append(
                Match(
                    photo_id=photo_id,
                    event_id=event_id,
                    user_id=user_id,
                    face_id=face_id,
                    distance=_distance(selfie, descriptor),
                    assigned=True,
                )
            )
        Match.objects.bulk_create(new)
        Face.objects.filter(pk__in=[m.face_id for m in new]).update(cluster=None)
        _cluster_shrunk(cluster_id)
        galleries_changed([user_id])
    logger.info("cluster %s: %s faces assigned to user %s", cluster_id, len(new), user_id)
    return len(new)


def face_assign(*, face_id: int, user_id: int) -> bool:
    """Staff: this face is this member. The match is marked as staff's (every re-match keeps
    it); a member who had the face loses it, and the member's match on another face of the
    photo gives way. All galleries concerned refresh at once. Refused when the member is not in
    the face's event, or said "not me" to the photo. Returns whether anything changed."""
    face = Face.objects.filter(pk=face_id).values("photo_id", "event_id", "descriptor").first()
    if face is None:
        raise ApplicationError(
            "This face no longer exists: the photo was scanned again. Reload the page.",
            code="not_found",
            status=404,
        )
    event_id, photo_id = face["event_id"], face["photo_id"]
    if not member_is_in(user_id=user_id, event_id=event_id):
        raise ApplicationError(
            "This person is not a member of the photo's event.", code="not_a_member"
        )
    with transaction.atomic():
        event_lock(event_id)
        if Match.objects.filter(user_id=user_id, photo_id=photo_id, rejected=True).exists():
            raise ApplicationError(
                "This person said this photo is not them; only they can undo that.",
                code="rejected_by_member",
            )
        mine = Match.objects.filter(face_id=face_id, user_id=user_id, rejected=False)
        if mine.filter(assigned=True).exists():
            return False
        displaced = Match.objects.filter(rejected=False).filter(
            Q(face_id=face_id) | Q(user_id=user_id, photo_id=photo_id)
        )
        touched = set(displaced.values_list("user_id", flat=True)) | {user_id}
        displaced.delete()
        Match.objects.create(
            photo_id=photo_id,
            event_id=event_id,
            user_id=user_id,
            face_id=face_id,
            distance=_distance(_selfie_vector(user_id), face["descriptor"]),
            assigned=True,
        )
        cluster_id = Face.objects.filter(pk=face_id).values_list("cluster_id", flat=True).first()
        if cluster_id is not None:
            Face.objects.filter(pk=face_id).update(cluster=None)
            _cluster_shrunk(cluster_id)
        galleries_changed(touched)
    return True


def _cluster_shrunk(cluster_id: int) -> None:
    """Faces left the cluster (claimed): its size follows, and an empty one goes."""
    left = Face.objects.filter(cluster_id=cluster_id).count()
    if left:
        Cluster.objects.filter(pk=cluster_id).update(size=left)
    else:
        Cluster.objects.filter(pk=cluster_id).delete()


def _selfie_vector(user_id: int) -> np.ndarray | None:
    selfie = selfie_indexed_get(user_id=user_id)
    if selfie is None or not selfie.descriptor:
        return None
    return np.frombuffer(bytes(selfie.descriptor), dtype=np.float32)


def _distance(selfie: np.ndarray | None, descriptor: bytes | None) -> float:
    """The face's distance to the member's selfie, for staff to read; 0.0 when either is
    unknown (no selfie yet, or an engine without descriptors)."""
    if selfie is None or not descriptor:
        return 0.0
    return float(np.linalg.norm(np.frombuffer(bytes(descriptor), dtype=np.float32) - selfie))
