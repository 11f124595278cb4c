"""Test settings: the real settings with safe defaults for what a test run needs.

Everything still comes from the environment, so the same suite runs on SQLite (no variables)
and on PostgreSQL + Redis (DATABASE_URL, REDIS_URL), as CI does.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key")  # noqa: S105
os.environ.setdefault("DJANGO_DEBUG", "0")
# Each test process and each worker it starts holds a pool: keep them small.
os.environ.setdefault("DB_POOL_SIZE", "1")
os.environ.setdefault("DB_MAX_OVERFLOW", "6")
os.environ.setdefault("PHOTO_QUEUE_WORKERS", "2")

from config.settings import *  # noqa: E402, F403
from config.settings import BASE_DIR  # noqa: E402

MEDIA_ROOT = BASE_DIR / ".test-media"
STORAGES["default"]["OPTIONS"]["location"] = str(MEDIA_ROOT)  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
Q_CLUSTER["name"] = "findme-test"  # noqa: F405
