"""Settings come from the environment: parse them in a fresh interpreter, as a process would."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import json
from django.conf import settings
import django
django.setup()
db = settings.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"],
    "pool": db.get("OPTIONS", {}).get("pool"),
    "conn_max_age": db.get("CONN_MAX_AGE"),
    "cache": settings.CACHES["default"]["BACKEND"],
    "broker": "redis" if "redis" in settings.Q_CLUSTER else "orm",
    "broker_url": settings.Q_CLUSTER.get("redis"),
    "workers": settings.Q_CLUSTER["workers"],
    "retry": settings.Q_CLUSTER["retry"],
    "timeout": settings.Q_CLUSTER["timeout"],
    "storage": settings.STORAGES["default"]["BACKEND"],
    "engine_name": settings.FACE_ENGINE,
    "debug": settings.DEBUG,
}))
"""

CLEAN = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("DATABASE_URL", "REDIS_URL", "DJANGO_", "DB_", "PHOTO_", "AWS_", "FACE_"))
}


def settings_with(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**CLEAN, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_laptop_defaults_need_no_variable_but_debug():
    done = settings_with(DJANGO_DEBUG="1")
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)
    assert parsed["engine"] == "django.db.backends.sqlite3"
    assert parsed["cache"] == "django.core.cache.backends.db.DatabaseCache"
    assert parsed["broker"] == "orm"
    assert parsed["workers"] == 3
    assert parsed["retry"] > parsed["timeout"]
    assert parsed["storage"] == "django.core.files.storage.FileSystemStorage"
    assert parsed["engine_name"] == "local"


def test_production_mode_refuses_to_start_without_secret_key():
    done = settings_with(DJANGO_DEBUG="0")
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY" in done.stderr


def test_database_and_redis_urls_switch_to_pooled_postgres_and_redis():
    done = settings_with(
        DJANGO_SECRET_KEY="x" * 50,
        DATABASE_URL="postgres://u:p@db.example:5432/findme",
        REDIS_URL="redis://cache.example:6379/0",
        DB_POOL_SIZE="7",
        DB_MAX_OVERFLOW="5",
        PHOTO_QUEUE_WORKERS="5",
    )
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)
    assert parsed["engine"] == "django.db.backends.postgresql"
    assert parsed["pool"]["min_size"] == 7
    assert parsed["pool"]["max_size"] == 12
    assert parsed["conn_max_age"] == 0
    assert parsed["cache"] == "core.cache.TolerantRedisCache"  # Django's RedisCache, down = miss
    assert parsed["broker"] == "redis"
    # redis-py has no timeouts by default: an unreachable broker must not hang an upload.
    assert parsed["broker_url"] == (
        "redis://cache.example:6379/0?socket_connect_timeout=2&socket_timeout=5"
    )
    assert parsed["workers"] == 5
    assert parsed["debug"] is False


def test_bad_numbers_are_refused_with_the_variable_named():
    done = settings_with(DJANGO_DEBUG="1", PHOTO_QUEUE_WORKERS="three")
    assert done.returncode != 0
    assert "PHOTO_QUEUE_WORKERS" in done.stderr


def test_bucket_switches_storage_to_s3():
    done = settings_with(DJANGO_DEBUG="1", AWS_STORAGE_BUCKET_NAME="findme-photos")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["storage"] == "storages.backends.s3.S3Storage"
