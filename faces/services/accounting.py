"""Billable face-engine calls, counted per operation in the database (shared by every process)."""

from __future__ import annotations

from collections import defaultdict

from django.utils import timezone

from core.counters import row_add

from ..models import CollectionFace, EngineCall


def engine_calls_count(*, engine: str, operation: str, count: int = 1) -> None:
    """Add to the persistent per-operation call counter (shared by every process)."""
    row_add(
        EngineCall,
        key={"engine": engine, "operation": operation},
        field="count",
        amount=count,
        also={"updated_at": timezone.now()},
    )


def engine_faces_stored() -> int:
    """Faces the engine keeps for us (Rekognition bills them per face-month)."""
    return CollectionFace.objects.count()


def engine_calls_summary() -> dict[str, dict[str, int]]:
    summary: dict[str, dict[str, int]] = defaultdict(dict)
    for engine, operation, count in EngineCall.objects.values_list("engine", "operation", "count"):
        summary[engine][operation] = count
    return dict(summary)
