"""Queue and engine statistics for staff, read from shared state only (database and cache)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Min
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.status import Stat

from faces.services import engine_calls_summary

from .gallery import cache_stats
from .models import Photo

logger = logging.getLogger(__name__)


def _workers_active() -> int:
    """Worker processes of every live cluster, as the clusters report them to the cache."""
    try:
        return sum(len(stat.workers) for stat in Stat.get_all())
    except Exception:  # noqa: BLE001 - stats are advisory; a cache hiccup must not 500 the page
        logger.exception("reading cluster stats failed")
        return 0


def queue_stats() -> dict[str, Any]:
    now = timezone.now()
    hour_ago = now - timedelta(hours=1)
    queued = Photo.objects.filter(status=Photo.Status.QUEUED)
    oldest = queued.aggregate(oldest=Min("created_at"))["oldest"]
    calls = engine_calls_summary()
    engine = settings.FACE_ENGINE
    total_calls = sum(calls.get(engine, {}).values())
    price = settings.REKOGNITION_PRICE_PER_CALL_USD if engine == "rekognition" else 0.0
    return {
        "queue": {
            "workers_active": _workers_active(),
            "current_queue_size": queued.count(),
            "processing": Photo.objects.filter(status=Photo.Status.PROCESSING).count(),
            "processed_last_hour": Photo.objects.filter(
                status=Photo.Status.DONE, processed_at__gte=hour_ago
            ).count(),
            "failed_last_hour": Photo.objects.filter(
                status=Photo.Status.FAILED, updated_at__gte=hour_ago
            ).count(),
            "oldest_queued_age_s": round((now - oldest).total_seconds(), 1) if oldest else 0,
            "broker": type(get_broker()).__name__,
        },
        "cache": {"user_photos_cache": cache_stats()},
        "engine": {
            "name": engine,
            "api_calls": total_calls,
            "calls_by_operation": calls.get(engine, {}),
            "estimated_cost_usd": round(total_calls * price, 4),
        },
    }


def health() -> tuple[dict[str, str], bool]:
    body = {"database": "ok", "broker": "ok", "workers": "ok"}
    healthy = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # noqa: BLE001
        logger.exception("health: database unreachable")
        body["database"] = "down"
        healthy = False
    try:
        if not get_broker().ping():
            raise ConnectionError("broker did not answer")
    except Exception:  # noqa: BLE001
        logger.exception("health: broker unreachable")
        body["broker"] = "down"
        healthy = False
    if healthy and _workers_active() == 0:
        body["workers"] = "none"
    return body, healthy
