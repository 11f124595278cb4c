"""The face engine this process uses, chosen by settings.FACE_ENGINE, built once and lazily.

The engines themselves (faces/engines/) are leaves; this is where they get what they need from
the rest of FindMe: their settings, a counter of their calls, and the cap on their concurrent
work (a semaphore shared by every process and machine).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from django.conf import settings
from django.utils.module_loading import import_string

from core.pacing import pace
from core.semaphore import semaphore

from ..engines.base import FaceEngine, no_cap
from .accounting import engine_calls_count

_lock = threading.Lock()
_engines: dict[str, FaceEngine] = {}


def _counter(engine: str) -> Callable[[str], None]:
    return lambda operation: engine_calls_count(engine=engine, operation=operation)


def _cap(name: str, slots: int) -> Callable[[], contextlib.AbstractContextManager]:
    if slots <= 0:
        return no_cap
    return lambda: semaphore(name, slots)


def _pace(name: str, per_second: float) -> Callable[[], float] | None:
    if per_second <= 0:
        return None
    return lambda: pace(name, per_second)


def engine_build(name: str) -> FaceEngine:
    if name == "local":
        from ..engines.local import LocalEngine

        return LocalEngine(
            threshold=settings.FACE_MATCH_THRESHOLD,
            max_side=settings.FACE_DETECT_MAX_SIDE,
            upsample=settings.FACE_DETECT_UPSAMPLE,
            on_call=_counter(name),
            # FACE_LOCAL_CONCURRENT > 0: at most that many dlib computations at once across
            # the processes sharing the database; 0: no cap.
            cap=_cap("face-local", settings.FACE_LOCAL_CONCURRENT),
        )
    if name == "rekognition":
        from ..engines.rekognition import RekognitionEngine

        return RekognitionEngine(
            region=settings.REKOGNITION_REGION,
            collection_prefix=settings.REKOGNITION_COLLECTION_PREFIX,
            threshold=settings.REKOGNITION_MATCH_THRESHOLD,
            connect_timeout=settings.AWS_CONNECT_TIMEOUT_S,
            read_timeout=settings.AWS_READ_TIMEOUT_S,
            max_retries=settings.REKOGNITION_MAX_RETRIES,
            on_call=_counter(name),
            cap=_cap("rekognition", settings.AWS_CONCURRENT_REQUESTS),
            # Beside the cap on calls in flight, the rate of calls across the fleet: AWS's
            # quotas are per second, per account and region.
            pace=_pace("rekognition", settings.AWS_REQUESTS_PER_SECOND),
            client_factory=(
                import_string(settings.REKOGNITION_CLIENT_FACTORY)
                if settings.REKOGNITION_CLIENT_FACTORY
                else None
            ),
        )
    raise ValueError(f"unknown face engine {name!r}")


def engine_get(name: str | None = None) -> FaceEngine:
    """This process's engine: ``settings.FACE_ENGINE`` unless a name is given."""
    name = name or settings.FACE_ENGINE
    engine = _engines.get(name)
    if engine is None:
        with _lock:
            engine = _engines.get(name)
            if engine is None:
                engine = _engines[name] = engine_build(name)
    return engine
