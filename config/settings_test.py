"""Test settings: the real settings with safe defaults for what a test run needs.

Everything still comes from the environment, so the same suite runs on SQLite (no variables)
and on PostgreSQL + Redis (DATABASE_URL, REDIS_URL), as CI does.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key")  # noqa: S105
os.environ.setdefault("DJANGO_DEBUG", "0")
# Each test process and each worker it starts holds a pool: nothing open before a query, and
# room for a live server's request threads beside the test's own connection.
os.environ.setdefault("DB_POOL_SIZE", "0")
os.environ.setdefault("DB_MAX_OVERFLOW", "7")
os.environ.setdefault("PHOTO_QUEUE_WORKERS", "2")
# Production mode without TLS and without collectstatic: the test client and the servers the
# tests start (which inherit this environment) speak plain HTTP and serve static files from the
# source folders. tests/security/ runs the real production defaults in subprocesses.
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("DJANGO_SECURE_COOKIES", "0")
os.environ.setdefault("DJANGO_SECURE_HSTS_SECONDS", "0")
os.environ.setdefault("DJANGO_STATIC_MANIFEST", "0")

from config.settings import *  # noqa: E402, F403
from config.settings import BASE_DIR  # noqa: E402

# Two test runs on one machine must not share (and destroy) one test database or media folder.
# Worker subprocesses started by the tests are handed both paths explicitly.
RUN_ID = os.environ.get("FINDME_TEST_RUN_ID") or str(os.getpid())
_db = DATABASES["default"]  # noqa: F405
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db["TEST"] = {"NAME": str(BASE_DIR / ".test-dbs" / f"test-{RUN_ID}.sqlite3")}
    (BASE_DIR / ".test-dbs").mkdir(exist_ok=True)
else:
    _db["TEST"] = {"NAME": f"test_{_db['NAME']}_{RUN_ID}"}

MEDIA_ROOT = os.environ.get("MEDIA_ROOT") or str(BASE_DIR / ".test-media" / RUN_ID)
STORAGES["default"]["OPTIONS"]["location"] = str(MEDIA_ROOT)  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
Q_CLUSTER["name"] = f"findme-test-{RUN_ID}"  # noqa: F405
