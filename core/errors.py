"""One error family and one API error shape: {"error": {"code", "message", "detail"}}."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

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


_DRF_CODES: list[tuple[type[Exception], str, str]] = [
    (drf.NotAuthenticated, "not_authenticated", "Log in, or send 'Authorization: Token <key>'."),
    (drf.AuthenticationFailed, "authentication_failed", "The credentials were not accepted."),
    (drf.PermissionDenied, "permission_denied", "You do not have permission to do this."),
    (drf.NotFound, "not_found", "Nothing was found here."),
    (drf.MethodNotAllowed, "method_not_allowed", "This method is not allowed here."),
    (drf.NotAcceptable, "not_acceptable", "This endpoint answers in JSON only."),
    (drf.UnsupportedMediaType, "unsupported_media_type", "Send JSON or multipart form data."),
    (drf.ParseError, "parse_error", "The request body could not be parsed."),
    (drf.Throttled, "throttled", "Too many requests; wait and try again."),
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
