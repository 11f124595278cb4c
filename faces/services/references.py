"""Many references per member (local engine): a member's confident faces join their selfie.

The selfie alone misses the photos where a guest looks least like it (profile, laughter, other
light). A face that matches the selfie well within the threshold is almost surely the member,
and it looks like those photos more than the selfie does. So such faces become references too,
under rules that cannot drift into a stranger:

- **Confident only.** A face is a reference only within ``reference`` of the selfie itself
  (FACE_REFERENCE_DISTANCE), well inside the threshold, and only if this member is the nearest
  of the event's members to it and staff did not give it to someone else.
- **No chains.** A face found through a reference must still lie within ``selfie_limit`` of the
  selfie (FACE_SELFIE_LIMIT): references are never searched from other references' finds, and a
  look-alike of a look-alike is never the member.
- **"Not me" stands.** A face of a photo the member rejected is never a reference, never a
  candidate for that member, and a face found through a reference or a cluster is dropped when
  it is nearer to a face the member rejected than to the evidence that found it.
- **Nearest member.** Every candidate carries its nearest distance to any of the member's
  references (the selfie included), and ``matches_assign`` still gives each face to at most
  one member, the nearest.
- **Clusters** (faces.services.clusters) bring their faces to a member only when the cluster's
  mean lies within ``reference`` of the selfie and this member is the nearest to it; each face
  must still lie within ``selfie_limit`` of the selfie.

Everything here is a pure function of descriptors, rejections and clusters, so a rerun over the
same rows plans the same matches. Rekognition keeps its vectors at AWS and searches with the
selfie image only, so this is a local-engine feature (faces.services.settle runs it only there).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from ..engines.base import Candidate


@dataclass(frozen=True)
class Limits:
    threshold: float  # a face within this of one of the member's references may be them
    reference: float  # a face within this of the selfie joins it as a reference
    selfie_limit: float  # no face further than this from the selfie, whatever found it
    cluster: float  # two faces within this may be one person (faces.services.clusters)


def limits_from_settings() -> Limits:
    return Limits(
        threshold=settings.FACE_MATCH_THRESHOLD,
        reference=settings.FACE_REFERENCE_DISTANCE,
        selfie_limit=settings.FACE_SELFIE_LIMIT,
        cluster=settings.FACE_CLUSTER_THRESHOLD,
    )


@dataclass
class FaceSet:
    """An event's faces as rows of one matrix: ``ids[i]`` and ``photos[i]`` describe row i."""

    ids: np.ndarray
    photos: np.ndarray
    matrix: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass
class MemberSet:
    user_ids: list[int]
    matrix: np.ndarray  # their selfies' descriptors, one row each


@dataclass
class Rejections:
    """What the members said "not me" to: (photo, user) pairs, and the faces they rejected; and
    the faces staff gave to a member."""

    pairs: set[tuple[int, int]] = field(default_factory=set)
    faces: dict[int, set[int]] = field(default_factory=dict)  # user id -> face ids
    # Faces staff gave to a member (face id -> user id): no one else's reference.
    staff: dict[int, int] = field(default_factory=dict)


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between every row of ``a`` and every row of ``b`` (float32)."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.empty((a.shape[0], b.shape[0]), dtype=np.float32)
    squared = (
        np.einsum("ij,ij->i", a, a)[:, None] - 2.0 * (a @ b.T) + np.einsum("ij,ij->i", b, b)[None]
    )
    return np.sqrt(np.maximum(squared, 0.0)).astype(np.float32)


def references_find(
    faces: FaceSet, members: MemberSet, selfie: np.ndarray, rejections: Rejections, limits: Limits
) -> dict[int, np.ndarray]:
    """Each member's references: row numbers of faces within ``reference`` of their selfie, of
    which they are the nearest member, from photos they did not reject, one per photo."""
    found: dict[int, np.ndarray] = {}
    if len(faces) == 0 or not members.user_ids:
        return found
    nearest = np.argmin(selfie, axis=1)  # ties go to the first member, as argmin does
    for col, user_id in enumerate(members.user_ids):
        rows = np.nonzero((selfie[:, col] <= limits.reference) & (nearest == col))[0]
        rejected_faces = rejections.faces.get(user_id, set())
        best: dict[int, int] = {}
        for row in rows.tolist():
            photo = int(faces.photos[row])
            face_id = int(faces.ids[row])
            if (photo, user_id) in rejections.pairs or face_id in rejected_faces:
                continue
            if rejections.staff.get(face_id, user_id) != user_id:
                continue  # staff said it is someone else
            if photo not in best or selfie[row, col] < selfie[best[photo], col]:
                best[photo] = row
        found[user_id] = np.array(sorted(best.values()), dtype=np.int64)
    return found


