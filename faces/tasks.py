"""django-q2 entry points: they take ids and call a service, nothing else."""

from __future__ import annotations

from . import services


def member_index(user_id: int) -> bool:
    return services.member_index(user_id=user_id)


def member_match_event(user_id: int, event_id: int) -> int:
    return services.member_match_event(user_id=user_id, event_id=event_id)


def members_sweep() -> int:
    return services.members_sweep()
