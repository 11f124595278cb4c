"""FindMe settings: one file, driven by the environment.

With no variable set, FindMe runs on a laptop: SQLite, django-q2's ORM broker, a database cache
table, local ``media/`` and the offline dlib engine. Each production service is one variable away
(see ``.env.example``).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


# --- Mode -----------------------------------------------------------------------------------------
DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Production mode refuses to start without it; "
            "set DJANGO_DEBUG=1 for development (what `make run` does)."
        )
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
# The error shape under /api/, Django's page elsewhere.
CSRF_FAILURE_VIEW = "core.views.csrf_failure"
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_q",
    "csp",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here: no CDN
    "core",
    "accounts",
    "events",
    "faces",
    "photos",
]

MIDDLEWARE = [
    # First, so it sees every answer last: an error sent before the body was read closes the
    # connection.
    "core.middleware.UnreadBodyCloseMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "core.middleware.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so its process_exception runs first: an outage answers 503, never 500.
    "core.middleware.OutageMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
AUTH_USER_MODEL = "accounts.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------
# PostgreSQL connections per process (psycopg pool): DB_POOL_SIZE are opened at the process's first
# query and kept open (min_size); up to DB_MAX_OVERFLOW more are opened only while threads need
# them at once, and closed again after about 10 idle minutes. The defaults open nothing before a
# query and hold at most two: a sync web worker's request, or a task plus its lease heartbeat.
# README "Sizing database connections" gives the fleet's total; core/checks.py compares it with
# the server's max_connections.
DB_POOL_SIZE = env_int("DB_POOL_SIZE", 0, minimum=0)
DB_MAX_OVERFLOW = env_int("DB_MAX_OVERFLOW", 2, minimum=0)
if DB_POOL_SIZE + DB_MAX_OVERFLOW < 1:
    raise ImproperlyConfigured("DB_POOL_SIZE + DB_MAX_OVERFLOW must be at least 1")
# The fleet that shares one PostgreSQL, read by that check only. WEB_CONCURRENCY is gunicorn's own
# variable (its default worker count), so one value can serve both.
WEB_MACHINES = env_int("WEB_MACHINES", 2, minimum=0)
WEB_CONCURRENCY = env_int("WEB_CONCURRENCY", 4, minimum=1)
WORKER_MACHINES = env_int("WORKER_MACHINES", 2, minimum=0)
# Used when the check cannot ask the server (SHOW max_connections).
DB_MAX_CONNECTIONS = env_int("DB_MAX_CONNECTIONS", 100, minimum=1)
DATABASE_URL = env_str("DATABASE_URL")

if DATABASE_URL:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
    if _db["ENGINE"] == "django.db.backends.postgresql":
        # Django's native psycopg pool. A non-zero CONN_MAX_AGE with a pool is an error, and the
        # pool must not cross a fork: core.apps installs the hook that makes it safe for
        # django-q2's forked workers.
        _db["CONN_MAX_AGE"] = 0
        # With a pool, Django hands psycopg_pool ConnectionPool.check_connection: each connection
        # is tested before it is handed out, so after a PostgreSQL restart a dead one is replaced
        # instead of failing the request or task that drew it.
        _db["CONN_HEALTH_CHECKS"] = True
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": DB_POOL_SIZE,
            "max_size": DB_POOL_SIZE + DB_MAX_OVERFLOW,
            "timeout": env_int("DB_POOL_TIMEOUT", 10, minimum=1),
        }
        # psycopg_pool retries a failed connect with doubling delays until reconnect_timeout
        # (default 300 s), so after a long outage the next try could come minutes after
        # PostgreSQL is back. Giving up within a request's wait lets the next request try at once.
        _db["OPTIONS"]["pool"]["reconnect_timeout"] = _db["OPTIONS"]["pool"]["timeout"]
        _db["OPTIONS"].setdefault("connect_timeout", 5)
    DATABASES = {"default": _db}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            # Keep connections open: closing the last connection of a WAL database forces a
            # checkpoint (~18 ms), and django-q2's ORM broker closes old connections on every
            # enqueue, i.e. in the middle of each upload.
            "CONN_MAX_AGE": env_int("SQLITE_CONN_MAX_AGE", 60, minimum=0),
            "OPTIONS": {
                # Several worker processes write to one file: wait for the lock instead of
                # failing, take the write lock up front, and let readers run beside a writer.
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and queue ------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")

if REDIS_URL:
    CACHES = {
        "default": {
            # Django's RedisCache, but a Redis that is down is an empty cache, not an error.
            "BACKEND": "core.cache.TolerantRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "findme"),
            # Short: a dead Redis must cost a request little (core.cache then pauses for 1 s).
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1},
        }
    }
else:
    # Not LocMemCache: it lives in one process, so the web process would never see the worker
    # cluster's statistics.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "findme_cache",
            # Django's default (300 entries) would evict galleries constantly.
            "OPTIONS": {"MAX_ENTRIES": env_int("DB_CACHE_MAX_ENTRIES", 20_000, minimum=100)},
        }
    }

PHOTO_QUEUE_WORKERS = env_int("PHOTO_QUEUE_WORKERS", 3, minimum=1)
PHOTO_QUEUE_RETRIES = env_int("PHOTO_QUEUE_RETRIES", 3, minimum=1)
PHOTO_QUEUE_MAX_SIZE = env_int("PHOTO_QUEUE_MAX_SIZE", 1000, minimum=1)
PHOTO_TASK_TIMEOUT = env_int("PHOTO_TASK_TIMEOUT", 300, minimum=10)
# One retry policy for every queued row (core/jobs.py): attempts, exponential back-off with
# jitter, and the lease a worker keeps alive while it works. A worker that dies is noticed when
# its lease runs out, and its row is queued again by the next sweep (every minute, and within
# TASK_SWEEP_EVERY_S while work is finishing): lost work is redone within two minutes.
TASK_MAX_ATTEMPTS = PHOTO_QUEUE_RETRIES
TASK_RETRY_BASE_S = env_float("TASK_RETRY_BASE_S", 10.0)
TASK_RETRY_MAX_S = env_float("TASK_RETRY_MAX_S", 300.0)
TASK_LEASE_S = env_int("TASK_LEASE_S", 30, minimum=5)
TASK_HEARTBEAT_S = env_int("TASK_HEARTBEAT_S", max(1, TASK_LEASE_S // 3), minimum=1)
# A message handed to the broker this long ago, and overtaken or gone, is handed over again.
TASK_REDISPATCH_AFTER_S = env_int("TASK_REDISPATCH_AFTER_S", 60, minimum=5)
TASK_SWEEP_EVERY_S = env_int("TASK_SWEEP_EVERY_S", 20, minimum=1)
if TASK_HEARTBEAT_S >= TASK_LEASE_S:
    raise ImproperlyConfigured("TASK_HEARTBEAT_S must be shorter than TASK_LEASE_S")

Q_CLUSTER = {
    "name": env_str("Q_CLUSTER_NAME", "findme"),
    "workers": PHOTO_QUEUE_WORKERS,
    "timeout": PHOTO_TASK_TIMEOUT,
    # retry must exceed timeout, or a slow task is handed to a second worker while it still runs.
    "retry": PHOTO_TASK_TIMEOUT + 60,
    "max_attempts": PHOTO_QUEUE_RETRIES,
    # Tasks record their own failures on the photo row; a failure the broker sees is final.
    "ack_failures": True,
    "save_limit": 1000,
    "queue_limit": PHOTO_QUEUE_WORKERS * 2,
    "recycle": env_int("PHOTO_WORKER_RECYCLE", 200, minimum=1),
    "max_rss": env_int("PHOTO_WORKER_MAX_RSS_KB", 600_000, minimum=50_000),
    "catch_up": False,
    "poll": 0.2,
    "label": "Task queue",
}
if REDIS_URL:
    # django-q2 builds its Redis client from this URL with redis-py's defaults: no timeouts, so
    # an enqueue to an unreachable Redis could hang an upload. The read timeout must outlast
    # the broker's 1 s blocking pop.
    _broker_url = urlsplit(REDIS_URL)
    _broker_query = dict(parse_qsl(_broker_url.query))
    _broker_query.setdefault("socket_connect_timeout", "2")
    _broker_query.setdefault("socket_timeout", "5")
    Q_CLUSTER["redis"] = urlunsplit(_broker_url._replace(query=urlencode(_broker_query)))
else:
    Q_CLUSTER["orm"] = "default"

# --- Storage --------------------------------------------------------------------------------------
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Production serves what `manage.py collectstatic` wrote: names carry a hash of the content, so
# whitenoise sends them with a ten-year, immutable Cache-Control, and a page never points at a
# stale file. Without collectstatic the manifest is missing and every page fails, so development
# and the test suite (config/settings_test.py) serve the source files through the finders instead.
STATIC_MANIFEST = env_bool("DJANGO_STATIC_MANIFEST", not DEBUG)
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
WHITENOISE_AUTOREFRESH = DEBUG

AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME")
AWS_S3_REGION_NAME = env_str("AWS_S3_REGION_NAME", env_str("AWS_DEFAULT_REGION", "us-east-1"))
AWS_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL") or None
AWS_CONNECT_TIMEOUT_S = env_float("AWS_CONNECT_TIMEOUT_S", 5.0)
AWS_READ_TIMEOUT_S = env_float("AWS_READ_TIMEOUT_S", 30.0)


def s3_storage(bucket: str) -> dict:
    """The default storage in an S3 bucket (also what tests/photos/test_s3_storage.py uses)."""
    from botocore.config import Config

    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "region_name": AWS_S3_REGION_NAME,
            "endpoint_url": AWS_S3_ENDPOINT_URL,
            "signature_version": "s3v4",
            "file_overwrite": True,
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": 3600,
            "client_config": Config(
                connect_timeout=AWS_CONNECT_TIMEOUT_S,
                read_timeout=AWS_READ_TIMEOUT_S,
                retries={"mode": "standard", "max_attempts": 5},
                signature_version="s3v4",
            ),
        },
    }


if AWS_STORAGE_BUCKET_NAME:
    _default_storage = s3_storage(AWS_STORAGE_BUCKET_NAME)
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "allow_overwrite": True},
    }

# Local storage behind deploy/nginx: the original view authorises, then answers with
# X-Accel-Redirect to this internal prefix and nginx sends the file (only for events that keep
# the location: otherwise the served bytes are rewritten, not the stored file).
SERVE_ORIGINALS_VIA_ACCEL_REDIRECT = env_bool("SERVE_ORIGINALS_VIA_ACCEL_REDIRECT", False)
ORIGINALS_ACCEL_PREFIX = env_str("ORIGINALS_ACCEL_PREFIX", "/internal/originals/")

STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Uploads --------------------------------------------------------------------------------------
PHOTO_MAX_UPLOAD_MB = env_int("PHOTO_MAX_UPLOAD_MB", 50, minimum=1)
PHOTO_MAX_PIXELS = env_int("PHOTO_MAX_PIXELS", 100_000_000, minimum=1_000_000)
# A selfie is decoded in the web process (its faces are counted before it is kept), so it has its
# own limit, checked from the header. Phones' front cameras save 8-12 MP, and the largest save
# 50 MP sensors' full 8160x6144 or 8192x6144 (50.3 MP); a library photo from a 48 MP iPhone is
# 8064x6048. 52 MP admits all of them; beyond it are only opt-in 60-200 MP modes and crafted
# files. The cost stays bounded below it: see core.imaging.decode_upright.
SELFIE_MAX_PIXELS = env_int("SELFIE_MAX_PIXELS", 52_000_000, minimum=1_000_000)
# Every upload goes to a temporary file as it arrives (never held whole in memory), hashed on the
# way: see core.uploads.
FILE_UPLOAD_HANDLERS = ["core.uploads.HashingUploadHandler"]
FILE_UPLOAD_MAX_MEMORY_SIZE = 0
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- Faces ----------------------------------------------------------------------------------------
FACE_ENGINE = env_str("FACE_ENGINE", "local")
if FACE_ENGINE not in {"local", "rekognition"}:
    raise ImproperlyConfigured(f"FACE_ENGINE must be 'local' or 'rekognition', not {FACE_ENGINE!r}")
# Largest descriptor distance still counted as the same person (local engine). Chosen from
# ../shared/faces: same person 0.07-0.44, closest stranger 0.634; see faces/README.md.
FACE_MATCH_THRESHOLD = env_float("FACE_MATCH_THRESHOLD", 0.5)
FACE_DETECT_MAX_SIDE = env_int("FACE_DETECT_MAX_SIDE", 1600, minimum=320)
FACE_DETECT_UPSAMPLE = env_int("FACE_DETECT_UPSAMPLE", 1, minimum=0)
# Many references per member (local engine, faces.services.references; README "Face matching
# threshold"): a face this near a member's selfie joins it as a reference, and no face further
# than FACE_SELFIE_LIMIT from the selfie is ever theirs, whatever reference or cluster found it.
FACE_REFERENCE_DISTANCE = env_float("FACE_REFERENCE_DISTANCE", 0.4)
FACE_SELFIE_LIMIT = env_float("FACE_SELFIE_LIMIT", 0.6)
# Two faces nobody claims this near each other may be one person (faces.services.clusters).
FACE_CLUSTER_THRESHOLD = env_float("FACE_CLUSTER_THRESHOLD", 0.5)
# An event's faces are settled (references, clusters) once no photo was stored in it for the
# quiet time, at the latest the maximum wait after it changed, by a sweep every minute; events
# active in the last days are looked at.
FACE_SETTLE_QUIET_S = env_int("FACE_SETTLE_QUIET_S", 30, minimum=0)
FACE_SETTLE_MAX_WAIT_S = env_int("FACE_SETTLE_MAX_WAIT_S", 300, minimum=0)
FACE_SETTLE_ACTIVE_DAYS = env_int("FACE_SETTLE_ACTIVE_DAYS", 7, minimum=1)
AWS_CONCURRENT_REQUESTS = env_int("AWS_CONCURRENT_REQUESTS", 10, minimum=1)
REKOGNITION_REGION = env_str("REKOGNITION_REGION", AWS_S3_REGION_NAME)
REKOGNITION_COLLECTION_PREFIX = env_str("REKOGNITION_COLLECTION_PREFIX", "findme")
# Rekognition similarity (0-100) at or above which a face counts as the member's.
REKOGNITION_MATCH_THRESHOLD = env_float("REKOGNITION_MATCH_THRESHOLD", 95.0)
REKOGNITION_PRICE_PER_CALL_USD = env_float("REKOGNITION_PRICE_PER_CALL_USD", 0.001)
# Face metadata storage: every face indexed in a collection, per month.
REKOGNITION_PRICE_PER_FACE_MONTH_USD = env_float("REKOGNITION_PRICE_PER_FACE_MONTH_USD", 0.00001)
# When Rekognition's batched re-match rounds run (faces.services.rounds): once no face has been
# stored in the event for the window, and at the latest the maximum wait after the oldest face
# not yet searched (plus up to 30 s of django-q2's scheduler tick). A round costs one search per
# member: 100 photos and 50 members cost 150 calls in a burst and 200 when the photos trickle in
# over 10 minutes, the worst photo matched 264 s after it was done; a maximum wait of 120 s makes
# that 250 calls and 144 s, and 60 s 300 calls and 84 s (bench/rekognition.py).
REKOGNITION_MATCH_WINDOW_S = env_int("REKOGNITION_MATCH_WINDOW_S", 60, minimum=1)
REKOGNITION_MATCH_MAX_WAIT_S = env_int("REKOGNITION_MATCH_MAX_WAIT_S", 240, minimum=1)
# "cheaper": a round searches per new face (SearchUsers, the members made Rekognition Users once
# the rounds' savings pay for it) when that costs less than a search per member behind: a photo
# every 5 minutes with 50 members costs about half (bench/rekognition.py). "member": always per
# member, and no member is ever kept at AWS.
REKOGNITION_ROUND_STRATEGY = env_str("REKOGNITION_ROUND_STRATEGY", "cheaper")
if REKOGNITION_ROUND_STRATEGY not in {"cheaper", "member"}:
    raise ImproperlyConfigured(
        f"REKOGNITION_ROUND_STRATEGY must be 'cheaper' or 'member', not {REKOGNITION_ROUND_STRATEGY!r}"
    )
# Attempts after a call's first, for throttling and AWS's transient errors, each after a
# jittered exponential back-off and a new turn of AWS_REQUESTS_PER_SECOND.
REKOGNITION_MAX_RETRIES = env_int("REKOGNITION_MAX_RETRIES", 5, minimum=0)
# Calls to Rekognition per second across every process and machine (core.pacing, through Redis
# or the database), beside AWS_CONCURRENT_REQUESTS. Set it just under the account's quota for the
# face operations in REKOGNITION_REGION (AWS Service Quotas: single digits in many regions, more in
# the largest). 0: no limit.
AWS_REQUESTS_PER_SECOND = env_float("AWS_REQUESTS_PER_SECOND", 5.0)
# A dotted path to a callable that returns an object with the methods of boto3's Rekognition
# client; empty: boto3's client. (Tests and bench/rekognition.py hand the engine the emulator,
# faces/engines/emulator.py, directly.)
REKOGNITION_CLIENT_FACTORY = env_str("REKOGNITION_CLIENT_FACTORY")
# The shared semaphore (core.semaphore): how long a caller waits for a slot before its task fails
# (and is retried), and how long a Redis slot outlives a holder that died without releasing it.
SEMAPHORE_WAIT_S = env_float("SEMAPHORE_WAIT_S", 120.0)
SEMAPHORE_LEASE_S = env_float(
    "SEMAPHORE_LEASE_S",
    (AWS_CONNECT_TIMEOUT_S + AWS_READ_TIMEOUT_S) * (REKOGNITION_MAX_RETRIES + 1) + 60,
)
SEMAPHORE_FILE_DIR = env_str("SEMAPHORE_FILE_DIR")
# Local engine: dlib computations at once across the processes sharing the database; 0 = no cap.
FACE_LOCAL_CONCURRENT = env_int("FACE_LOCAL_CONCURRENT", 0, minimum=0)

# --- Gallery --------------------------------------------------------------------------------------
MY_PHOTOS_CACHE_SECONDS = env_int("MY_PHOTOS_CACHE_SECONDS", 30, minimum=0)
# How long the ETag of a cached gallery page answers conditional requests (304) after the page
# itself expired: open galleries poll every 5-9 s, and without it each would be rebuilt from the
# database every MY_PHOTOS_CACHE_SECONDS though nothing changed (photos.gallery).
MY_PHOTOS_ETAG_SECONDS = env_int("MY_PHOTOS_ETAG_SECONDS", 300, minimum=0)

# --- Rate limits ----------------------------------------------------------------------------------
# accounts.ratelimits counts with django-ratelimit's counters (cache.add + cache.incr) in the
# default cache: Redis on the fleet, so a limit holds across processes and machines; the database
# cache table on a laptop. Each scope is limited per client IP and per account, "N/period" with a
# period of s, m, h or d and an optional multiplier ("10/15m"); "off" lifts one limit.
# Past a limit: 429 rate_limited with Retry-After (API), a readable 429 page (HTML).
_RATE_RE = r"^\d+/\d*[smhd]$"


def env_rate(name: str, default: str) -> str | None:
    import re

    value = env_str(name, default)
    if value.lower() == "off":
        return None
    if not re.match(_RATE_RE, value):
        raise ImproperlyConfigured(f"{name} must look like 10/15m (or be off), not {value!r}")
    return value


# API tokens older than this answer 401 (a new one comes from POST /api/auth/token/); 0 = never.
# A password change or reset deletes the user's tokens whatever their age (accounts.models).
TOKEN_TTL_DAYS = env_int("TOKEN_TTL_DAYS", 30, minimum=0)

# A guest's private gallery link (django-sesame) signs them in on any device for this long, until
# they set a password (which ends every link made before it).
GUEST_LINK_DAYS = env_int("GUEST_LINK_DAYS", 180, minimum=1)
SESAME_MAX_AGE = GUEST_LINK_DAYS * 24 * 3600

# Every password check (API token, login page, admin) goes through the "login" limit below.
# django-sesame's backend takes only its signed links (it needs a "sesame" credential), first so
# that a link never reaches the password backend.
AUTHENTICATION_BACKENDS = [
    "sesame.backends.ModelBackend",
    "accounts.backends.RateLimitedModelBackend",
]

RATELIMIT_ENABLE = env_bool("RATELIMIT_ENABLE", True)
RATELIMIT_USE_CACHE = "default"
# A cache that cannot be reached must not lock everyone out (nor answer 500): the limit lapses.
RATELIMIT_FAIL_OPEN = True
# Behind a reverse proxy REMOTE_ADDR is the proxy: RATELIMIT_IP_META_KEY names the header it sets
# (HTTP_X_REAL_IP). accounts.ratelimits.client_ip reads it, and REMOTE_ADDR for a request that
# did not come through the proxy (django-ratelimit alone would answer those with an error).
RATELIMIT_CLIENT_IP_META = env_str("RATELIMIT_IP_META_KEY")
RATELIMIT_IP_META_KEY = "accounts.ratelimits.client_ip"
# What "account" means per scope: login the username tried, signup and password_reset the email
# given, join and selfie the signed-in user, guest the event. login and join count failures only;
# the others count every attempt.
RATE_LIMITS = {
    "login": {
        "ip": env_rate("RATELIMIT_LOGIN_IP", "30/15m"),
        "account": env_rate("RATELIMIT_LOGIN_ACCOUNT", "10/15m"),
    },
    "signup": {
        "ip": env_rate("RATELIMIT_SIGNUP_IP", "20/h"),
        "account": env_rate("RATELIMIT_SIGNUP_ACCOUNT", "10/h"),
    },
    "join": {
        "ip": env_rate("RATELIMIT_JOIN_IP", "30/15m"),
        "account": env_rate("RATELIMIT_JOIN_ACCOUNT", "10/15m"),
    },
    # A venue's guests share its Wi-Fi, so one address is many honest guests arriving at once.
    "guest": {
        "ip": env_rate("RATELIMIT_GUEST_IP", "120/15m"),
        "account": env_rate("RATELIMIT_GUEST_ACCOUNT", "600/15m"),
    },
    "selfie": {
        "ip": env_rate("RATELIMIT_SELFIE_IP", "60/h"),
        "account": env_rate("RATELIMIT_SELFIE_ACCOUNT", "20/h"),
    },
    "password_reset": {
        "ip": env_rate("RATELIMIT_PASSWORD_RESET_IP", "10/h"),
        "account": env_rate("RATELIMIT_PASSWORD_RESET_ACCOUNT", "3/h"),
    },
}

# --- API ------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: an anonymous API call then gets 401 with WWW-Authenticate, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_SCHEMA_CLASS": "core.openapi.AutoSchema",
}

# GET /api/schema/ and /api/docs/ (drf-spectacular). Every error answer is the one shape of
# ../shared/API.md, the ErrorBody component, declared per view with extend_schema.
SPECTACULAR_SETTINGS = {
    "TITLE": "FindMe API",
    "DESCRIPTION": "Find yourself in an event's photos. The contract: ../shared/API.md.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "PhotoStatusEnum": "photos.models.Photo.Status",
        "SelfieStatusEnum": ["queued", "indexed"],
    },
}

# --- Auth, i18n, security -------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "my-photos"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

EMAIL_BACKEND = (
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG or not env_str("EMAIL_HOST")
    else "django.core.mail.backends.smtp.EmailBackend"
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "FindMe <noreply@findme.local>")

SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
# Production (DJANGO_DEBUG=0) is HTTPS-only unless told otherwise: `check --deploy` passes with no
# variable set. Development keeps plain HTTP on localhost.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
# The preload directive only consents to a listing: nothing changes until the operator submits
# the domain to hstspreload.org.
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", not DEBUG)
# Trust X-Forwarded-Proto only behind a proxy that sets it and drops the client's own (deploy/
# nginx does): otherwise any client could claim HTTPS. Off by default.
if env_bool("DJANGO_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# django-csp: no inline script or style anywhere (static/js, static/css); images also come from
# the selfie preview (blob:) and the lightbox's empty placeholder (data:).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# core.middleware.PermissionsPolicyMiddleware: every page denies these; the selfie page alone
# may use the camera.
PERMISSIONS_POLICY_DENIED = ("camera", "microphone", "geolocation", "payment", "usb")
PERMISSIONS_POLICY_CAMERA_URL_NAMES = ("selfie",)

# One line per event; every line a task or request logs carries the ids bound where its work
# starts (task_id, photo_id, user_id: core.logging). LOG_FORMAT=json for a log pipeline.
LOG_FORMAT = env_str("LOG_FORMAT", "plain" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "core.logging.ContextFilter"}},
    "formatters": {
        "plain": {"()": "core.logging.PlainFormatter"},
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
