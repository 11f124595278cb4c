"""Outages answer 503 'unavailable' with Retry-After, bugs stay 500; a cache that is down is a miss.

The infrastructure errors here are real ones where they can be had cheaply: SQLite's "database is
locked" from a second connection, psycopg and redis-py refused by a closed port. The views that
raise them live in this module's own URLconf.
"""

from __future__ import annotations

import errno
import logging
import socket
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError as DjangoOperationalError
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path
from psycopg_pool import PoolTimeout
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from core.cache import CacheUnavailable, TolerantRedisCache
from core.counters import counter_add, counters_get
from core.errors import outage_of
from core.generations import user_generation, users_generation_bump
from events.models import Membership
from faces.models import Match
from photos.models import Photo
from tests.reliability.servers import free_port, redis_missing, redis_server

URLCONF = "tests.core.test_outage_mapping"


# --- real infrastructure errors ------------------------------------------------------------------
def closed_port() -> int:
    return free_port()  # nothing listens there once the probe socket is closed


def wrapped(driver_exc: Exception, klass: type[Exception] = DjangoOperationalError) -> Exception:
    """The driver's error as Django raises it: its own class, chained "from" the driver's."""
    try:
        raise klass(*driver_exc.args) from driver_exc
    except klass as exc:
        return exc


def sqlite_locked() -> sqlite3.OperationalError:
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "locked.sqlite3"
        holder = sqlite3.connect(db, isolation_level=None)
        other = sqlite3.connect(db, timeout=0)
        try:
            holder.execute("CREATE TABLE t (x)")
            holder.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO t VALUES (1)")
        except sqlite3.OperationalError as exc:
            return exc
        finally:
            other.close()
            holder.close()
    raise AssertionError("the second writer was not refused")


def sqlite_no_table() -> sqlite3.OperationalError:
    try:
        sqlite3.connect(":memory:").execute("SELECT * FROM no_such_table")
    except sqlite3.OperationalError as exc:
        return exc
    raise AssertionError("unreachable")


def psycopg_refused() -> psycopg.OperationalError:
    try:
        psycopg.connect(host="127.0.0.1", port=closed_port(), user="x", connect_timeout=2)
    except psycopg.OperationalError as exc:
        return exc
    raise AssertionError("a closed port accepted a connection")


def redis_refused() -> redis.ConnectionError:
    client = redis.Redis(port=closed_port(), socket_connect_timeout=1, retry=None)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        return exc
    raise AssertionError("a closed port answered PING")


def chained(cause: Exception) -> Exception:
    try:
        raise RuntimeError("the service gave up") from cause
    except RuntimeError as exc:
        return exc


def bug_while_handling(outage: Exception) -> Exception:
    """A bug in an except block: the outage is its context, not its cause."""
    try:
        raise outage
    except type(outage):
        try:
            {}["missing"]
        except KeyError as exc:
            return exc
    raise AssertionError("unreachable")


CASES: list[tuple[str, Callable[[], BaseException], str | None]] = [
    ("sqlite locked, as Django raises it", lambda: wrapped(sqlite_locked()), "database"),
    ("sqlite locked, raw", sqlite_locked, "database"),
    ("sqlite no such table: a bug", lambda: wrapped(sqlite_no_table()), None),
    ("psycopg refused", psycopg_refused, "database"),
    ("psycopg refused, as Django raises it", lambda: wrapped(psycopg_refused()), "database"),
    ("pool timeout", lambda: wrapped(PoolTimeout("couldn't get a connection")), "database"),
    (
        "connection already closed",
        lambda: wrapped(psycopg.InterfaceError("the connection is closed"), DjangoInterfaceError),
        "database",
    ),
    (
        "program limit exceeded: a bug",
        lambda: wrapped(psycopg.errors.ProgramLimitExceeded("too many columns")),
        None,
    ),
    ("redis refused", redis_refused, "redis"),
    ("redis timeout", lambda: redis.TimeoutError("Timeout reading from socket"), "redis"),
    ("cache unreachable", lambda: CacheUnavailable("down"), "cache"),
    (
        "S3 endpoint refused",
        lambda: EndpointConnectionError(endpoint_url="http://127.0.0.1:9/photos"),
        "storage",
    ),
    (
        "S3 read timeout",
        lambda: ReadTimeoutError(endpoint_url="https://s3.eu-west-1.amazonaws.com/p"),
        "storage",
    ),
    (
        "Rekognition connect timeout",
        lambda: ConnectTimeoutError(endpoint_url="https://rekognition.eu-west-1.amazonaws.com"),
        "aws",
    ),
    ("disk full", lambda: OSError(errno.ENOSPC, "No space left on device"), "storage"),
    ("read-only disk", lambda: OSError(errno.EROFS, "Read-only file system"), "storage"),
    ("disk I/O error", lambda: OSError(errno.EIO, "Input/output error"), "storage"),
    ("missing file: a bug", lambda: FileNotFoundError(errno.ENOENT, "gone"), None),
    ("permission: a bug", lambda: PermissionError(errno.EACCES, "denied"), None),
    ("zero division: a bug", lambda: ZeroDivisionError("division by zero"), None),
    ("outage wrapped by a service", lambda: chained(redis_refused()), "redis"),
    ("bug while handling an outage", lambda: bug_while_handling(redis_refused()), None),
]


