"""django-q2 entry points: they take ids and call a service, nothing else."""

from __future__ import annotations

from . import services


def member_index(user_id: int) -> bool:
    return services.member_index(user_id=user_id)


def member_match_event(user_id: int, event_id: int) -> int:
    return services.member_match_event(user_id=user_id, event_id=event_id)


def event_rematch(event_id: int) -> int:
    return services.event_rematch(event_id=event_id)


def events_rematch_sweep() -> int:
    return services.events_rematch_sweep()


def event_forget(event_id: int) -> None:
    services.event_forget(event_id=event_id)


def photo_vectors_sweep() -> int:
    return services.photo_vectors_sweep()


def collections_orphaned_sweep() -> int:
    return services.collections_orphaned_sweep()


def events_settle_sweep() -> int:
    return services.events_settle_sweep()


def event_settle(event_id: int) -> dict[str, int]:
    return services.event_settle(event_id=event_id)