def candidates_plan(
    faces: FaceSet,
    members: MemberSet,
    rejections: Rejections,
    limits: Limits,
    *,
    clusters: Sequence[Sequence[int]] = (),
    expand: bool = True,
) -> list[Candidate]:
    """Every (face, member) pair that may be matched, with its distance: the selfie's finds,
    and with ``expand`` those of the member's references and of confident clusters (rows of
    ``faces``). ``matches_assign`` decides between members afterwards."""
    if len(faces) == 0 or not members.user_ids:
        return []
    selfie = pairwise(faces.matrix, members.matrix)  # faces x members
    references = references_find(faces, members, selfie, rejections, limits) if expand else {}
    centroids = _cluster_owners(faces, members, clusters, limits) if expand else {}
    by_id = {int(face_id): row for row, face_id in enumerate(faces.ids.tolist())}
    plan: list[Candidate] = []
    for col, user_id in enumerate(members.user_ids):
        to_selfie = selfie[:, col]
        best = to_selfie.copy()
        route = np.zeros(len(faces), dtype=np.int8)  # 0: selfie, 1: reference, 2: cluster
        refs = references.get(user_id, np.empty(0, dtype=np.int64))
        if refs.size:
            to_refs = pairwise(faces.matrix, faces.matrix[refs])
            to_refs[refs, np.arange(refs.size)] = np.inf  # a reference is no evidence of itself
            nearest_ref = to_refs.min(axis=1)
            found = (
                (nearest_ref <= limits.threshold)
                & (to_selfie <= limits.selfie_limit)
                & (nearest_ref < best)
            )
            route[found & (to_selfie > limits.threshold)] = 1
            best = np.where(found, nearest_ref, best)
        for rows in centroids.get(user_id, []):
            rows = np.asarray(rows, dtype=np.int64)
            # Beyond the threshold of the selfie and of every reference, but in a cluster that
            # is confidently this member: their distance is the selfie's (``best`` already).
            reached = rows[
                (to_selfie[rows] <= limits.selfie_limit)
                & (to_selfie[rows] > limits.threshold)
                & (route[rows] == 0)
            ]
            route[reached] = 2
        eligible = (to_selfie <= limits.threshold) | (route > 0)
        rows = np.nonzero(eligible)[0]
        rejected_rows = [
            by_id[f] for f in sorted(rejections.faces.get(user_id, set())) if f in by_id
        ]
        to_rejected = (
            pairwise(faces.matrix[rows], faces.matrix[rejected_rows]).min(axis=1)
            if rejected_rows and rows.size
            else np.full(rows.size, np.inf, dtype=np.float32)
        )
        for k, row in enumerate(rows.tolist()):
            if (int(faces.photos[row]), user_id) in rejections.pairs:
                continue
            if route[row] > 0 and to_rejected[k] <= best[row]:
                continue  # found only by evidence nearer to a face they said was not them
            plan.append(
                Candidate(face_id=int(faces.ids[row]), user_id=user_id, distance=float(best[row]))
            )
    return plan


def _cluster_owners(
    faces: FaceSet, members: MemberSet, clusters: Iterable[Sequence[int]], limits: Limits
) -> dict[int, list[Sequence[int]]]:
    """The clusters that match a member confidently: the cluster's mean within ``reference``
    of the selfie, and this member the nearest to it. Clusters of one face add nothing."""
    owned: dict[int, list[Sequence[int]]] = {}
    big = [rows for rows in clusters if len(rows) > 1]
    if not big:
        return owned
    means = np.stack([faces.matrix[list(rows)].mean(axis=0) for rows in big])
    table = pairwise(means, members.matrix)
    for k, rows in enumerate(big):
        col = int(np.argmin(table[k]))
        if table[k, col] <= limits.reference:
            owned.setdefault(members.user_ids[col], []).append(rows)
    return owned
