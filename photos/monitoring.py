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


def _clusters() -> list[Stat]:
    """Every live cluster, on any machine, as each reports itself every few seconds to the
    broker (Redis), or to the shared cache with the database broker. A report expires within
    seconds of its cluster's end, so the list holds only live ones."""
    try:
        return list(Stat.get_all())
    except Exception:  # noqa: BLE001 - stats are advisory; a cache hiccup must not 500 the page
        logger.exception("reading cluster stats failed")
        return []


def _workers_active() -> int:
    """Worker processes of every live cluster."""
    return sum(len(stat.workers) for stat in _clusters())


def _cluster_rows(clusters: list[Stat]) -> list[dict[str, Any]]:
    rows = []
    for stat in clusters:
        tob = getattr(stat, "tob", None)
        rows.append(
            {
                "id": str(stat.cluster_id),
                "host": stat.host,
                "pid": stat.pid,
                "status": stat.status,
                "workers": len(stat.workers),
                "uptime_s": round(stat.uptime(), 1) if tob else None,
            }
        )
    return sorted(rows, key=lambda row: (row["host"], row["pid"]))


THROUGHPUT_BUCKET_S = 300  # twelve five-minute bars for the last hour


def throughput(now=None) -> dict[str, Any]:
    """Photos finished in each five-minute slice of the last hour, oldest first: done, failed."""
    now = now or timezone.now()
    start = now - timedelta(hours=1)
    buckets = 3600 // THROUGHPUT_BUCKET_S
    series = {"done": [0] * buckets, "failed": [0] * buckets}
    finished = Photo.objects.filter(
        status__in=[Photo.Status.DONE, Photo.Status.FAILED], updated_at__gt=start
    ).values_list("status", "processed_at", "updated_at")
    for status, processed_at, updated_at in finished.iterator():
        when = processed_at if status == Photo.Status.DONE and processed_at else updated_at
        if when is None or when <= start:
            continue
        index = min(int((when - start).total_seconds() // THROUGHPUT_BUCKET_S), buckets - 1)
        series[status][index] += 1
    return {"bucket_s": THROUGHPUT_BUCKET_S, "until": now, **series}


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
    clusters = _clusters()
    storage = stored * settings.REKOGNITION_PRICE_PER_FACE_MONTH_USD
    return {
        "queue": {
            "workers_active": sum(len(stat.workers) for stat in clusters),
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
            "clusters": _cluster_rows(clusters),
            "throughput": throughput(now),
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
