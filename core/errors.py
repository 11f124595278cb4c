"""One error family and one API error shape: {"error": {"code", "message", "detail"}}."""

from __future__ import annotations

import errno
import logging
import sqlite3
import sys
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import (
    DisallowedHost,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError as DjangoOperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

from .cache import CacheUnavailable

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """An error the caller can act on. Services raise it; the API turns it into a 4xx."""

    status_code = 400
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        detail: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status_code = status
        self.detail = detail or {}
        self.headers = headers or {}


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"


class ServiceUnavailable(ApplicationError):
    """A part the request needs (database, broker, cache, storage) is unreachable: try later."""

    status_code = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 10, **kwargs: Any) -> None:
        headers = {"Retry-After": str(retry_after), **kwargs.pop("headers", {})}
        super().__init__(message, headers=headers, **kwargs)


def error_body(code: str, message: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "detail": detail or {}}}


# --- outages: a part the request needs is unreachable -> 503, never 500 ---------------------------
@dataclass(frozen=True)
class Outage:
    service: str  # database | redis | cache | storage | aws
    message: str
    retry_after: int

    def error(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            self.message, retry_after=self.retry_after, detail={"service": self.service}
        )


_OUTAGES = {
    outage.service: outage
    for outage in (
        Outage(
            "database",
            "The database is unreachable right now, so this could not be done. "
            "Try again in a few seconds.",
            10,
        ),
        Outage(
            "redis",
            "The queue and cache server (Redis) is unreachable right now, so this could not be "
            "done. Try again in a few seconds.",
            10,
        ),
        Outage(
            "cache",
            "The cache server is unreachable right now, so this could not be done. "
            "Try again in a few seconds.",
            10,
        ),
        Outage(
            "storage",
            "Photo storage is unreachable or full right now, so this could not be done. "
            "Try again in a minute; if it lasts, tell the event's organiser.",
            30,
        ),
        Outage(
            "aws",
            "An AWS service this needs is unreachable right now, so this could not be done. "
            "Try again in a minute.",
            30,
        ),
    )
}

# SQLite result codes (primary, the low byte) that say "busy, locked, disk or file trouble":
# transient, or the operator's to fix. Anything else (SQLITE_ERROR: "no such table", a syntax
# error) is a bug and stays a 500.
_SQLITE_TRANSIENT = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
}
_DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT}


def _loaded(module: str) -> Any:
    """A driver's module if this process imported it. One that was never imported cannot have
    raised, so the mapping costs no import (botocore alone takes a good part of a second)."""
    return sys.modules.get(module)


