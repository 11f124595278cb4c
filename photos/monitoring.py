"""Queue and engine statistics for staff, read from shared state only (database and cache)."""

from __future__ import annotations

import logging
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Min
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.status import Stat

from faces.services import engine_calls_summary, engine_faces_stored

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
    # Rekognition also bills every face kept in a collection, per month: a month of what is
    # stored now.
    stored = engine_faces_stored() if engine == "rekognition" else 0
    storage = stored * settings.REKOGNITION_PRICE_PER_FACE_MONTH_USD
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
            "faces_stored": stored,
            "estimated_cost_usd": round(total_calls * price + storage, 4),
        },
    }


def health() -> tuple[dict[str, str], bool]:
    """Each shared part, asked once with a short timeout: "ok" or "down".

    Unhealthy (503) when the database, broker, cache or storage is down. ``workers`` is "ok" or
    "none" (no live cluster: reported, not unhealthy), or "unknown" when the place the clusters
    report to (the broker, or the cache with the database broker) cannot be read.
    """
    body: dict[str, str] = {}
    for part, probe in (
        ("database", _database_probe),
        ("broker", _broker_probe),
        ("cache", _cache_probe),
        ("storage", _storage_probe),
    ):
        try:
            probe()
        except Exception as exc:  # noqa: BLE001 - whatever failed, the part is down: say so
            logger.warning("health: %s down (%s: %s)", part, type(exc).__name__, exc)
            body[part] = "down"
        else:
            body[part] = "ok"
    healthy = all(state == "ok" for state in body.values())
    stats_readable = body["broker"] == "ok" and (
        "redis" in settings.Q_CLUSTER or body["cache"] == "ok"
    )
    if not stats_readable:
        body["workers"] = "unknown"
    else:
        body["workers"] = "ok" if _workers_active() else "none"
    return body, healthy


HEALTH_PROBE_TIMEOUT_S = 2.0


def _database_probe() -> None:
    pool = getattr(connection, "pool", None)  # Django's psycopg pool (PostgreSQL), else None
    if pool is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return
    # Through the pool (no extra connection), but waiting less than a request would. Django
    # opens the pool on first use; opening it twice is harmless.
    pool.open()
    with pool.connection(timeout=HEALTH_PROBE_TIMEOUT_S) as conn:
        conn.execute("SELECT 1")


def _broker_probe() -> None:
    from django_q.brokers.redis_broker import Redis as RedisBroker

    broker = get_broker()
    url = settings.Q_CLUSTER.get("redis")
    if isinstance(broker, RedisBroker) and isinstance(url, str):
        # The broker's own client has no socket timeout and retries ten times: ask on a
        # client of our own that gives up fast.
        _redis_ping(url)
    elif not broker.ping():
        raise ConnectionError("the broker did not answer")


def _redis_ping(url: str) -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=HEALTH_PROBE_TIMEOUT_S,
        socket_timeout=HEALTH_PROBE_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    finally:
        client.close()


def _cache_probe() -> None:
    from django.core.cache import cache

    ping = getattr(cache, "ping", None)  # core.cache.TolerantRedisCache: bypasses its tolerance
    if ping is not None:
        ping()
    else:
        cache.get("health:probe")  # the database cache: one read of its table


def _storage_probe() -> None:
    from django.core.files.storage import default_storage

    bucket = getattr(default_storage, "bucket_name", None)
    if bucket:
        _s3_client(default_storage).head_bucket(Bucket=bucket)
        return
    # Local files: write a few bytes where photos go (a full, read-only or failing disk says so
    # here), then remove them.
    folder = Path(default_storage.location)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".health-") as probe:
        probe.write(b"ok")
        probe.flush()


_s3_clients: dict[tuple, Any] = {}


def _s3_client(storage: Any) -> Any:
    """A client of the storage's own session and config, but one short attempt per call: the
    storage's retries would keep a health check waiting for many seconds."""
    from botocore.config import Config

    key = (storage.bucket_name, storage.endpoint_url, storage.region_name)
    if key not in _s3_clients:
        config = storage.client_config.merge(
            Config(
                connect_timeout=HEALTH_PROBE_TIMEOUT_S,
                read_timeout=HEALTH_PROBE_TIMEOUT_S,
                retries={"total_max_attempts": 1},
            )
        )
        _s3_clients[key] = storage._create_session().client(
            "s3",
            region_name=storage.region_name,
            use_ssl=storage.use_ssl,
            endpoint_url=storage.endpoint_url,
            config=config,
            verify=storage.verify,
        )
    return _s3_clients[key]
