"""django-q2 entry points: they take ids and call a service, nothing else."""

from __future__ import annotations

from . import services


def photo_process(photo_id: int) -> str:
    return services.photo_process(photo_id=photo_id)


def photos_sweep() -> int:
    return services.photos_sweep()