def _sqlite_transient(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "locked" in str(exc)
    return (code & 0xFF) in _SQLITE_TRANSIENT


def _is_psycopg(exc: BaseException) -> bool:
    psycopg = _loaded("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.Error)


def _psycopg_outage(exc: BaseException) -> bool:
    psycopg = _loaded("psycopg")
    if psycopg is None or not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    # Class 54 (program limit exceeded: too many columns, statement too complex) is the
    # query's fault; every other OperationalError (connection lost, admin shutdown, disk full,
    # too many clients, serialization failure, pool timeout) passes with time.
    return not (getattr(exc, "sqlstate", None) or "").startswith("54")


def _service_of(exc: BaseException) -> str | None:
    if isinstance(exc, DjangoOperationalError | DjangoInterfaceError):
        driver = exc.__cause__  # Django re-raises the driver's error "from" it
        if isinstance(driver, sqlite3.Error):
            return "database" if _sqlite_transient(driver) else None
        if _is_psycopg(driver):
            return "database" if _psycopg_outage(driver) else None
        return "database"
    if isinstance(exc, sqlite3.OperationalError):
        return "database" if _sqlite_transient(exc) else None
    if _psycopg_outage(exc):  # psycopg_pool.PoolTimeout is a psycopg.OperationalError
        return "database"
    if isinstance(exc, CacheUnavailable):
        return "cache"
    redis_exceptions = _loaded("redis.exceptions")
    if redis_exceptions is not None and isinstance(
        exc, redis_exceptions.ConnectionError | redis_exceptions.TimeoutError
    ):
        return "redis"
    botocore_exceptions = _loaded("botocore.exceptions")
    if botocore_exceptions is not None and isinstance(
        exc,
        botocore_exceptions.EndpointConnectionError
        | botocore_exceptions.ConnectTimeoutError
        | botocore_exceptions.ReadTimeoutError
        | botocore_exceptions.ConnectionClosedError,
    ):
        endpoint = str(getattr(exc, "kwargs", {}).get("endpoint_url", ""))
        return "aws" if "rekognition" in endpoint else "storage"
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        return "storage"
    return None


def outage_of(exc: BaseException) -> Outage | None:
    """The outage ``exc`` reports, or None: then it is a bug, and a bug stays a 500.

    Follows explicit chaining (``raise ... from``), a few links deep, so a service that wraps
    a driver's error in its own keeps the meaning.
    """
    current: BaseException | None = exc
    for _ in range(5):
        if current is None:
            return None
        service = _service_of(current)
        if service is not None:
            return _OUTAGES[service]
        current = current.__cause__
    return None


def outage_logged(exc: BaseException, outage: Outage, where: str) -> None:
    logger.warning(
        "%s unreachable at %s, answered 503: %s: %s",
        outage.service,
        where,
        type(exc).__name__,
        exc,
    )


_DRF_CODES: list[tuple[type[Exception], str, str]] = [
    (drf.NotAuthenticated, "not_authenticated", "Log in, or send 'Authorization: Token <key>'."),
    (drf.AuthenticationFailed, "authentication_failed", "The credentials were not accepted."),
    (drf.PermissionDenied, "permission_denied", "You do not have permission to do this."),
    (drf.NotFound, "not_found", "Nothing was found here."),
    (drf.MethodNotAllowed, "method_not_allowed", "This method is not allowed here."),
    (drf.NotAcceptable, "not_acceptable", "This endpoint answers in JSON only."),
    (drf.UnsupportedMediaType, "unsupported_media_type", "Send JSON or multipart form data."),
    (drf.ParseError, "parse_error", "The request body could not be parsed."),
    (
        drf.Throttled,
        "rate_limited",
        "Too many attempts from here or for this account; wait the Retry-After seconds and "
        "try again.",
    ),
]


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        set_rollback()
        return Response(
            error_body(exc.code, exc.message, exc.detail),
            status=exc.status_code,
            headers=exc.headers,
        )
    if (outage := outage_of(exc)) is not None:
        request = context.get("request")
        outage_logged(exc, outage, request.path if request is not None else "an API view")
        return api_exception_handler(outage.error(), context)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    if isinstance(exc, drf.ValidationError):
        set_rollback()
        detail = _flatten(exc.detail)
        if not isinstance(detail, dict):
            detail = {"non_field_errors": detail if isinstance(detail, list) else [detail]}
        return Response(
            error_body("invalid", "Some fields are missing or invalid; see detail.", detail),
            status=400,
        )
    if isinstance(exc, drf.APIException):
        set_rollback()
        code, message = "error", str(exc.detail)
        for klass, klass_code, klass_message in _DRF_CODES:
            if isinstance(exc, klass):
                code, message = klass_code, klass_message
                break
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        detail = _flatten(exc.detail)
        return Response(
            error_body(code, message, {"reason": detail} if isinstance(detail, str) else detail),
            status=exc.status_code,
            headers=headers,
        )
    return None  # A real bug: Django's 500 handler (below) answers in the error shape.


def json_404(request, exception=None) -> JsonResponse:  # noqa: ARG001
    return JsonResponse(error_body("not_found", "Nothing was found at this address."), status=404)


def json_500(request) -> JsonResponse:  # noqa: ARG001
    return JsonResponse(
        error_body(
            "server_error", "Something went wrong on our side; it has been logged. Try again."
        ),
        status=500,
    )


# Django's own refusals, answered before any view runs (core.views.bad_request): the exception
# class names what the caller did wrong.
_REQUEST_ERRORS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (
        DisallowedHost,
        400,
        "disallowed_host",
        "This server does not answer for that host name; use the address FindMe gave you.",
    ),
    (
        RequestDataTooBig,
        413,
        "request_too_large",
        "The request body is larger than this endpoint accepts; send less data, or send photos "
        "as a multipart file upload.",
    ),
    (
        TooManyFieldsSent,
        400,
        "too_many_fields",
        "The request has more form fields than this server accepts; send fewer fields.",
    ),
    (
        TooManyFilesSent,
        400,
        "too_many_files",
        "The request has more files than this server accepts; send fewer files per request.",
    ),
)


def json_400(request, exception: Exception | None = None) -> JsonResponse:  # noqa: ARG001
    for klass, status, code, message in _REQUEST_ERRORS:
        if isinstance(exception, klass):
            return JsonResponse(error_body(code, message), status=status)
    return JsonResponse(
        error_body("bad_request", "The request could not be understood; check its form."),
        status=400,
    )


def json_403(request, exception: Exception | None = None) -> JsonResponse:  # noqa: ARG001
    return JsonResponse(
        error_body("permission_denied", "You are not allowed to do this."), status=403
    )


def json_csrf_failure(request, reason: str = "") -> JsonResponse:  # noqa: ARG001
    return JsonResponse(
        error_body(
            "csrf_failed",
            "The CSRF check failed: reload the page and try again, or authenticate with "
            "'Authorization: Token <key>'.",
            {"reason": reason} if reason else None,
        ),
        status=403,
    )