@pytest.mark.parametrize(("make", "service"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_infrastructure_error_names_its_part_and_a_bug_names_none(make, service):
    outage = outage_of(make())
    assert (outage.service if outage else None) == service


# --- views that fail, in this module's URLconf ---------------------------------------------------
FAILURES: dict[str, Callable[[], BaseException]] = {
    "locked": lambda: wrapped(sqlite_locked()),
    "redis": redis_refused,
    "disk": lambda: OSError(errno.ENOSPC, "No space left on device"),
    "bug": lambda: ZeroDivisionError("division by zero"),
}


class FailingApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request: Request, what: str) -> Response:
        raise FAILURES[what]()


def failing_view(request: HttpRequest, what: str) -> HttpResponse:
    raise FAILURES[what]()


class FailingMiddleware:
    """Fails after the view, as SessionMiddleware does when it cannot save the session."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if what := request.GET.get("fail_after_view"):
            raise FAILURES[what]()
        return response


def fine_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("fine")


urlpatterns = [
    path("api/drf/<str:what>/", FailingApi.as_view()),
    path("api/plain/<str:what>/", failing_view),
    path("page/<str:what>/", failing_view),
    path("api/plain/fine/", fine_view),
    path("page/fine/", fine_view),
]
handler404 = "core.views.not_found"
handler500 = "core.views.server_error"


def assert_unavailable(answer, service: str) -> dict:
    assert answer.status_code == 503, answer.content
    assert int(answer["Retry-After"]) > 0
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["code"] == "unavailable"
    assert body["error"]["message"].endswith(".")
    assert body["error"]["detail"] == {"service": service}
    return body["error"]


@pytest.fixture
def client_500() -> Client:
    return Client(raise_request_exception=False)


@pytest.mark.urls(URLCONF)
@pytest.mark.parametrize(
    ("what", "service"), [("locked", "database"), ("redis", "redis"), ("disk", "storage")]
)
def test_drf_view_outage_is_503_unavailable_with_retry_after(client_500, caplog, what, service):
    with caplog.at_level(logging.WARNING, logger="core.errors"):
        answer = client_500.get(f"/api/drf/{what}/")
    assert_unavailable(answer, service)
    logged = [r for r in caplog.records if r.name == "core.errors"]
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING
    exc_class = type(FAILURES[what]()).__name__
    assert exc_class in logged[0].getMessage() and f"/api/drf/{what}/" in logged[0].getMessage()


@pytest.mark.urls(URLCONF)
def test_drf_view_bug_is_500_in_the_error_shape(client_500, caplog):
    with caplog.at_level(logging.ERROR, logger="django.request"):
        answer = client_500.get("/api/drf/bug/")
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "server_error"
    assert "Retry-After" not in answer
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


@pytest.mark.urls(URLCONF)
def test_plain_api_view_outage_is_503_through_the_middleware(client_500):
    assert_unavailable(client_500.get("/api/plain/locked/"), "database")
    assert_unavailable(client_500.get("/api/plain/redis/"), "redis")


@pytest.mark.urls(URLCONF)
def test_page_outage_is_a_readable_503_page(client_500):
    answer = client_500.get("/page/locked/")
    assert answer.status_code == 503
    assert answer["Content-Type"].startswith("text/html")
    assert int(answer["Retry-After"]) > 0
    html = answer.content.decode()
    assert "<h1>FindMe is unavailable for a moment</h1>" in html
    assert "The database is unreachable right now" in html


@pytest.mark.urls(URLCONF)
def test_page_bug_is_still_a_500_page(client_500):
    answer = client_500.get("/page/bug/")
    assert answer.status_code == 500
    assert "Retry-After" not in answer
    assert "Something went wrong on our side" in answer.content.decode()


@pytest.mark.urls(URLCONF)
@pytest.mark.parametrize(("where", "html"), [("/api/plain", False), ("/page", True)])
def test_outage_after_the_view_is_503_through_the_500_handler(client_500, settings, where, html):
    settings.MIDDLEWARE = ["tests.core.test_outage_mapping.FailingMiddleware", *settings.MIDDLEWARE]
    # The view answers; the middleware fails on the way out, outside any view.
    answer = client_500.get(f"{where}/fine/", {"fail_after_view": "locked"})
    assert answer.status_code == 503
    assert int(answer["Retry-After"]) > 0
    assert answer["Content-Type"].startswith("text/html" if html else "application/json")
    bug = client_500.get(f"{where}/fine/", {"fail_after_view": "bug"})
    assert bug.status_code == 500


# --- the tolerant cache ----------------------------------------------------------------------------
def tolerant(location: str, **options) -> TolerantRedisCache:
    return TolerantRedisCache(
        location,
        {"OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5, **options}},
    )


class HangUpServer:
    """Accepts TCP connections on loopback and closes each at once, counting them: what a Redis
    that dies under its clients looks like."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture
def hang_up() -> Iterator[HangUpServer]:
    server = HangUpServer()
    try:
        yield server
    finally:
        server.close()


def test_tolerant_cache_on_a_closed_port_reads_as_empty_and_drops_writes():
    cache = tolerant(f"redis://127.0.0.1:{closed_port()}/0")
    assert cache.get("k") is None and cache.get("k", "dflt") == "dflt"
    assert cache.get_many(["a", "b"]) == {}
    assert cache.has_key("k") is False
    assert cache.set("k", 1) is False
    assert cache.add("k", 1) is False
    assert cache.set_many({"a": 1, "b": 2}) == ["a", "b"]
    assert cache.delete("k") is False
    assert cache.touch("k") is False
    assert cache.clear() is False
    cache.delete_many(["a", "b"])
    assert cache.get_or_set("k", 7) == 7
    with pytest.raises(CacheUnavailable):
        cache.incr("k")
    with pytest.raises(ValueError):  # Django's contract for a key it cannot find
        cache.decr("k")
    with pytest.raises(redis.ConnectionError):
        cache.ping()


def test_tolerant_cache_stops_knocking_after_a_failure_then_tries_again(hang_up):
    cache = tolerant(f"redis://127.0.0.1:{hang_up.port}/0")
    cache.retry_after_error_s = 3600  # far longer than this test takes
    for _ in range(20):
        assert cache.get("k", "miss") == "miss"
        assert cache.set("k", 1) is False
    assert hang_up.accepted == 1
    with pytest.raises(redis.ConnectionError):
        cache.ping()  # health asks anyway
    assert hang_up.accepted == 2
    cache.retry_after_error_s = 0
    cache.get("k")
    cache.get("k")
    assert hang_up.accepted >= 4


@pytest.mark.skipif(bool(redis_missing()), reason=redis_missing() or "redis-server present")
def test_tolerant_cache_works_then_misses_while_redis_is_stopped_then_works_again():
    with redis_server() as server:
        cache = tolerant(server.url)
        cache.retry_after_error_s = 0
        assert cache.set("k", "v") is None and cache.get("k") == "v"
        assert cache.add("n", 1) is True and cache.incr("n") == 2
        server.stop()
        assert cache.get("k", "miss") == "miss"
        assert cache.set("k", "w") is False
        with pytest.raises(CacheUnavailable):
            cache.incr("n")
        server.start()  # --save "": it comes back empty, as a restarted cache may
        assert cache.get("k", "miss") == "miss"
        assert cache.set("k", "again") is None and cache.get("k") == "again"


# --- counters, generations and the gallery with the cache down -----------------------------------
TOLERANT = "core.cache.TolerantRedisCache"
DJANGO_REDIS = "django.core.cache.backends.redis.RedisCache"


def cache_on_a_closed_port(settings, backend: str) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": backend,
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }


@pytest.mark.parametrize("backend", [TOLERANT, DJANGO_REDIS])
def test_counters_and_generations_log_a_cache_outage_and_never_raise(settings, caplog, backend):
    cache_on_a_closed_port(settings, backend)
    with caplog.at_level(logging.WARNING):
        counter_add("stats:test")
        assert counters_get(["stats:test"]) == {"stats:test": 0}
        assert isinstance(user_generation(1), int)
        assert user_generation(1) != user_generation(1)  # fresh each time: nothing cached serves
        users_generation_bump([1, 2])
    assert any("not bumped" in r.getMessage() for r in caplog.records)


def test_a_bug_in_a_counter_still_raises(settings, monkeypatch):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

    def incr_with_a_bug(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr("django.core.cache.backends.locmem.LocMemCache.incr", incr_with_a_bug)
    with pytest.raises(TypeError):
        counter_add("stats:test")


def matched_photo(attendee, event) -> Photo:
    Membership.objects.create(user=attendee, event=event)
    photo = Photo.objects.create(
        event=event,
        sha256="a" * 64,
        original=f"photos/{event.pk}/a.jpg",
        content_type="image/jpeg",
        size=100,
        width=640,
        height=480,
        status=Photo.Status.DONE,
        face_count=1,
    )
    Match.objects.create(photo=photo, event=event, user=attendee, distance=0.3)
    return photo


@pytest.mark.django_db
def test_gallery_answers_from_the_database_while_the_cache_is_down(
    settings, attendee, event, client
):
    cache_on_a_closed_port(settings, TOLERANT)
    photo = matched_photo(attendee, event)
    api = APIClient()
    api.force_authenticate(attendee)
    for _ in range(2):  # the second would be a hit with a cache
        answer = api.get("/api/my-photos/")
        assert answer.status_code == 200, answer.content
        assert [p["id"] for p in answer.json()["results"]] == [photo.pk]
    client.force_login(attendee)
    page = client.get("/my/")
    assert page.status_code == 200
    assert f"/api/photos/{photo.pk}/thumb/" in page.content.decode()


@pytest.mark.django_db
def test_gallery_on_a_cache_that_raises_is_503_not_500(settings, attendee, event):
    """Django's own RedisCache raises when Redis is down: the mapping still answers 503."""
    cache_on_a_closed_port(settings, DJANGO_REDIS)
    matched_photo(attendee, event)
    api = APIClient()
    api.force_authenticate(attendee)
    assert_unavailable(api.get("/api/my-photos/"), "redis")


# --- health ---------------------------------------------------------------------------------------
PARTS = {"database", "broker", "cache", "storage", "workers"}


@pytest.mark.django_db
def test_health_names_every_part_and_is_200_when_they_answer(client):
    answer = client.get("/api/health/")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert set(body) == PARTS
    assert {k: v for k, v in body.items() if k != "workers"} == dict.fromkeys(
        PARTS - {"workers"}, "ok"
    )


@pytest.mark.django_db
def test_health_is_503_naming_the_cache_when_it_is_down(settings, client):
    settings.CACHES = {
        "default": {
            "BACKEND": "core.cache.TolerantRedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    answer = client.get("/api/health/")
    assert answer.status_code == 503
    assert answer.json()["cache"] == "down" and answer.json()["database"] == "ok"


@pytest.mark.django_db
def test_health_is_503_naming_storage_when_photos_cannot_be_written(settings, client, tmp_path):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_bytes(b"")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(not_a_folder / "media")},
        },
    }
    answer = client.get("/api/health/")
    assert answer.status_code == 503
    assert answer.json()["storage"] == "down" and answer.json()["database"] == "ok"


@pytest.mark.django_db
@pytest.mark.parametrize("bucket_exists", [True, False])
def test_health_asks_the_bucket_when_photos_live_in_s3(
    settings, client, monkeypatch, bucket_exists
):
    import boto3
    from moto import mock_aws

    from config.settings import s3_storage

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        if bucket_exists:
            boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="findme-health")
        settings.STORAGES = {**settings.STORAGES, "default": s3_storage("findme-health")}
        answer = client.get("/api/health/")
    assert answer.json()["storage"] == ("ok" if bucket_exists else "down")
    assert answer.status_code == (200 if bucket_exists else 503)
