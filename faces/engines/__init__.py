"""The face engine this process uses, chosen by settings.FACE_ENGINE, built once and lazily."""

from __future__ import annotations

import threading

from django.conf import settings

from .base import FaceEngine

_lock = threading.Lock()
_engines: dict[str, FaceEngine] = {}


def engine_build(name: str) -> FaceEngine:
    if name == "local":
        from .local import LocalEngine

        return LocalEngine(
            threshold=settings.FACE_MATCH_THRESHOLD,
            max_side=settings.FACE_DETECT_MAX_SIDE,
            upsample=settings.FACE_DETECT_UPSAMPLE,
        )
    if name == "rekognition":
        from .rekognition import RekognitionEngine

        return RekognitionEngine.from_settings()
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
