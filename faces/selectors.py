"""Reads of the faces app that other apps and the admin use."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Cluster, Face


def cluster_list(*, event_id: int) -> QuerySet[Cluster]:
    """The event's clusters of faces nobody claims, largest first (the admin's strips)."""
    return Cluster.objects.filter(event_id=event_id).order_by("-size", "key")


def cluster_faces(*, cluster_id: int) -> QuerySet[Face]:
    """A cluster's faces with what a crop needs (the photo and the box), one per photo. A face
    a member was given since the last pass (a back-match) is left out at once."""
    return (
        Face.objects.filter(cluster_id=cluster_id)
        .exclude(matches__rejected=False)
        .only("pk", "photo_id", "event_id", "left", "top", "width", "height", "cluster_id")
        .order_by("pk")
    )
