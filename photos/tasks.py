"""django-q2 entry points: they take ids and call a service, nothing else."""

from __future__ import annotations

from . import services


def photo_process(photo_id: int) -> str:
    return services.photo_process(photo_id=photo_id)


def jobs_sweep() -> str:
    return repr(services.jobs_sweep())


def event_files_delete(event_id: int) -> int:
    return services.event_files_delete(event_id=event_id)


def event_files_sweep() -> int:
    """Every 10 minutes: the files, and the guests, that deleted events left behind."""
    return services.event_files_sweep() + services.guests_orphaned_delete()


def guests_orphaned_delete() -> int:
    return services.guests_orphaned_delete()
